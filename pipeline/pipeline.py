"""`create_pipeline`: the only DAG, shared by the local runner and the Kubeflow compiler."""
from __future__ import annotations

import os
from typing import List, Optional

from google.protobuf.wrappers_pb2 import BoolValue
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
# The component modules themselves, not `tfx.v1`: that API module also imports the Google
# Cloud extensions (aiplatform), seconds of every run's start-up (bench/README.md).
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.components.tuner.component import Tuner
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import pusher_pb2, trainer_pb2

from tfx_finetune.components import features, signatures, splits
from tfx_finetune.components.atomic_pusher.component import AtomicPusher
from tfx_finetune.components.data_gate.component import DataGate
from tfx_finetune.components.evaluator.component import Evaluator
from tfx_finetune.components.image_example_gen.component import ImageExampleGen
from tfx_finetune.components.serving_check.component import ServingCheck
from tfx_finetune.components.tflite_check.component import TFLiteCheck
from tfx_finetune.components.tflite_pusher.component import TFLitePusher
from tfx_finetune.components.trainer_config import NO_TFLITE
from tfx_finetune.components.tuner import TRIALS_KEY
from tfx_finetune.components.uri import is_uri
from tfx_finetune.pipeline import nodes
from tfx_finetune.pipeline.config import PipelineConfig

# Executor code is referred to by dotted path, so the same code runs locally and in an image.
PREPROCESSING_FN = "tfx_finetune.components.preprocessing.preprocessing_fn"
RUN_FN = "tfx_finetune.components.trainer.run_fn"
TUNER_FN = "tfx_finetune.components.tuner.search.tuner_fn"


def statistics_options() -> tfdv.StatsOptions:
    """TFDV's sketches for top values and unique counts.

    TFDV's exact generator groups by every distinct value, and every image and path is
    distinct: each example went through one group-by-key in the Beam runner process, which
    the sketches avoid (figures in bench/README.md). The label's class counts, which the DataGate and the run report read, stay exact (the sketch
    is exact up to 1,024 distinct values; the rank histogram holds 1,000 classes, as before);
    the image and path features' top values and unique counts become estimates.
    """
    return tfdv.StatsOptions(use_sketch_based_topk_uniques=True)


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy on the test split (overall and per label), blessed on the overall accuracy's
    value threshold and, once a blessed model exists, its change threshold against it. A NaN
    accuracy fails the value threshold, so it is never blessed."""
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
                # Judged on the whole test split only: a plain `threshold` would apply to every
                # label slice too, where a class of twenty test images moves 5 % per image.
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()],
                    threshold=tfma.MetricThreshold(
                        value_threshold=tfma.GenericValueThreshold(
                            lower_bound={"value": config.min_accuracy}),
                        change_threshold=tfma.GenericChangeThreshold(
                            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                            absolute={"value": -config.max_accuracy_drop})))]),
            # Per-class precision and recall are read off this matrix in the run report.
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])],
        # Not the metrics compiled into the Keras model (loss, accuracy): TFMA computes them by
        # loading the model once more in every combiner (six loads per model), which made
        # evaluation about 3x slower, and the accuracy above is already the one judged.
        options=tfma.Options(include_default_metrics=BoolValue(value=False)))


def _local_or_uri(path: str) -> str:
    """Absolute local paths; URIs (gs://, s3://) as given."""
    return path if is_uri(path) else os.path.abspath(path)


def create_pipeline(config: PipelineConfig, metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    pipeline_root: Optional[str] = None,
                    publish: bool = True) -> tfx_pipeline.Pipeline:
    """Builds the fine-tune DAG.

    The state one run hands to the next (the served model the Evaluator blesses against, the
    statistics the DataGate accepted last) is read from the workspace by those components
    (`components.published`), not resolved from ML Metadata: every orchestrator, Kubeflow
    Pipelines v2 included, runs the DAG as it is.

    Args:
      config: the run's configuration.
      metadata_connection_config: ML Metadata connection (None on Kubeflow).
      beam_pipeline_args: arguments for the Beam-powered components.
      pipeline_root: overrides `config.pipeline_root` (e.g. a bucket on Kubeflow).
      publish: False ends the DAG at the Evaluator, with no baseline (the value threshold only),
        no ServingCheck and no Pusher: for experiments (`finetune compare`).

    With `config.tflite` set, the TFLiteCheck evaluates the Trainer's TFLite model before
    anything is pushed, and the TFLitePusher publishes it after the SavedModel's push.
    """
    components = _data_components(config)
    example_gen, schema_gen, transform = components[0], components[2], components[-1]
    # What the Trainer (and the Tuner's trials) train on.
    training = dict(examples=example_gen.outputs[nodes.EXAMPLES],
                    transform_graph=transform.outputs[nodes.TRANSFORM_GRAPH],
                    schema=schema_gen.outputs[nodes.SCHEMA],
                    train_args=trainer_pb2.TrainArgs(splits=[splits.TRAIN]),
                    eval_args=trainer_pb2.EvalArgs(splits=[splits.EVAL]))
    custom_config = config.trainer_config().to_custom_config()
    best = None
    if config.tuner_trials:
        tuner = Tuner(tuner_fn=TUNER_FN, **training, custom_config={
            **custom_config, TRIALS_KEY: config.tuner_trials}).with_id(nodes.TUNER)
        components.append(tuner)
        best = tuner.outputs[nodes.BEST_HYPERPARAMETERS]
    trainer = Trainer(run_fn=RUN_FN, **training, hyperparameters=best,
                      custom_config=custom_config).with_id(nodes.TRAINER)
    components.append(trainer)
    examples, model = example_gen.outputs[nodes.EXAMPLES], trainer.outputs[nodes.MODEL]
    if publish:
        components += _publishing_components(config, examples, model)
    else:
        components.append(Evaluator(examples=examples, example_splits=[splits.TEST], model=model,
                                    eval_config=eval_config(config)).with_id(nodes.EVALUATOR))
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root or _local_or_uri(config.pipeline_root),
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [])


