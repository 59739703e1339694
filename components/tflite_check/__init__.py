"""Before publishing: the TFLite interpreter on the test split, against the SavedModel."""

# Property of the blessing: JSON of `tflite.TFLiteEvaluation`, also written as
# EVALUATION_FILE in the blessing's folder.
EVALUATION_KEY = "evaluation"
EVALUATION_FILE = "evaluation.json"
