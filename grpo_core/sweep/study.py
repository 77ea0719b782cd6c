"""The Optuna study of a sweep: its storage, sampler and pruner, creating or continuing it, asking for trials
and reaching a trial from the process that runs it. Only Optuna's public API is used.

    study, retried = open_study(cfg)       # create, or continue a study of the same name
    spec = ask(study, cfg)                 # a trial: its suggested values and its ExperimentConfig
    trial = load_trial(cfg, spec.number)   # in the trial's own process: report, should_prune, tell

Storage (`sweep.storage`): by default one journal file per store, `{store.root}/optuna.journal`
(`JournalStorage(JournalFileBackend(path))`), which processes share through a lock file; a path names
another journal file; a URL (postgresql://..., sqlite:///...) an RDB. The sweep creates its study before
any trial process starts, so SQLite is safe too as long as no two sweeps create one study at once.

Resume: a study name that exists is continued. Its trials still RUNNING when a sweep starts were left so
by a sweep that crashed (one sweep process per study at a time): they are told FAIL and their values
enqueued, so the first trials of the new sweep retry them. Why a trial failed is not kept in the study:
it goes to the store's trials table (grpo_core.sweep.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from grpo_core.config import ConfigError, ExperimentConfig, SweepConfig
from grpo_core.sweep.objective import objective_of
from grpo_core.sweep.space import grid_values
from grpo_core.sweep.suggest import suggest, trial_config, trial_id_for

__all__ = [
    "INTERRUPTED",
    "JOURNAL_FILE",
    "TrialSpec",
    "ask",
    "load_study",
    "load_trial",
    "open_study",
    "storage_url",
    "trial_at",
]

JOURNAL_FILE = "optuna.journal"
INTERRUPTED = "left RUNNING by an interrupted sweep; retried by a new trial"  # the error of such a trial


@dataclass(frozen=True)
class TrialSpec:
    """A trial the sampler asked for: Optuna's number, the store tag, what it sets, its config."""

    number: int
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


def open_storage(cfg: ExperimentConfig) -> BaseStorage:
    """The sweep's Optuna storage: an RDBStorage for a URL, else a JournalStorage on the journal file."""
    url = storage_url(cfg)
    if "://" in url:
        return RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def _sampler(sweep: SweepConfig, done: int = 0) -> optuna.samplers.BaseSampler:
    """The sweep's sampler, seeded with sweep.seed + `done` (the trials the study already has): a continued
    study draws new values instead of replaying the first sweep's random draws."""
    seed = sweep.seed + done
    if sweep.sampler == "grid":
        space = {key: grid_values(key, spec) for key, spec in sweep.parameters.items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner_startup_trials,
                                       n_warmup_steps=sweep.pruner_warmup_steps)


def _load(cfg: ExperimentConfig, storage: BaseStorage) -> optuna.Study:
    return optuna.load_study(study_name=cfg.sweep.name, storage=storage, sampler=_sampler(cfg.sweep),
                             pruner=_pruner(cfg.sweep))


def load_study(cfg: ExperimentConfig) -> optuna.Study:
    """The existing study `sweep.name` with this config's sampler and pruner."""
    return _load(cfg, open_storage(cfg))


def open_study(cfg: ExperimentConfig) -> tuple[optuna.Study, list[int]]:
    """Create the study `sweep.name`, or continue it; returns it and the numbers of trials a crashed sweep
    left RUNNING, now FAIL (their error is INTERRUPTED), whose values are enqueued to be retried first."""
    objective = objective_of(cfg).name
    s = cfg.sweep
    study = optuna.create_study(study_name=s.name, storage=open_storage(cfg), sampler=_sampler(s),
                                pruner=_pruner(s), direction=s.direction, load_if_exists=True)
    if study.direction.name.lower() != s.direction:
        raise ConfigError(f"invalid configuration:\n  sweep.direction: study {s.name!r} exists with direction "
                          f"{study.direction.name.lower()}; use another sweep.name to change it")
    earlier = study.user_attrs.get("objective")
    if earlier is not None and earlier != objective:
        raise ConfigError(f"invalid configuration:\n  sweep.objective: study {s.name!r} optimises {earlier}, "
                          f"not {objective}; use another sweep.name to change it")
    study.set_user_attr("objective", objective)
    study.set_metric_names([objective])  # optuna-dashboard labels the value by it, not "Objective 0"
    study.sampler = _sampler(s, done=len(study.get_trials(deepcopy=False)))
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        retried.append(t.number)
    return study, retried


# -- trials ------------------------------------------------------------------------------------------
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
        return TrialSpec(trial.number, tag, overrides, None, str(err))
    from grpo_core.pipeline.stages import run_id_for  # here, not at the top: pipeline loads torch

    trial.set_user_attr("run_id", run_id_for(trial_cfg))
    return TrialSpec(trial.number, tag, overrides, trial_cfg)


def load_trial(cfg: ExperimentConfig, number: int) -> optuna.trial.Trial:
    """Trial `number` of the study `sweep.name`, for the process that runs it to report to, ask the pruner
    and tell (`trial.study.tell(trial, ...)`). Found through the storage's public lookup of a trial's id by
    study and number, the id `optuna.trial.Trial` is built from."""
    storage = open_storage(cfg)
    study = _load(cfg, storage)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(cfg.sweep.name),
                                                               number)
    return optuna.trial.Trial(study, trial_id)


def trial_at(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial `number` of `study` as it stands in the storage (numbers count 0, 1, ... within a study)."""
    return study.get_trials(deepcopy=False)[number]

