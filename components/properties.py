"""The custom properties the checks and pushers write on their output artifacts, which the
pushers after them and the run summary read: TFX's own names where TFX has one."""

# Set to 1 or 0 on every blessing. TFX's name (tfx.components.evaluator.constants.
# ARTIFACT_PROPERTY_BLESSED_KEY), which `model_utils.is_model_blessed` reads.
BLESSED_KEY = "blessed"
# Why a check blessed or refused, or why a pusher published nothing.
REASON_KEY = "reason"
# Set by the pushers, as TFX's Pusher does (tfx/components/pusher/executor.py `_MarkPushed`).
PUSHED_KEY = "pushed"
DESTINATION_KEY = "pushed_destination"
# 1 when the push made a new version, 0 when the model was already the one published.
NEW_VERSION_KEY = "new_version"
