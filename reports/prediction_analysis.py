"""The candidate's predictions on the test split: confidences and the most confident mistakes."""
from __future__ import annotations

import dataclasses
from typing import Iterable, List, Sequence, Tuple

import numpy as np

from tfx_finetune.components import features

MISTAKES_SHOWN = 10
HIGH_CONFIDENCE = 0.9
# Images per call of the model, here and in `finetune predict`.
BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A labelled image's top class; `image` holds its encoded bytes where they are shown."""

    path: str
    label: str
    predicted: str
    confidence: float
    image: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


def most_confident_mistakes(predictions: Iterable[Prediction], limit: int) -> List[Prediction]:
    """The wrong predictions, most confident first (equal confidences keep their order)."""
    wrong = [p for p in predictions if not p.correct]
    return sorted(wrong, key=lambda p: -p.confidence)[:limit]


class PredictionAnalysis:
    """The candidate's predictions on the test split, accumulated batch by batch.

    Keeps every prediction's confidence (its top probability) and the `mistakes` most
    confident mistakes; those are the only images it holds on to. Per-class figures are the
    Evaluator's (the report's precision and recall table), not repeated here.
    """

    def __init__(self, class_names: Sequence[str], mistakes: int = MISTAKES_SHOWN):
        self.class_names = list(class_names)
        self.limit = mistakes
        self.mistakes: List[Prediction] = []
        self._confidence: List[float] = []
        self._correct: List[bool] = []

    def add(self, probabilities: np.ndarray, labels: Sequence[str], paths: Sequence[str],
            images: Sequence[bytes]) -> None:
        """One batch: probabilities [n, classes] in vocabulary order and the examples' features."""
        batch = [Prediction(path, label, self.class_names[int(np.argmax(p))], float(np.max(p)),
                            image)
                 for p, label, path, image in zip(probabilities, labels, paths, images)]
        for prediction in batch:
            self._confidence.append(prediction.confidence)
            self._correct.append(prediction.correct)
        self.mistakes = most_confident_mistakes(self.mistakes + batch, self.limit)

    @property
    def count(self) -> int:
        return len(self._confidence)

    @property
    def correct(self) -> Tuple[bool, ...]:
        """Whether each test image was predicted right, in the test split's file order."""
        return tuple(self._correct)

    @property
    def accuracy(self) -> float:
        return sum(self._correct) / self.count if self.count else float("nan")

    @property
    def errors(self) -> int:
        return self.count - sum(self._correct)

    def confidences(self, correct: bool) -> np.ndarray:
        return np.array([c for c, ok in zip(self._confidence, self._correct) if ok == correct])

    def histogram(self, bins: int = 20) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin edges over [0, 1] and the counts of right and of wrong predictions per bin."""
        edges = np.linspace(0.0, 1.0, bins + 1)
        return (edges, np.histogram(self.confidences(True), edges)[0],
                np.histogram(self.confidences(False), edges)[0])

    def confidence_line(self, threshold: float = HIGH_CONFIDENCE) -> str:
        """How often a confident prediction is wrong, in one sentence."""
        confident = int((np.array(self._confidence) >= threshold).sum())
        confident_wrong = int((self.confidences(False) >= threshold).sum())
        return (f"{self.errors} of {self.count} predictions are wrong, {confident_wrong} of them "
                f"with confidence >= {threshold}; {confident - confident_wrong} of the "
                f"{confident} predictions with confidence >= {threshold} are right.")


def analyse_test_split(model_dir: str, examples_uri: str, class_names: Sequence[str],
                       mistakes: int = MISTAKES_SHOWN,
                       batch_size: int = BATCH_SIZE) -> PredictionAnalysis:
    """Runs the model's `serving_examples` signature over the test split's serialized examples.

    Reads the gzipped TFRecords in batches; only the parsing of each batch happens outside the
    model (TensorFlow's parse_example, for the label, path and image to report).
    """
    import tensorflow as tf

    from tfx_finetune.components import signatures, splits

    model = tf.saved_model.load(model_dir)
    serve = model.signatures[signatures.SERVING_EXAMPLES]
    analysis = PredictionAnalysis(class_names, mistakes)
    files = splits.split_files(examples_uri, splits.TEST)
    if not files:
        return analysis
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value="")
            for key in (features.IMAGE_KEY, features.LABEL_KEY, features.PATH_KEY)}
    batches = (splits.records(files)
               .batch(batch_size)
               .map(lambda serialized: (serialized, tf.io.parse_example(serialized, spec)))
               .prefetch(1))
    for serialized, parsed in batches:
        analysis.add(serve(examples=serialized)["probabilities"].numpy(),
                     [label.decode("utf-8") for label in parsed[features.LABEL_KEY].numpy()],
                     [path.decode("utf-8") for path in parsed[features.PATH_KEY].numpy()],
                     parsed[features.IMAGE_KEY].numpy())
    return analysis
