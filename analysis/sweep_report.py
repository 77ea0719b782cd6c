"""The sweep report (Markdown + self-contained HTML with PNG figures) and a trial's objective from the store.

    eval_objective(root, run_id, iteration, step, objective_of(cfg))   # one evaluation's held-out metric
    write_sweep_report(study, out_dir, objective="maj@16", store_root=root, runs_dir=runs, storage=url)

The report shows the objective against each searched value, the optimisation history, the intermediate
values the pruner saw, Optuna's parameter importances (needs two complete trials), the best
configuration (or the trials that tie for it) and a table of every trial (state, values, objective with
its 95% interval, wall time, its run linked to that run's report, why it failed). Intervals come from the
per-problem scores of each trial's last evaluation (problem_scores(k)): the objective's percentile
bootstrap over the held-out problems, and the best trial's paired difference to each of the next ones
(the trials saw the same held-out problems), which says when the best cannot be told apart from them. Values are the knobs a trial set; Optuna's
internal encoding parameters (`grpo.beta:choice`, grpo_core.sweep.suggest) are left out. It reads the study (any Optuna storage, through Optuna's public API) and the store's
trials table (where failures are recorded), and knows nothing of torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from analysis.catalog import query
from analysis.render import Document, ReportPaths
from analysis.report import default_report_dir
from analysis.stats import Interval, bootstrap_mean, paired_bootstrap_diff
from grpo_core.config import ReportConfig
from grpo_core.sweep.objective import Objective
from grpo_core.sweep.suggest import is_internal

__all__ = ["eval_objective", "objective_scores", "trial_rows", "write_sweep_report"]

NEXT_TRIALS = 3  # the best trial is compared with this many runners-up
# objective name -> (problem_scores column, K); at-K names are 'maj@16' / 'pass@4'
_PER_PROBLEM = {"greedy_accuracy": ("greedy_correct", 1), "sample_accuracy": ("pass_at_k", 1)}

_STATE_COLORS = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red", "RUNNING": "tab:gray",
                 "WAITING": "tab:gray"}


def eval_objective(root: Path, run_id: str, iteration: int, step: int, objective: Objective) -> float:
    """`objective` of one stored evaluation: a column of `evals`, or of `eval_at_k(K)` for Maj@K / Pass@K."""
    where = "run_id = $run and iteration = $it and step = $step"
    params: dict[str, Any] = {"run": run_id, "it": iteration, "step": step}
    if objective.k is None:
        sql = f"select {objective.metric} from evals where {where}"
    else:
        sql = f"select {objective.metric} from eval_at_k($k) where {where}"
        params["k"] = objective.k
    rows = query(root, sql, params).to_pylist()
    value = next(iter(rows[0].values())) if rows else None
    if value is None or not math.isfinite(value):
        raise LookupError(f"no stored evaluation of {run_id} at iteration {iteration}, step {step} gives "
                          f"{objective.name}")
    return float(value)


def objective_scores(root: Path, run_id: str, objective: str) -> dict[str, float]:
    """Per problem, the score whose mean over problems is `objective` ('maj@16', 'pass@4', 'greedy_accuracy',
    'sample_accuracy') at the run's last evaluation; {} when the store holds none."""
    if "@" in objective:
        metric, k = objective.split("@")
        col, k = {"maj": "maj_at_k", "pass": "pass_at_k"}[metric], int(k)
    else:
        col, k = _PER_PROBLEM[objective]
    rows = query(root, f"select iteration, step, problem_id, {col} as score from problem_scores($k) "
                       "where run_id = $run", {"k": k, "run": run_id}).to_pylist()
    last = max(((r["iteration"], r["step"]) for r in rows), default=None)
    return {r["problem_id"]: r["score"] for r in rows
            if (r["iteration"], r["step"]) == last and r["score"] is not None}


