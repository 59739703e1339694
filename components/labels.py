"""Class names: what a class name may be, label-names files (line i names label i) and the
class names an exported model carries."""
from __future__ import annotations

import os
import unicodedata
from typing import List, Optional, Sequence

from tfx_finetune.components import features


class LabelNamesError(ValueError):
    """A label-names file cannot be used as it is; the message says what to fix."""


def check_class_name(name: str) -> Optional[str]:
    """Why `name` cannot be a class name, or None when it can."""
    if not name.strip():
        return "is empty after trimming spaces"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "contains control characters"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    return None


def read_label_names(path: str) -> List[str]:
    """The names in a label-names file: one per line, line i (from 0) names label i.

    Surrounding spaces and line endings (also Windows') are trimmed; trailing empty lines are
    ignored.

    Raises:
      LabelNamesError: for an unreadable or empty file, an invalid name (e.g. an empty line
        inside the list) or a name given twice (two labels would become one class).
    """
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise LabelNamesError(f"cannot read label names file {path}: {e}") from e
    while names and not names[-1]:
        names.pop()
    if not names:
        raise LabelNamesError(f"label names file {path} is empty: write one class name per "
                              "line, line 1 naming label 0")
    seen = {}
    for index, name in enumerate(names):
        problem = check_class_name(name)
        if problem:
            raise LabelNamesError(f"{path} line {index + 1} (label {index}): name {name!r} "
                                  f"{problem}; every label up to the last needs a name")
        if name in seen:
            raise LabelNamesError(f"{path}: labels {seen[name]} and {index} are both named "
                                  f"{name!r}; give each label its own name")
        seen[name] = index
    return names


def name_of(label: str, names: Sequence[str]) -> Optional[str]:
    """The name of `label` (a label index such as "7") in `names`, or None when it has none."""
    text = label.strip()
    if not text.isdigit() or int(text) >= len(names):
        return None
    return names[int(text)]


def vocabulary(model_dir: str) -> List[str]:
    """An exported model's class names in label-index order: its label vocabulary asset."""
    import tensorflow as tf

    path = os.path.join(model_dir, "assets", features.LABEL_VOCABULARY)
    with tf.io.gfile.GFile(path) as f:
        return [line.rstrip("\n") for line in f]
