"""Opening a workspace's ML Metadata store: the SQLite file local runs record into, and the
contexts TFX records each execution in."""
from __future__ import annotations

import os

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants

from tfx_finetune.pipeline.config import PipelineConfig

# The context types TFX's compiler gives a pipeline, each of its runs and each of its nodes
# (tfx/dsl/compiler/constants.py); every execution is in one context of each.
PIPELINE_CONTEXT = constants.PIPELINE_CONTEXT_TYPE_NAME
PIPELINE_RUN_CONTEXT = constants.PIPELINE_RUN_CONTEXT_TYPE_NAME
NODE_CONTEXT = constants.NODE_CONTEXT_TYPE_NAME


def node_context_name(pipeline_name: str, node_id: str) -> str:
    """The name of a node's context, as TFX's `compiler_utils.node_context_name` makes it
    (that module loads TensorFlow; the reports read the store without it)."""
    return f"{pipeline_name}.{node_id}"


def node_id(node_context: metadata_store_pb2.Context) -> str:
    """The node id a node context names."""
    return node_context.name.rsplit(".", 1)[-1]  # node ids have no dot; pipeline names may


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """The connection to `config.metadata_path`, made absolute: runners and tools may run
    from another working directory than the one the config was written for."""
    from tfx.orchestration import metadata

    return metadata.sqlite_metadata_connection_config(os.path.abspath(config.metadata_path))


def open_store(config: PipelineConfig) -> mlmd.MetadataStore:
    """The ML Metadata store of `config`'s workspace."""
    return mlmd.MetadataStore(connection_config(config))
