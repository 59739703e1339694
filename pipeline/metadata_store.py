"""Opening a workspace's ML Metadata store: the SQLite file local runs record into."""
from __future__ import annotations

import os

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from tfx_finetune.pipeline.config import PipelineConfig


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """The connection to `config.metadata_path`, made absolute: runners and tools may run
    from another working directory than the one the config was written for."""
    return metadata.sqlite_metadata_connection_config(os.path.abspath(config.metadata_path))


def open_store(config: PipelineConfig) -> mlmd.MetadataStore:
    """The ML Metadata store of `config`'s workspace."""
    return mlmd.MetadataStore(connection_config(config))
