"""The store's tables, each specified once: name, what a row is, file path pattern, and typed, documented columns.

The writer (`grpo_core.store.writer.Store`) formats a spec's `path` to name the file it writes; the catalog
(`analysis.catalog`) reads the spec's `glob`, derived from the same pattern, and attaches the spec's
docs to its views as DuckDB comments (`duckdb_views().comment`, `duckdb_columns().comment`). So a
column's type, nullability and meaning, and a table's place on disk, live here and nowhere else.

Paths are relative to the store root; every `{key}` is a safe path component the writer checks first.
This module imports only pyarrow, so training processes that write the store stay free of DuckDB.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_KEY = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Column:
    """One column: Arrow type, whether it may be null (checked on write), and a one-line meaning."""

    name: str
    type: pa.DataType
    doc: str
    nullable: bool = True

    @property
    def field(self) -> pa.Field:
        """The Arrow field files carry for this column."""
        return pa.field(self.name, self.type, nullable=self.nullable)


@dataclass(frozen=True)
class TableSpec:
    """A store table: `path` is a str.format pattern under the root, e.g. 'runs/{run_id}.parquet'."""

    name: str
    doc: str
    path: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names in {names}")
        if not self.path.endswith(".parquet"):
            raise ValueError(f"{self.name}: path {self.path!r} must end in .parquet, the readers' glob")

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema every file of this table is written with (docs stay out of the files)."""
        return pa.schema([c.field for c in self.columns])

    @property
    def glob(self) -> str:
        """The path pattern with each `{key}` as `*`: matches every file the writer names, not its temp files."""
        return _KEY.sub("*", self.path)

    def file(self, root: Path, **keys: object) -> Path:
        """The file under `root` that holds the rows of `keys` (the path's `{key}` fields)."""
        return Path(root) / self.path.format(**keys)


_RUN_ID = Column("run_id", pa.string(), "run that wrote the row (runs.run_id)", nullable=False)
_TRIAL_ID = Column("trial_id", pa.string(), "sweep trial id, the run's runs.trial_id; null outside sweeps")
_ITERATION = Column("iteration", pa.int32(), "iterative-RL iteration (reward model retrained, reference reset)",
                    nullable=False)
_STEP = Column("step", pa.int32(), "GRPO step (policy update) index within the run", nullable=False)
_CREATED_AT = Column("created_at", _TIMESTAMP, "when the file was first written (UTC)", nullable=False)
_UPDATED_AT = Column("updated_at", _TIMESTAMP, "when the file was last written (UTC)", nullable=False)
_WRITTEN_AT = Column("created_at", _TIMESTAMP, "when the file holding the row was written (UTC)", nullable=False)
_METRIC = "namespaced metric name, 'namespace/name'"
_VALUE = Column("value", pa.float64(), "the metric's value", nullable=False)

RUNS = TableSpec(
    "runs",
    "one row per training run (one Parquet file per run, replaced when its status changes)",
    "runs/{run_id}.parquet",
    (
        Column("run_id", pa.string(), "unique run id, the key every other table joins on", nullable=False),
        Column("trial_id", pa.string(), "Optuna sweep trial id; null for a run outside a sweep"),
        Column("name", pa.string(), "human-readable run name", nullable=False),
        Column("config_json", pa.string(), "the full run config (pydantic model dump) as JSON text", nullable=False),
        Column("git_sha", pa.string(), "git HEAD of the working directory at launch; null outside git"),
        Column("code_fingerprint", pa.string(), "hash of the code that produced the run; null when not recorded"),
        Column("versions_json", pa.string(), "python and installed package versions as JSON text", nullable=False),
        Column("status", pa.string(),
               "'running' until the run ends, then 'finished', 'failed', 'cancelled' or 'pruned' (sweeps)",
               nullable=False),
        _CREATED_AT,
        _UPDATED_AT,
    ),
)

