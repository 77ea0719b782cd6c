"""The sweep's records: its rows in the store's sweeps and trials tables, and its directory on disk.

    record_trial(store, study, number)                # the trial's row as it stands (RUNNING, COMPLETE, ...)
    finish_trial(store, study, number, error)         # after its process ended: FAIL unless it told a result
    store.write_sweep(sweep_row(cfg, study, "running"))

Why a trial failed (a config its values make invalid, a dead process and the end of its log, a sweep
interrupted while it ran) is kept here, in the trials table's `error` column, and nowhere in the study.
`store` is a grpo_core.store.Store; the row layouts are the SWEEPS and TRIALS table specs (grpo_core.store.tables).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from grpo_core.config import ExperimentConfig
from grpo_core.store import Store
from grpo_core.sweep.objective import objective_of
from grpo_core.sweep.study import storage_url, trial_at
from grpo_core.sweep.suggest import trial_id_for

__all__ = ["NO_RESULT", "finish_trial", "record_trial", "sweep_dir", "sweep_row", "trial_row"]

NO_RESULT = "the trial process ended without a result"  # the error of a trial whose process exited cleanly


def sweep_dir(cfg: ExperimentConfig) -> Path:
    """Where the sweep's report, trial configs and trial logs go: {store.runs_dir}/sweeps/{name}/."""
    return cfg.store.runs_dir / "sweeps" / cfg.sweep.name


def trial_row(sweep: str, t: FrozenTrial, error: str | None = None) -> dict[str, Any]:
    """One row of the trials table (grpo_core.store.TRIALS) for an Optuna trial; `error` says why a FAIL trial failed."""
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
        "error": error,
        "retry_of": t.user_attrs.get("retry_of"),
    }


def record_trial(store: Store, study: optuna.Study, number: int, error: str | None = None) -> None:
    """Write trial `number`'s current state (and why it failed, if it did) to the store's trials table."""
    store.write_trial(trial_row(study.study_name, trial_at(study, number), error))


def finish_trial(store: Store, study: optuna.Study, number: int, error: str | None) -> FrozenTrial:
    """After trial `number`'s process ended (or it could not start): a trial the process did not tell
    becomes FAIL, its row carrying `error` (NO_RESULT if None); the row is written either way."""
    if trial_at(study, number).state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL)
        error = error or NO_RESULT
    else:
        error = None
    frozen = trial_at(study, number)
    store.write_trial(trial_row(study.study_name, frozen, error))
    return frozen


def sweep_row(cfg: ExperimentConfig, study: optuna.Study, status: str, report_path: Path | None = None) -> dict:
    """One row of the sweeps table (grpo_core.store.SWEEPS) for the sweep as it stands."""
    s = cfg.sweep
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    return {
        "sweep": s.name,
        "storage": storage_url(cfg),
        "sampler": s.sampler,
        "pruner": s.pruner,
        "direction": s.direction,
        "objective": objective_of(cfg).name,
        "space_json": json.dumps({k: v.model_dump(exclude_defaults=True) for k, v in s.parameters.items()},
                                 sort_keys=True),
        "config_json": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "status": status,
        "n_trials": len(study.trials),
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "report_path": str(report_path) if report_path is not None else None,
    }