def _data_components(config: PipelineConfig) -> list:
    """ImageExampleGen to Transform: ingestion, statistics, the curated schema, validation,
    the DataGate, and the Transform that runs only past the gate."""
    example_gen = ImageExampleGen(input_path=_local_or_uri(config.data_dir),
                                  split_ratios=config.split_ratios,
                                  options=config.ingestion_options()).with_id(nodes.EXAMPLE_GEN)
    examples = example_gen.outputs[nodes.EXAMPLES]
    statistics_gen = StatisticsGen(examples=examples, stats_options=statistics_options()
                                   ).with_id(nodes.STATISTICS_GEN)
    statistics = statistics_gen.outputs[nodes.STATISTICS]
    schema_gen = ImportSchemaGen(schema_file=config.schema_path).with_id(nodes.SCHEMA_GEN)
    schema = schema_gen.outputs[nodes.SCHEMA]
    example_validator = ExampleValidator(statistics=statistics, schema=schema
                                         ).with_id(nodes.EXAMPLE_VALIDATOR)
    data_gate = DataGate(
        statistics=statistics, schema=schema,
        anomalies=example_validator.outputs[nodes.ANOMALIES],
        accepted_statistics_dir=_local_or_uri(config.accepted_statistics_dir),
        max_label_drift=config.max_label_drift,
        min_example_count_ratio=config.min_example_count_ratio,
        accept_data_changes=config.accept_data_changes).with_id(nodes.DATA_GATE)
    # materialize=False: the Trainer applies the Transform graph in its input pipeline, so no
    # decoded float pixels are written to disk.
    transform = Transform(
        examples=examples, schema=schema,
        preprocessing_fn=PREPROCESSING_FN, materialize=False, disable_statistics=True,
        custom_config={"image_size": config.image_size}).with_id(nodes.TRANSFORM)
    transform.add_upstream_node(data_gate)  # nothing is transformed or trained past the gate
    return [example_gen, statistics_gen, schema_gen, example_validator, data_gate, transform]


def _publishing_components(config: PipelineConfig, examples, model) -> list:
    """The Evaluator blessing against the served model, the ServingCheck and the AtomicPusher;
    with `config.tflite`, the TFLiteCheck and the TFLitePusher."""
    model_base_dir = _local_or_uri(config.model_base_dir)
    evaluator = Evaluator(
        examples=examples,
        example_splits=[splits.TEST],
        model=model,
        baseline_base_directory=model_base_dir,
        eval_config=eval_config(config)).with_id(nodes.EVALUATOR)
    blessing = evaluator.outputs[nodes.BLESSING]
    serving_check = ServingCheck(model=model, model_blessing=blessing, examples=examples
                                 ).with_id(nodes.SERVING_CHECK)
    pusher = AtomicPusher(
        model=model,
        model_blessing=blessing,
        infra_blessing=serving_check.outputs[nodes.BLESSING],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=model_base_dir)),
        custom_config={"keep_versions": config.keep_versions}).with_id(nodes.PUSHER)
    components = [evaluator, serving_check, pusher]
    if config.tflite != NO_TFLITE:
        tflite_check = TFLiteCheck(
            model=model, model_blessing=blessing, examples=examples,
            max_accuracy_drop=config.tflite_max_accuracy_drop).with_id(nodes.TFLITE_CHECK)
        pusher.add_upstream_node(tflite_check)  # evaluated before anything is published
        components += [tflite_check, TFLitePusher(
            model=model, tflite_blessing=tflite_check.outputs[nodes.BLESSING],
            pushed_model=pusher.outputs[nodes.PUSHED_MODEL],
            base_directory=_local_or_uri(config.tflite_base_dir),
            keep_versions=config.keep_versions).with_id(nodes.TFLITE_PUSHER)]
    return components
