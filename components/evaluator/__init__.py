"""TFX's Evaluator, blessing against the model already serving (read from the workspace)."""

# Custom property of the blessing: the served version blessed against, or "" (first run).
BASELINE_MODEL_PROPERTY = "baseline_model_path"
