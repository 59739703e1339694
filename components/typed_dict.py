"""Rebuilding a frozen config dataclass from the dict an executor receives (JSON or Struct)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Type, TypeVar

T = TypeVar("T")


def rebuild(cls: Type[T], values: Mapping[str, Any], carrier: str) -> T:
    """`cls(**values)` with each value converted to its field's type: a JSON round trip or a
    protobuf Struct (which holds every number as a float) does not keep Python's types.

    Args:
      cls: a dataclass whose fields are annotated with str, int, float, bool or Tuple[str, ...].
      values: one value per field.
      carrier: what carried the values, for the error message (e.g. "the Trainer's
        custom_config").

    Raises:
      ValueError: when keys are missing or unknown (the pipeline was compiled by another
        version of tfx_finetune than the one running the executor), or a whole number is not.
    """
    types = typing.get_type_hints(cls)
    missing = sorted(set(types) - set(values))
    unknown = sorted(set(values) - set(types))
    if missing or unknown:
        raise ValueError(
            f"{carrier} does not fit this tfx_finetune (missing {missing}, unknown {unknown}): "
            "recompile the pipeline with the version of tfx_finetune that runs it")
    return cls(**{name: _convert(name, types[name], values[name]) for name in types})


def plain(instance: Any) -> Dict[str, Any]:
    """A config dataclass as a dict that JSON and a protobuf Struct can hold (tuples as lists);
    `rebuild` turns it back."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(instance).items()}


def _convert(name: str, field_type: Any, value: Any) -> Any:
    if typing.get_origin(field_type) is tuple:
        return tuple(value)
    if field_type is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return field_type(value)