ROLLOUTS = TableSpec(
    "rollouts",
    "one row per sampled completion, train and eval, with its rewards, advantage and KL "
    "(one file per run, iteration, step and split)",
    "rollouts/{run_id}/it{iteration:03d}-step{step:06d}-{split}.parquet",
    (
        _RUN_ID,
        _TRIAL_ID,
        _ITERATION,
        _STEP,
        Column("split", pa.string(), "'train' (a GRPO group) or 'eval' (held-out evaluation)", nullable=False),
        Column("decoding", pa.string(), "'sample' (temperature sampling) or 'greedy'", nullable=False),
        Column("problem_id", pa.string(), "problem the prompt came from", nullable=False),
        Column("group_index", pa.int32(), "the question's index within the step (one GRPO group of G samples)",
               nullable=False),
        Column("sample_index", pa.int32(), "the sample's index within its group, 0-based", nullable=False),
        Column("prompt", pa.string(), "prompt text given to the policy", nullable=False),
        Column("completion", pa.string(), "generated text", nullable=False),
        Column("gold", pa.string(), "reference answer", nullable=False),
        Column("answer", pa.string(),
               "answer extracted from the completion as written; null when none could be parsed"),
        Column("answer_norm", pa.string(),
               "canonical form of answer, the key of a majority vote; null when none was parsed"),
        Column("correct", pa.bool_(), "the verifier's verdict on answer vs gold", nullable=False),
        Column("reward", pa.float64(), "outcome reward (rule verifier or ORM score)", nullable=False),
        Column("step_rewards", pa.list_(pa.float64()),
               "per-reasoning-step PRM scores (process supervision); null otherwise"),
        Column("advantage", pa.float64(),
               "the sample's advantage (outcome: group z-score); null for eval and filtered rows"),
        Column("n_tokens", pa.int32(), "completion length in tokens", nullable=False),
        Column("finished", pa.bool_(), "true when generation ended with EOS; false = truncated at the length limit",
               nullable=False),
        Column("kl", pa.float64(), "mean per-token k3 estimate of KL(policy || reference); null when not computed"),
        Column("entropy", pa.float64(),
               "mean per-token entropy (nats) of the sampling policy on the completion; null for eval and "
               "filtered rows"),
        Column("draw", pa.int32(), "dynamic sampling (grpo.dynamic_sampling): which draw of the step, 0 = the first",
               nullable=False),
        Column("filtered", pa.bool_(),
               "true when dynamic sampling left the group out of the loss (all rewards equal, or past the B "
               "groups the step needed)", nullable=False),
        Column("logprob_sum", pa.float64(), "sum of the sampling engine's token log-probs of the completion",
               nullable=False),
        Column("engine", pa.string(), "rollout engine ('hf', 'vllm', ...)", nullable=False),
        Column("reward_model", pa.string(), "reward model that scored the sample; null for the rule verifier"),
        _WRITTEN_AT,
    ),
)

STEP_METRICS = TableSpec(
    "step_metrics",
    "training metrics in long format, one row per (run, iteration, step, metric); one file per step",
    "step_metrics/{run_id}/it{iteration:03d}-step{step:06d}.parquet",
    (
        _RUN_ID,
        _TRIAL_ID,
        _ITERATION,
        _STEP,
        Column("metric", pa.string(), f"{_METRIC}: 'train/kl', 'rollout/reward_mean', 'time/generate_s'",
               nullable=False),
        _VALUE,
        _WRITTEN_AT,
    ),
)

PRM_LABELS = TableSpec(
    "prm_labels",
    "Math-Shepherd process labels, one row per reasoning step of a policy solution (one file per run and "
    "iteration; rows from prm.label.label_solutions)",
    "prm_labels/{run_id}/it{iteration:03d}.parquet",
    (
        _RUN_ID,
        _TRIAL_ID,
        Column("iteration", pa.int32(), "iterative-RL iteration whose policy was sampled and used as completer",
               nullable=False),
        Column("problem_id", pa.string(), "problem the solution answers", nullable=False),
        Column("solution_index", pa.int32(), "the solution's index in its labelling call (key with run_id, iteration)",
               nullable=False),
        Column("step_index", pa.int32(), "j: the step's index in the solution, 0-based", nullable=False),
        Column("step_text", pa.string(), "the step as written (one line for the default delimiter)", nullable=False),
        Column("prompt", pa.string(), "prompt the policy saw; prompt + steps joined by the delimiter = the solution",
               nullable=False),
        Column("hard", pa.bool_(), "Math-Shepherd hard label: some continuation from this step reached the gold answer",
               nullable=False),
        Column("soft", pa.float64(), "soft label: the fraction of continuations that did", nullable=False),
        Column("exact", pa.bool_(), "exact label (steps 0..j all correct) where the task can check steps; else null"),
        Column("n_completions", pa.int32(),
               "N continuations sampled from the step prefix; 0 = last step, labelled by correctness", nullable=False),
        Column("completions_correct", pa.int32(), "how many of the N reached the gold answer", nullable=False),
        _WRITTEN_AT,
    ),
)

PRM_METRICS = TableSpec(
    "prm_metrics",
    "reward-model metrics in long format, one row per (run, iteration, epoch, metric); one file per run, "
    "iteration, model ('prm' or 'orm') and epoch",
    "prm_metrics/{run_id}/it{iteration:03d}-{model}-epoch{epoch:04d}.parquet",
    (
        _RUN_ID,
        _TRIAL_ID,
        Column("iteration", pa.int32(), "iterative-RL iteration the reward model was (re)trained in", nullable=False),
        Column("epoch", pa.int32(), "0 = labelling ('prm/label_*'), 1.. = training epochs", nullable=False),
        Column("metric", pa.string(), f"{_METRIC}: 'prm/eval_auc_exact', 'orm/train_loss', ...", nullable=False),
        _VALUE,
        _WRITTEN_AT,
    ),
)

