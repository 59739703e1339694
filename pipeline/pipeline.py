"""`create_pipeline`: the only DAG, shared by the local runner and the Kubeflow compiler."""
from __future__ import annotations

import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components import features, signatures
from components.atomic_pusher.component import AtomicPusher
from components.data_gate.component import DataGate
from components.image_example_gen.component import ImageExampleGen
from components.serving_check.component import ServingCheck
from pipeline.config import PipelineConfig

# Executor code is referred to by dotted path, so the same code runs locally and in an image.
PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy on the test split (overall and per label), blessed on a value threshold and,
    once a blessed model exists, on a change threshold against it. A NaN accuracy fails the
    value threshold, so it is never blessed."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=signatures.SERVING_EXAMPLES,
            preprocessing_function_names=[signatures.TRANSFORM_FEATURES],
            label_key=features.transformed_name(features.LABEL_KEY),
            prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy",
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        lower_bound={"value": config.min_accuracy}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        absolute={"value": -config.max_accuracy_drop}))),
            # Per-class precision and recall are read off this matrix in the run report.
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


def _local_or_uri(path: str) -> str:
    """Absolute local paths; URIs (gs://, s3://) as given."""
    return path if "://" in path else os.path.abspath(path)


def create_pipeline(config: PipelineConfig, metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    pipeline_root: Optional[str] = None) -> tfx_pipeline.Pipeline:
    """Builds the fine-tune DAG.

    Args:
      config: the run's configuration.
      metadata_connection_config: ML Metadata connection (None on Kubeflow).
      beam_pipeline_args: arguments for the Beam-powered components.
      pipeline_root: overrides `config.pipeline_root` (e.g. a bucket on Kubeflow).
    """
    example_gen = ImageExampleGen(input_path=_local_or_uri(config.data_dir),
                                  split_ratios=config.split_ratios,
                                  options=config.ingestion_options())
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    previous_statistics = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                   producer_component_id="DataGate",
                                   output_key="accepted_statistics"),
    ).with_id("previous_accepted_statistics")
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        previous_statistics=previous_statistics.outputs["statistics"],
        max_label_drift=config.max_label_drift,
        min_example_count_ratio=config.min_example_count_ratio,
        accept_data_changes=config.accept_data_changes)
    # materialize=False: the Trainer applies the Transform graph in its input pipeline, so no
    # decoded float pixels are written to disk.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        custom_config={"image_size": config.image_size})
    transform.add_upstream_node(data_gate)  # nothing is transformed or trained past the gate
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.trainer_config())
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        example_splits=["test"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config))
    serving_check = ServingCheck(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"])
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=_local_or_uri(config.model_base_dir))),
        custom_config={"keep_versions": config.keep_versions})
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root or _local_or_uri(config.pipeline_root),
        components=[example_gen, statistics_gen, schema_gen, example_validator,
                    previous_statistics, data_gate, transform,
                    trainer, model_resolver, evaluator, serving_check, pusher],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [])
