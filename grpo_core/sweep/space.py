"""The sweep's search space: which knobs a sweep varies and over which values.

    space = merge_space(given)            # given entries added to (or replacing, or null dropping) the default
    check_space(space, sampler)           # every key names a searchable knob and every value fits it
    parameters(space)                     # {'grpo.beta': ParamSpec(...), ...}

A space maps section -> field -> ParamSpec, mirroring the experiment config's layout, so a key such as
'grpo.beta' or 'task.synthetic.max_number' is the dotted path of the knob it sets. The sections listed in
`ExperimentConfig.BOOKKEEPING` (naming, storage, logging, the sweep itself) do not change what a run
computes and cannot be searched.

This module is imported by grpo_core.config (SweepConfig's `space` field has the type defined here), so it
imports the config only inside the functions that look knobs up, never at module level.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.fields import FieldInfo

__all__ = [
    "DEFAULT_SPACE",
    "ParamSpec",
    "Space",
    "check_space",
    "default_space",
    "field_at",
    "grid_values",
    "is_int",
    "merge_space",
    "parameters",
]


class ParamSpec(BaseModel):
    """One searched knob: a list of choices, or a [low, high] range (log-uniform with log: true)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)  # as every section of grpo_core.config

    choices: list[bool | int | float | str | None] | None = Field(
        None, min_length=1, description="values to choose from (categorical); excludes low/high"
    )
    low: float | None = Field(None, description="lower end of the range (inclusive)")
    high: float | None = Field(None, description="upper end of the range (inclusive)")
    log: bool = Field(False, description="sample the range log-uniformly (needs low > 0)")
    step: float | None = Field(None, gt=0, description="grid spacing within the range; None = continuous")
    extra: list[bool | int | float | str | None] = Field(
        default_factory=list, description="values outside the range also tried, e.g. [0.0] for beta"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None and (ranged or self.extra or self.step is not None or self.log):
            raise ValueError("give either choices, or low/high (with log, step, extra), not both")
        if self.choices is None:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high (or give choices)")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log: true needs low > 0, got low={self.low} (put 0 in extra instead)")
            if self.log and self.step is not None:
                raise ValueError("log and step cannot be combined")
        return self

    def values(self) -> list[Any]:
        """Every value of a discrete spec (choices, or the range on its step grid, plus extra)."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ValueError("a continuous range has no finite list of values; give step or choices")
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return [*self.extra, *(self.low + i * self.step for i in range(n + 1))]


# section -> field -> spec; a None spec drops a default entry.
Space = dict[str, dict[str, ParamSpec | None]]

# The default search space (issue: G in {4, 8, 16}, beta log-uniform in [0.001, 0.2] plus 0, epsilon in [0.05, 0.4]).
DEFAULT_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "grpo": {
        "group_size": {"choices": [4, 8, 16]},
        "beta": {"low": 0.001, "high": 0.2, "log": True, "extra": [0.0]},
        "epsilon": {"low": 0.05, "high": 0.4},
    }
}


def default_space() -> Space:
    """DEFAULT_SPACE as validated specs (a fresh copy each call: SweepConfig's default)."""
    return {s: {k: ParamSpec(**v) for k, v in f.items()} for s, f in DEFAULT_SPACE.items()}


def merge_space(given: Any) -> Any:
    """The given space's entries added to (or replacing, or with null dropping) DEFAULT_SPACE's entries.

    Works on raw input before validation; anything but a mapping is returned unchanged for pydantic to
    reject with its own message."""
    if not isinstance(given, dict):
        return given
    merged: dict[str, Any] = {s: dict(f) for s, f in DEFAULT_SPACE.items()}
    for section, fields in given.items():
        if isinstance(fields, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **fields}
        else:
            merged[section] = fields
    return merged


def parameters(space: Space) -> dict[str, ParamSpec]:
    """The searched knobs as {'section.field': spec}, dropped (null) entries left out."""
    return {f"{section}.{name}": spec for section, fields in space.items()
            for name, spec in fields.items() if spec is not None}


def check_space(space: Space, sampler: str) -> None:
    """Raise ValueError naming the entry unless every key is a searchable knob, every value given is valid
    for it, and (grid sampler) every spec is discrete."""
    params = parameters(space)
    if not params:
        raise ValueError("space searches nothing: give at least one parameter")
    for key, spec in params.items():
        field = field_at(key)
        adapter = TypeAdapter(Annotated[field.annotation, field])
        bounds = {"choices": spec.choices or [], "low": [spec.low], "high": [spec.high], "extra": spec.extra}
        for what, values in bounds.items():
            for value in values:
                if value is None and what in ("low", "high"):
                    continue
                try:
                    adapter.validate_python(value)
                except ValidationError as err:
                    raise ValueError(
                        f"space.{key}.{what}: {value!r} is not a valid {key}: {err.errors()[0]['msg']}"
                    ) from None
        if sampler == "grid" and spec.choices is None and spec.step is None:
            raise ValueError(f"space.{key}: sampler 'grid' needs discrete values: give choices or a step")


def field_at(key: str) -> FieldInfo:
    """The pydantic FieldInfo of a dotted experiment key such as 'grpo.beta' or 'task.synthetic.max_number';
    ValueError names the key if it is not a searchable knob."""
    from grpo_core.config import ExperimentConfig  # here: grpo_core.config imports this module

    parts = key.split(".")
    if parts[0] in ExperimentConfig.BOOKKEEPING:
        raise ValueError(f"space.{key}: the {parts[0]} section cannot be searched (it does not change a run)")
    model: type[BaseModel] = ExperimentConfig
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise ValueError(f"space.{key}: {'.'.join(parts[: i + 1])} is not a configuration key")
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if i == len(parts) - 1:
            if is_section:
                raise ValueError(f"space.{key}: is a section, name one of its fields")
            return field
        if not is_section:
            raise ValueError(f"space.{key}: {'.'.join(parts[: i + 1])} is a value, not a section")
        model = annotation
    raise AssertionError("unreachable")


def is_int(key: str) -> bool:
    """Whether the knob at `key` is an int (its range is sampled as integers)."""
    return field_at(key).annotation is int


def grid_values(key: str, spec: ParamSpec) -> list[Any]:
    """A discrete spec's values, as ints for an int knob (a step grid yields floats)."""
    values = spec.values()
    return [int(v) if isinstance(v, float) else v for v in values] if is_int(key) else values
