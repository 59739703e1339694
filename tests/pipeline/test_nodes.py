"""The names the run summary reads a finished run by are the built DAG's: node ids and output
keys (pipeline/nodes.py), and the artifact properties TFX's own code writes and reads."""
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.pusher import executor as pusher_executor

from tfx_finetune.components import properties
from tfx_finetune.pipeline import nodes
from tfx_finetune.pipeline.config import PipelineConfig
from tfx_finetune.pipeline.pipeline import create_pipeline
from tfx_finetune.reports import run_summary

NODE_IDS = {nodes.EXAMPLE_GEN, nodes.STATISTICS_GEN, nodes.SCHEMA_GEN, nodes.EXAMPLE_VALIDATOR,
            nodes.DATA_GATE, nodes.TRANSFORM, nodes.TUNER, nodes.TRAINER, nodes.EVALUATOR,
            nodes.SERVING_CHECK, nodes.PUSHER, nodes.TFLITE_CHECK, nodes.TFLITE_PUSHER}
OPTIONAL = {nodes.TUNER, nodes.TFLITE_CHECK, nodes.TFLITE_PUSHER}


def _components(**config):
    return {c.id: c for c in create_pipeline(PipelineConfig(**config)).components}


def test_every_node_the_summary_reads_is_in_the_dag_with_the_output_it_reads():
    built = _components(tflite="float16", tuner_trials=2)
    for node_id, (key, _) in run_summary.READERS.items():
        assert node_id in built, f"the run summary reads {node_id}, which the DAG does not have"
        assert key in built[node_id].outputs, (node_id, key, sorted(built[node_id].outputs))


def test_the_dag_names_every_node_from_nodes_py():
    assert set(_components(tflite="float16", tuner_trials=2)) == NODE_IDS
    assert set(_components(tflite="none")) == NODE_IDS - OPTIONAL


def test_the_properties_are_the_ones_tfx_writes_and_reads():
    assert properties.BLESSED_KEY == evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
    assert properties.PUSHED_KEY == pusher_executor._PUSHED_KEY
    assert properties.DESTINATION_KEY == pusher_executor._PUSHED_DESTINATION_KEY


def test_node_contexts_are_named_as_tfx_names_them():
    """The summary and lr-find find a node's executions by its context's name."""
    from tfx.dsl.compiler import compiler_utils

    from tfx_finetune.pipeline import metadata_store

    assert metadata_store.node_context_name("tiny", nodes.TRANSFORM) == (
        compiler_utils.node_context_name("tiny", nodes.TRANSFORM))
    context = metadata_store_pb2.Context(name=compiler_utils.node_context_name("a.b", "Trainer"))
    assert metadata_store.node_id(context) == "Trainer"
