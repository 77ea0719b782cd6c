"""Optuna sweeps over GRPO knobs (G, beta, epsilon, ...): search space -> suggestions -> config, the
study and its storage, resume, and the sweep's records in the store. No Prefect here: flows/sweep.py
asks for trials and runs each in its own process (flows/trial.py), which reports to the same study.

    study, retried = open_study(cfg)       # create, or continue a study of the same name
    spec = ask(study, cfg)                 # a trial: its suggested values and its ExperimentConfig
    ... run the trial (it tells the study COMPLETE or PRUNED) ...
    finish(study, spec, error)             # a trial still RUNNING after its process ended -> FAIL

Storage (`sweep.storage`): by default one journal file per store, `{store.root}/optuna.journal`
(`JournalStorage(JournalFileBackend(path))`), which processes share through a lock file; a path names
another journal file; a URL (postgresql://..., sqlite:///...) an RDB. The sweep creates its study before
any trial process starts, so SQLite is safe too as long as no two sweeps create one study at once.

Resume: a study name that exists is continued. Its trials still RUNNING when a sweep starts were left so
by a sweep that crashed (one sweep process per study at a time): they are marked FAIL and their values
enqueued, so the first trials of the new sweep retry them.

Beta's default range is log-uniform in [0.001, 0.2] plus 0 (no KL): a spec's `extra` values are offered by
a categorical parameter `{key}:choice` in ["range", *extra] before the range is sampled, so TPE learns
whether 0 is worth it. With the grid sampler, extra values simply join the grid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from grpo_core.config import ConfigError, ExperimentConfig, ParamSpec, SweepConfig, field_at, format_errors

__all__ = [
    "JOURNAL_FILE",
    "TrialSpec",
    "ask",
    "finish",
    "load_study",
    "objective_name",
    "open_study",
    "record_trial",
    "storage_url",
    "suggest",
    "sweep_dir",
    "sweep_row",
    "trial_config",
    "trial_row",
]

JOURNAL_FILE = "optuna.journal"
RANGE = "range"  # the `{key}:choice` value that samples the range instead of an extra value


@dataclass(frozen=True)
class TrialSpec:
    """A trial the sampler asked for: Optuna's number and internal id, the store tag, what it sets."""

    number: int
    optuna_id: int  # Optuna's storage-wide trial id (optuna.trial.Trial(study, optuna_id) in a trial process)
    trial_id: str  # the tag on the trial's rows in the store
    overrides: dict[str, Any]  # {'grpo.beta': 0.0, ...}: the values set in the config
    cfg: ExperimentConfig | None  # None when the suggested values make an invalid config
    error: str | None = None


# -- storage and study -------------------------------------------------------------------------------
def storage_url(cfg: ExperimentConfig) -> str:
    """The storage as text: an RDB URL, or the journal file's absolute path (what optuna-dashboard takes)."""
    s = cfg.sweep.storage
    if s is not None and "://" in s:
        return s
    return str(Path(s if s is not None else cfg.store.root / JOURNAL_FILE).resolve())


def _storage(cfg: ExperimentConfig) -> BaseStorage | str:
    url = storage_url(cfg)
    if "://" in url:
        return url
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def _sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "grid":
        space: dict[str, list[Any]] = {}
        for key, spec in sweep.parameters.items():
            space[key] = _grid_values(key, spec)
        return optuna.samplers.GridSampler(space, seed=sweep.seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.seed)


def _pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner_startup_trials,
                                       n_warmup_steps=sweep.pruner_warmup_steps)


def objective_name(cfg: ExperimentConfig) -> str:
    """The metric a trial is scored by, as the store names it: 'maj@16', 'pass@4', 'greedy_accuracy', ..."""
    s = cfg.sweep
    if s.objective in ("greedy_accuracy", "sample_accuracy"):
        return s.objective
    k = s.objective_k if s.objective_k is not None else cfg.eval.k_max
    if k > cfg.eval.k_max:
        raise ConfigError(f"invalid configuration:\n  sweep.objective_k: K = {k} needs eval.k_max >= {k} "
                          f"(eval.k_max is {cfg.eval.k_max}): the evaluation draws no more samples than that")
    return f"{s.objective.removesuffix('_at_k')}@{k}"


def load_study(cfg: ExperimentConfig) -> optuna.Study:
    """The existing study `sweep.name` with this config's sampler and pruner (as a trial process loads it)."""
    return optuna.load_study(study_name=cfg.sweep.name, storage=_storage(cfg), sampler=_sampler(cfg.sweep),
                             pruner=_pruner(cfg.sweep))


def open_study(cfg: ExperimentConfig) -> tuple[optuna.Study, list[int]]:
    """Create the study `sweep.name`, or continue it; returns it and the numbers of trials a crashed sweep
    left RUNNING, now FAIL, whose values are enqueued to be retried first."""
    objective = objective_name(cfg)
    s = cfg.sweep
    study = optuna.create_study(study_name=s.name, storage=_storage(cfg), sampler=_sampler(s), pruner=_pruner(s),
                                direction=s.direction, load_if_exists=True)
    if study.direction.name.lower() != s.direction:
        raise ConfigError(f"invalid configuration:\n  sweep.direction: study {s.name!r} exists with direction "
                          f"{study.direction.name.lower()}; use another sweep.name to change it")
    earlier = study.user_attrs.get("objective")
    if earlier is not None and earlier != objective:
        raise ConfigError(f"invalid configuration:\n  sweep.objective: study {s.name!r} optimises {earlier}, "
                          f"not {objective}; use another sweep.name to change it")
    study.set_user_attr("objective", objective)
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = "left RUNNING by an interrupted sweep; retried by a new trial"
        study._storage.set_trial_user_attr(t._trial_id, "error", reason)  # Optuna has no public per-trial setter
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        retried.append(t.number)
    return study, retried