def _interval(scores: dict[str, float], stats: ReportConfig) -> Interval | None:
    """The mean of `scores` with its bootstrap interval, problems in problem_id order (so it is reproducible)."""
    return bootstrap_mean(np.array([scores[p] for p in sorted(scores)]), resamples=stats.resamples,
                          seed=stats.seed, level=stats.level) if len(scores) > 1 else None


def _ci_text(ci: Interval | None) -> str:
    return "" if ci is None else f"{ci.low:.4f} to {ci.high:.4f}"


def trial_rows(study: optuna.Study, store_root: Path, runs_dir: Path, out_dir: Path,
               intervals: dict[int, Interval] | None = None) -> list[dict[str, Any]]:
    """One dict per trial for the report's table; `run` links to the run's report (relative to out_dir)
    when the trial wrote one; `objective CI` is the trial's interval from `intervals` (by trial number)."""
    errors = _errors(store_root, study.study_name)
    intervals = intervals or {}
    rows = []
    for t in study.get_trials(deepcopy=False):
        run_id = t.user_attrs.get("run_id")
        wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        report = default_report_dir(runs_dir, [run_id]) / "report.html" if run_id else None
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name, **_values(t),
                               "objective": t.value if t.state == TrialState.COMPLETE else None,
                               "objective 95% CI": _ci_text(intervals.get(t.number)),
                               "wall_s": wall, "run": run_id,
                               "run_link": os.path.relpath(report, out_dir) if report and report.exists() else None,
                               "note": _note(t, errors.get(t.number))}
        rows.append(row)
    return rows


