"""Before publishing: the TFLite interpreter on the test split, against the SavedModel."""
from __future__ import annotations

import dataclasses
import json

# Property of the blessing: `TFLiteEvaluation.to_json`, also written as EVALUATION_FILE in the
# blessing's folder.
EVALUATION_KEY = "evaluation"
EVALUATION_FILE = "evaluation.json"


@dataclasses.dataclass(frozen=True)
class TFLiteEvaluation:
    """The TFLite model against the SavedModel on the same test images (`tflite.evaluate`)."""

    images: int
    accuracy: float
    savedmodel_accuracy: float
    top1_agreement: float
    size_bytes: int
    latency_ms: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TFLiteEvaluation:
        return cls(**json.loads(text))