# -- trials ------------------------------------------------------------------------------------------
def _is_int(key: str) -> bool:
    return field_at(key).annotation is int


def _grid_values(key: str, spec: ParamSpec) -> list[Any]:
    """A discrete spec's values, as ints for an int knob (a step grid yields floats)."""
    values = spec.values()
    return [int(v) if isinstance(v, float) else v for v in values] if _is_int(key) else values


def suggest(trial: optuna.Trial, sweep: SweepConfig) -> dict[str, Any]:
    """The values of one trial, {'grpo.group_size': 8, 'grpo.beta': 0.0, ...}, from its sampler."""
    values: dict[str, Any] = {}
    for key, spec in sweep.parameters.items():
        if sweep.sampler == "grid":
            value = trial.suggest_categorical(key, _grid_values(key, spec))
        elif spec.choices is not None:
            value = trial.suggest_categorical(key, spec.choices)
        elif spec.extra and (pick := trial.suggest_categorical(f"{key}:choice", [RANGE, *spec.extra])) != RANGE:
            value = pick
        else:
            value = _suggest_range(trial, key, spec)
        values[key] = value
    return values


def _suggest_range(trial: optuna.Trial, key: str, spec: ParamSpec) -> int | float:
    assert spec.low is not None and spec.high is not None
    if _is_int(key):
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


def ask(study: optuna.Study, cfg: ExperimentConfig) -> TrialSpec:
    """Ask the sampler for a trial and build its config (an invalid one is returned with its error)."""
    trial = study.ask()
    overrides = suggest(trial, cfg.sweep)
    tag = trial_id_for(cfg.sweep.name, trial.number)
    trial.set_user_attr("trial_id", tag)
    trial.set_user_attr("overrides", overrides)
    try:
        trial_cfg = trial_config(cfg, overrides, tag)
    except ConfigError as err:
        return TrialSpec(trial.number, trial._trial_id, tag, overrides, None, str(err))
    from grpo_core.pipeline.stages import run_id_for  # here, not at the top: pipeline loads torch

    trial.set_user_attr("run_id", run_id_for(trial_cfg))
    return TrialSpec(trial.number, trial._trial_id, tag, overrides, trial_cfg)


def finish(study: optuna.Study, spec: TrialSpec, error: str | None) -> FrozenTrial:
    """After a trial's process ended: a trial it did not tell (it crashed) becomes FAIL with `error`."""
    frozen = study._storage.get_trial(spec.optuna_id)
    if frozen.state == TrialState.RUNNING:
        study._storage.set_trial_user_attr(spec.optuna_id, "error", error or "the trial process ended without a result")
        study.tell(spec.number, state=TrialState.FAIL)
        frozen = study._storage.get_trial(spec.optuna_id)
    return frozen


# -- records in the store and on disk ----------------------------------------------------------------
def sweep_dir(cfg: ExperimentConfig) -> Path:
    """Where the sweep's report, trial configs and trial logs go: {store.runs_dir}/sweeps/{name}/."""
    return cfg.store.runs_dir / "sweeps" / cfg.sweep.name


def trial_row(sweep: str, t: FrozenTrial) -> dict[str, Any]:
    """One TRIAL_SCHEMA row (grpo_core.store.writer) of an Optuna trial."""
    wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
        else None
    return {
        "sweep": sweep,
        "trial_number": t.number,
        "trial_id": t.user_attrs.get("trial_id", trial_id_for(sweep, t.number)),
        "run_id": t.user_attrs.get("run_id"),
        "state": t.state.name,
        "params_json": json.dumps(t.user_attrs.get("overrides", t.params), sort_keys=True, default=str),
        "value": t.value if t.state == TrialState.COMPLETE else None,
        "intermediate_json": json.dumps({str(k): v for k, v in sorted(t.intermediate_values.items())}),
        "wall_s": wall,
        "error": t.user_attrs.get("error"),
        "retry_of": t.user_attrs.get("retry_of"),
    }


def record_trial(store: Any, study: optuna.Study, number: int) -> None:
    """Write trial `number`'s current state to the store's trials table (store: grpo_core.store.writer.Store)."""
    store.write_trial(trial_row(study.study_name, study.trials[number]))


def sweep_row(cfg: ExperimentConfig, study: optuna.Study, status: str, report_path: Path | None = None) -> dict:
    """One SWEEP_SCHEMA row (grpo_core.store.writer) of the sweep as it stands."""
    s = cfg.sweep
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    return {
        "sweep": s.name,
        "storage": storage_url(cfg),
        "sampler": s.sampler,
        "pruner": s.pruner,
        "direction": s.direction,
        "objective": objective_name(cfg),
        "space_json": json.dumps({k: v.model_dump(exclude_defaults=True) for k, v in s.parameters.items()},
                                 sort_keys=True),
        "config_json": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "status": status,
        "n_trials": len(study.trials),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "report_path": str(report_path) if report_path is not None else None,
    }