SWEEPS = TableSpec(
    "sweeps",
    "one row per Optuna sweep (one Parquet file per sweep, replaced as it runs and when it ends)",
    "sweeps/{sweep}.parquet",
    (
        Column("sweep", pa.string(), "the Optuna study name; trials.sweep joins on it", nullable=False),
        Column("storage", pa.string(), "Optuna storage: a journal file path or an RDB URL (optuna-dashboard <storage>)",
               nullable=False),
        Column("sampler", pa.string(), "'tpe' | 'grid' | 'random'", nullable=False),
        Column("pruner", pa.string(), "'median' | 'none'", nullable=False),
        Column("direction", pa.string(), "'maximize' | 'minimize'", nullable=False),
        Column("objective", pa.string(), "the held-out metric optimised, e.g. 'maj@16'", nullable=False),
        Column("space_json", pa.string(),
               "the search space as JSON text, {\"grpo.beta\": {\"low\": ..., \"high\": ..., \"log\": true}, ...}",
               nullable=False),
        Column("config_json", pa.string(), "the base config every trial overrides, as JSON text", nullable=False),
        Column("status", pa.string(), "'running' until the sweep ends, then 'finished' or 'failed'", nullable=False),
        Column("n_trials", pa.int32(), "trials in the study when last written", nullable=False),
        Column("best_trial", pa.int32(), "Optuna number of the best complete trial; null if none completed"),
        Column("best_value", pa.float64(), "its objective"),
        Column("report_path", pa.string(), "the sweep report (report.md; report.html beside it)"),
        _CREATED_AT,
        _UPDATED_AT,
    ),
)

TRIALS = TableSpec(
    "trials",
    "one row per Optuna trial of a sweep (one Parquet file per trial, replaced when its state changes); "
    "join runs, rollouts and step_metrics on trial_id",
    "trials/{sweep}/t{trial_number:05d}.parquet",
    (
        Column("sweep", pa.string(), "the sweep (sweeps.sweep)", nullable=False),
        Column("trial_number", pa.int32(), "Optuna's trial number within the study", nullable=False),
        Column("trial_id", pa.string(), "tag on the trial's rows in runs, rollouts, step_metrics", nullable=False),
        Column("run_id", pa.string(), "the trial's run (runs.run_id); null if its config was invalid"),
        Column("state", pa.string(), "'RUNNING' | 'COMPLETE' | 'PRUNED' | 'FAIL'", nullable=False),
        Column("params_json", pa.string(),
               "searched values as set in the config, as JSON text {\"grpo.beta\": 0.01, ...}",
               nullable=False),
        Column("value", pa.float64(), "the objective; null unless state = 'COMPLETE'"),
        Column("intermediate_json", pa.string(), "{iteration: objective} reported to the pruner, as JSON text",
               nullable=False),
        Column("wall_s", pa.float64(), "seconds from start to end; null while running"),
        Column("error", pa.string(), "why a FAIL trial failed"),
        Column("retry_of", pa.int32(), "the trial number this retries (left RUNNING by a crashed sweep)"),
        _CREATED_AT,
        _UPDATED_AT,
    ),
)

EXPERIMENT_RUNS = TableSpec(
    "experiment_runs",
    "membership of runs in experiments: one row per (experiment, arm, seed), one Parquet file each; a run "
    "belongs to every experiment whose arm and seed give its config (bookkeeping: it does not change run ids)",
    "experiment_runs/{experiment}/{arm}-s{seed:04d}.parquet",
    (
        Column("experiment", pa.string(), "the experiment (experiment.name)", nullable=False),
        Column("arm", pa.string(), "the arm: a named set of config overrides", nullable=False),
        Column("seed", pa.int32(), "the replicate's seed (grpo.seed and prm.seed of its run)", nullable=False),
        Column("run_id", pa.string(), "the run (runs.run_id) the arm and seed make", nullable=False),
        Column("overrides_json", pa.string(),
               "the arm's overrides plus the seed knobs as JSON text {\"grpo.supervision\": \"process\", ...}",
               nullable=False),
        _CREATED_AT,
        _UPDATED_AT,
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (RUNS, ROLLOUTS, STEP_METRICS, PRM_LABELS, PRM_METRICS, SWEEPS, TRIALS, EXPERIMENT_RUNS)
}
