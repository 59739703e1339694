"""ServingCheck: our InfraValidator for machines without Docker, between Evaluator and Pusher."""
import logging

from tfx.components.util import model_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from tfx_finetune.components import splits, warmup
from tfx_finetune.components.properties import BLESSED_KEY, REASON_KEY
from tfx_finetune.components.serving_check import executor


@component
def ServingCheck(
        model: InputArtifact[standard_artifacts.Model],
        model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
        examples: InputArtifact[standard_artifacts.Examples],
        blessing: OutputArtifact[standard_artifacts.InfraBlessing],
        split: Parameter[str] = splits.TEST,
        sample_size: Parameter[int] = 8):
    """Blesses the model for pushing only if it answers TF Serving requests correctly.

    The candidate is loaded and sent `sample_size` images of `split` as REST JSON (b64) and as
    gRPC PredictRequests, for `serving_default` and `serving_examples`, and the model's TF
    Serving warm-up requests are replayed as TF Serving does on load. The InfraBlessing gets
    `blessed` (0/1) and a `reason`; the Pusher publishes nothing when it is 0. A model the
    Evaluator did not bless is not checked.
    """
    if not model_utils.is_model_blessed(model_blessing):
        blessing.set_int_custom_property(BLESSED_KEY, 0)
        blessing.set_string_custom_property(REASON_KEY, "not blessed by the Evaluator")
        return
    model_dir = path_utils.serving_model_path(model.uri)
    samples = executor.sample_examples(examples.uri, split, sample_size)
    try:
        summary = executor.check_servable(model_dir, samples)
        replayed = warmup.replay_warmup_requests(model_dir)
    except (executor.NotServable, warmup.WarmupError) as e:
        logging.error("model %s is not servable, push blocked: %s", model_dir, e)
        blessing.set_int_custom_property(BLESSED_KEY, 0)
        blessing.set_string_custom_property(REASON_KEY, f"not servable: {e}")
        return
    blessing.set_int_custom_property(BLESSED_KEY, 1)
    blessing.set_string_custom_property(
        REASON_KEY, f"{summary}; {replayed} TF Serving warm-up requests replayed")
