"""How far a test accuracy can be trusted: its 95 % interval, and whether two models evaluated
on the same test images can be told apart (McNemar's exact test). scipy does the statistics."""
from __future__ import annotations

from typing import Sequence, Tuple

CONFIDENCE = 0.95


def accuracy_interval(correct: int, total: int,
                      confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Wilson score interval of `correct` right answers out of `total` (sound near 0 and 1
    and for small test sets, where the normal approximation is not)."""
    from scipy.stats import binomtest

    interval = binomtest(correct, total).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_p_value(first: Sequence[bool], second: Sequence[bool]) -> Tuple[float, int]:
    """McNemar's exact test of two models' right/wrong answers on the same test images.

    Only the images on which they disagree count: under "equally good", each such image is a
    coin flip for which model is right. Returns the two-sided p-value and how many images they
    disagree on (p is 1.0 when there are none).

    Raises:
      ValueError: when the two answer lists are not for the same number of images.
    """
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise ValueError(f"answers for {len(first)} and {len(second)} images: the models must be "
                         "evaluated on the same test images")
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    disagreements = only_first + only_second
    if not disagreements:
        return 1.0, 0
    return float(binomtest(only_first, disagreements, 0.5).pvalue), disagreements
