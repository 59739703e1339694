"""How the commands and reports print numbers."""
from __future__ import annotations

from typing import Optional, Union


def number(value: Optional[Union[int, float]], digits: int = 4) -> str:
    """"n/a" for a missing value (None or NaN); an int with thousands separators; a fraction
    (at most 1, e.g. an accuracy) with `digits` decimals; a larger float with one."""
    if value is None or value != value:  # NaN is the one value unequal to itself
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if value <= 1 else f"{value:.1f}"
