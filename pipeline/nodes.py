"""The node ids `create_pipeline` gives its components and the output keys read back from a
finished run: one name each, so a renamed component fails a test instead of a report saying
"n/a" (tests/pipeline/test_nodes.py checks them against the built DAG)."""

EXAMPLE_GEN = "ImageExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
DATA_GATE = "DataGate"
TRANSFORM = "Transform"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
SERVING_CHECK = "ServingCheck"
PUSHER = "AtomicPusher"
TFLITE_CHECK = "TFLiteCheck"
TFLITE_PUSHER = "TFLitePusher"

# Output keys (the component specs' names; TFX's standard_component_specs for its own).
EXAMPLES = "examples"
STATISTICS = "statistics"
SCHEMA = "schema"
ANOMALIES = "anomalies"
TRANSFORM_GRAPH = "transform_graph"
MODEL = "model"
MODEL_RUN = "model_run"
EVALUATION = "evaluation"
BLESSING = "blessing"
PUSHED_MODEL = "pushed_model"
PUSHED_TFLITE = "pushed_tflite"