def best_vs_next(study: optuna.Study, scores: dict[int, dict[str, float]], stats: ReportConfig,
                 objective: str) -> tuple[str, list[dict[str, Any]]]:
    """The sentence saying whether the best trial can be told apart from the next ones, and its table:
    the best's objective minus each runner-up's on the problems both scored (paired bootstrap)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = study.best_trial
    better = study.direction == optuna.study.StudyDirection.MAXIMIZE
    others = sorted((t for t in complete if t.number != best.number), key=lambda t: t.value, reverse=better)
    rows, apart, close = [], [], []
    for t in others[:NEXT_TRIALS]:
        a, b = scores.get(t.number, {}), scores.get(best.number, {})
        common = sorted(set(a) & set(b))
        if len(common) < 2:
            continue
        ci = paired_bootstrap_diff(np.array([a[p] for p in common]), np.array([b[p] for p in common]),
                                   resamples=stats.resamples, seed=stats.seed, level=stats.level)
        (apart if ci.excludes_zero() else close).append(f"#{t.number}")
        rows.append({"trial": t.number, "objective": t.value, f"best - trial ({objective})": ci.estimate,
                     f"{stats.level:.0%} CI": _ci_text(ci), "problems": len(common),
                     "verdict": "apart" if ci.excludes_zero() else "not distinguishable"})
    if not rows:
        return ("No runner-up has per-problem scores in the store to compare the best trial with.", [])
    if not close:
        text = (f"The best trial #{best.number} is told apart from each of the next ones ({', '.join(apart)}): "
                "every interval of its difference excludes zero.")
    else:
        text = (f"The best trial #{best.number} cannot be told apart from {', '.join(close)}: the interval of "
                "its difference to them includes zero, so the sweep does not single it out"
                + (f" (it is apart from {', '.join(apart)})." if apart else "."))
    return text, rows


def write_sweep_report(study: optuna.Study, out_dir: Path, *, objective: str, store_root: Path, runs_dir: Path,
                       storage: str, stats: ReportConfig | None = None) -> ReportPaths:
    """Write report.md, report.html and the figures of `study` into out_dir; `stats` (the config's `report`
    section) sets the intervals' resamples, seed and level."""
    out_dir, store_root, runs_dir = Path(out_dir), Path(store_root), Path(runs_dir)
    stats = stats or ReportConfig()
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    scores = {t.number: objective_scores(store_root, t.user_attrs["run_id"], objective)
              for t in complete if t.user_attrs.get("run_id")}
    intervals = {n: ci for n, s in scores.items() if (ci := _interval(s, stats))}
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}
    keys = _keys(trials)

    doc = Document(f"Sweep {study.study_name}")
    doc.paragraph(f"Objective: held-out {objective}, {study.direction.name.lower()}d. "
                  f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
    doc.code(f"optuna-dashboard {storage}", "bash")

    doc.heading("Best configuration")
    if complete:
        best = study.best_trial
        tied = [t for t in complete if t.value == best.value]
        if len(tied) > 1:
            doc.paragraph(f"{len(tied)} trials tie for the best {objective} ({best.value:.4f}): "
                          + ", ".join(f"#{t.number}" for t in tied) + "; no one of them is best. Their values:")
            doc.table([{"trial": t.number, **_values(t)} for t in tied], columns=["trial", *_keys(tied)])
        else:
            ci = intervals.get(best.number)
            doc.paragraph(f"Best trial: #{best.number} ({objective} = {best.value:.4f}"
                          + (f", 95% CI {_ci_text(ci)}" if ci else "") + f"), run {best.user_attrs.get('run_id', '?')}.")
            doc.table([{"knob": k, "value": v} for k, v in _values(best).items()], columns=["knob", "value"])
            doc.code(" ".join(f"{k}={v}" for k, v in _values(best).items()), "text")
        if len(complete) > 1:
            text, rows = best_vs_next(study, scores, stats, objective)
            doc.paragraph(text)
            if rows:
                doc.table(rows)
    else:
        doc.paragraph("No trial completed, so there is no best configuration yet.")

    doc.heading("Objective against each searched value")
    if complete and keys:
        doc.figure(_objective_vs_values(complete, keys, objective, study), "objective_vs_params",
                   f"{objective} of each complete trial against each searched value")
    else:
        doc.paragraph("No complete trial to plot.")

    doc.heading("Optimisation history")
    if complete:
        doc.figure(_history(trials, objective, study.direction), "history",
                   f"{objective} by trial number (dots) and the best so far (line)")
    else:
        doc.paragraph("No complete trial to plot.")
    if any(t.intermediate_values for t in trials):
        doc.figure(_intermediate(trials, objective), "intermediate",
                   f"{objective} after each iteration, as reported to the pruner")

    doc.heading("Parameter importances")
    importances = _importances(study)
    if isinstance(importances, str):
        doc.paragraph(importances)
    else:
        doc.figure(_importance_bars(importances), "importances",
                   "importance of each searched knob (optuna.importance, default evaluator)")
        doc.table([{"parameter": k, "importance": v} for k, v in importances.items()])

    doc.heading("All trials")
    rows = trial_rows(study, store_root, runs_dir, out_dir, intervals)
    doc.table(rows, columns=["trial", "state", *keys, "objective", "objective 95% CI", "wall_s", "run", "note"],
              links={"run": "run_link"})
    doc.paragraph("objective 95% CI: the percentile bootstrap over the held-out problems of the trial's last "
                  f"evaluation ({stats.resamples} resamples, seed {stats.seed}).")
    doc.paragraph("A trial's rows in the store carry its trial_id, e.g. "
                  f"grpo sql \"SELECT * FROM trials WHERE sweep = '{study.study_name}'\" or "
                  "\"SELECT step, avg(reward) FROM rollouts WHERE trial_id = '...' GROUP BY step\".")
    return doc.write(out_dir)


# -- helpers -----------------------------------------------------------------------------------------
def _values(t: FrozenTrial) -> dict[str, Any]:
    """The values a trial set in its config (the sweep's user attribute), else Optuna's params less the
    internal ones."""
    return dict(t.user_attrs.get("overrides") or {k: v for k, v in t.params.items() if not is_internal(k)})


def _keys(trials: Sequence[FrozenTrial]) -> list[str]:
    keys: dict[str, None] = {}
    for t in trials:
        keys.update(dict.fromkeys(_values(t)))
    return list(keys)


def _errors(store_root: Path, sweep: str) -> dict[int, str]:
    """Why each failed trial of `sweep` failed, by trial number, from the store's trials table."""
    rows = query(store_root, "select trial_number, error from trials where sweep = $sweep and error is not null",
                 {"sweep": sweep}).to_pylist()
    return {r["trial_number"]: r["error"] for r in rows}


def _note(t: FrozenTrial, error: str | None) -> str:
    parts = []
    if t.user_attrs.get("retry_of") is not None:
        parts.append(f"retries #{t.user_attrs['retry_of']}")
    if t.state == TrialState.PRUNED and t.intermediate_values:
        step = max(t.intermediate_values)
        parts.append(f"pruned after iteration {step} ({t.intermediate_values[step]:.4g})")
    if t.state == TrialState.FAIL:
        lines = (error or "").strip().splitlines()
        parts.append(lines[-1][:200] if lines else "failed")
    return "; ".join(parts)


def _objective_vs_values(complete: list[FrozenTrial], keys: list[str], objective: str,
                         study: optuna.Study) -> plt.Figure:
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    y = [t.value for t in complete]
    for ax, key in zip(axes[0], keys):
        xs = [_values(t).get(key) for t in complete]
        dist = next((t.distributions[key] for t in complete if key in t.distributions), None)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
            ax.scatter(xs, y, color="tab:blue")
            if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
                positive = [x for x in xs if x > 0]
                if len(positive) < len(xs):  # e.g. beta = 0 next to log-uniform betas
                    ax.set_xscale("symlog", linthresh=dist.low)
                else:
                    ax.set_xscale("log")
                ax.tick_params(axis="x", which="both", labelrotation=35)  # a narrow range labels its minor ticks
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], y, color="tab:blue")
            ax.set_xticks(range(len(labels)), labels, rotation=20)
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(objective)
    fig.tight_layout()
    return fig


