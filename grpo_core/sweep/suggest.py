"""From the search space to one trial: the sampler's values for each searched knob, and the trial's config.

    values = suggest(trial, cfg.sweep)                 # {'grpo.group_size': 8, 'grpo.beta': 0.0, ...}
    trial_cfg = trial_config(cfg, values, trial_id_for(cfg.sweep.name, trial.number))

A spec's `extra` values (beta's default 0, no KL) are offered by a categorical parameter `{key}:choice` in
["range", *extra] before the range is sampled, so TPE learns whether an extra value is worth it. With the
grid sampler every spec is discrete and its extra values simply join the grid. Such a parameter is
Optuna's encoding, not a knob: `is_internal(name)` tells it apart, and reports show the values a trial
set (its `overrides` user attribute) instead. optuna-dashboard lists every parameter Optuna sampled, so
it shows `{key}:choice` too.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from pydantic import ValidationError

from grpo_core.config import ConfigError, ExperimentConfig, SweepConfig, format_errors
from grpo_core.sweep.space import ParamSpec, grid_values, is_int

__all__ = ["RANGE", "is_internal", "suggest", "trial_config", "trial_id_for"]

RANGE = "range"  # the `{key}:choice` value that samples the range instead of an extra value
CHOICE = ":choice"  # the suffix of the parameter that picks between the range and the extra values


def is_internal(param: str) -> bool:
    """Whether an Optuna parameter name is this module's encoding (`grpo.beta:choice`), not a knob."""
    return param.endswith(CHOICE)


def suggest(trial: optuna.Trial, sweep: SweepConfig) -> dict[str, Any]:
    """The values of one trial, {'grpo.group_size': 8, 'grpo.beta': 0.0, ...}, from its sampler."""
    values: dict[str, Any] = {}
    for key, spec in sweep.parameters.items():
        if sweep.sampler == "grid":
            value = trial.suggest_categorical(key, grid_values(key, spec))
        elif spec.choices is not None:
            value = trial.suggest_categorical(key, spec.choices)
        elif spec.extra and (pick := trial.suggest_categorical(key + CHOICE, [RANGE, *spec.extra])) != RANGE:
            value = pick
        else:
            value = _suggest_range(trial, key, spec)
        values[key] = value
    return values


def _suggest_range(trial: optuna.Trial, key: str, spec: ParamSpec) -> int | float:
    assert spec.low is not None and spec.high is not None
    if is_int(key):
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(key, math.ceil(spec.low), math.floor(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


def trial_id_for(sweep: str, number: int) -> str:
    """The store tag of trial `number`, also the run_name of its run."""
    return f"{sweep}-t{number:03d}"


def trial_config(cfg: ExperimentConfig, overrides: dict[str, Any], trial_id: str) -> ExperimentConfig:
    """`cfg` with the trial's values set and run_name = trial_id; ConfigError names a bad combination."""
    data = cfg.model_dump(mode="json")
    data["run_name"] = trial_id
    for key, value in overrides.items():
        *sections, name = key.split(".")
        node = data
        for part in sections:
            node = node[part]
        node[name] = value
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err)) from None