def _history(trials: list[FrozenTrial], objective: str, direction: optuna.study.StudyDirection) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    best, xs, ys = None, [], []
    better = max if direction == optuna.study.StudyDirection.MAXIMIZE else min
    for t in trials:
        if t.state == TrialState.COMPLETE:
            ax.scatter(t.number, t.value, color=_STATE_COLORS["COMPLETE"])
            best = t.value if best is None else better(best, t.value)
        if best is not None:
            xs.append(t.number)
            ys.append(best)
    ax.step(xs, ys, where="post", color="tab:green", label="best so far")
    for t in trials:
        if t.state in (TrialState.FAIL, TrialState.PRUNED):
            ax.axvline(t.number, color=_STATE_COLORS[t.state.name], alpha=0.3, lw=3)
    ax.set_xlabel("trial number (shaded: orange pruned, red failed)")
    ax.set_ylabel(objective)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _intermediate(trials: list[FrozenTrial], objective: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for t in trials:
        if t.intermediate_values:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [t.intermediate_values[s] for s in steps], marker="o",
                    color=_STATE_COLORS.get(t.state.name, "tab:gray"), alpha=0.7)
    ax.set_xlabel("iteration (blue complete, orange pruned, red failed)")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _importances(study: optuna.Study) -> dict[str, float] | str:
    """Optuna's importances, or why there are none."""
    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < 2:
        return f"Importances need at least 2 complete trials; this sweep has {n}."
    params = sorted({k for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for k in t.params
                     if not is_internal(k)})
    try:
        importances = optuna.importance.get_param_importances(study, params=params)
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        return f"Importances could not be computed: {err}"
    if not importances:
        return "Importances need a parameter that every complete trial sets and that varies between them."
    return importances


def _importance_bars(importances: dict[str, float]) -> plt.Figure:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (sums to 1)")
    fig.tight_layout()
    return fig
