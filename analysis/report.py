"""The RL-effects report of one run or several: Markdown plus self-contained HTML with PNG figures.

    .venv/bin/grpo report default-32decf95                   # -> runs/default-32decf95/report/report.{md,html}
    .venv/bin/grpo report default-32decf95 default-1043a156 --out /tmp/os-vs-ps --resamples 5000

    from analysis.report import write_report
    paths = write_report(Path("runs/store"), ["default-32decf95"], Path("runs/default-32decf95/report"))

What it shows, all read from the store through the catalog (analysis/sql/):
  * Pass@K and Maj@K vs K before RL and after each iteration, per run (the paper's Sec. 5.2 / Figure 7
    question: does RL lift Maj@K but not Pass@K?)                            eval_at_k(k)
  * training curves: reward, share of zero-variance groups, KL to the reference, length per step
                                                                             run_curves
  * greedy accuracy, Pass@1 and Maj@Kmax per iteration, and each one's gain  iteration_gains(k)
  * outcome vs process supervision at equal GRPO steps, when the runs hold both (Fig. 5)
                                                                             outcome_vs_process(run_ids)
  * a summary in plain sentences whose every number is computed from those rows, and a table of every
    difference it states.

Every difference carries its interval (analysis/stats.py, resamples, seed and level from the `report`
config section): within a run, or between two runs on the same held-out problems, a paired bootstrap
over the problems (per-problem scores: problem_scores(k)); between supervisions with several runs each,
the runs are resampled too (hierarchical_bootstrap_diff). A change is called a gain or a loss only when
its interval excludes zero; otherwise "not distinguishable from no change". Figures carry the 95%
interval of each mean over problems (bootstrap_mean) as error bars.

Before RL is the run's iteration-0 evaluation; after RL its last evaluation; an iteration's evaluation is
the last one (largest step) of that iteration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import matplotlib.pyplot as plt
import numpy as np

from analysis.catalog import connect
from analysis.render import Document, ReportPaths
from analysis.stats import Interval, bootstrap_mean, hierarchical_bootstrap_diff, paired_bootstrap_diff
from analysis.summary import ks_up_to
from grpo_core.config import ReportConfig

__all__ = ["Difference", "ReportData", "RunData", "build_document", "default_report_dir", "load_report_data",
           "summary_sentences", "write_report"]

CURVES = {  # run_curves column -> axis label of the training-curve panels
    "reward_mean": "mean reward",
    "frac_reward_zero_std": "share of zero-variance groups",  # train accuracy would repeat the reward panel
    "kl_mean": "KL to reference (k3)",
    "length_mean": "length (tokens)",
}
SCORE = {"greedy": "greedy_correct", "pass": "pass_at_k", "maj": "maj_at_k"}  # problem_scores columns
BEFORE_AFTER = "before vs after RL"
FIRST_VS_LATER = "first iteration vs later ones"
NOT_DISTINGUISHABLE = "not distinguishable from no change"
_SLUG = re.compile(r"[^a-z0-9_\-]+")

Evaluation = tuple[int, int]  # (iteration, step)


@dataclass(frozen=True)
class RunData:
    """Everything the report shows of one run, as rows of the catalog's views and macros."""

    run_id: str
    info: dict[str, Any]        # run_info row (supervision, steps_per_iteration, ...); {} when the run has no runs row
    ks: list[int]               # K = 1, 2, 4, ..., k_max evaluated
    at_k: list[dict[str, Any]]  # eval_at_k rows for every K in ks: iteration, step, k, pass_at_k, maj_at_k
    gains: list[dict[str, Any]]  # iteration_gains(k_max) rows, one per evaluation in iteration order
    curves: list[dict[str, Any]]  # run_curves rows in global_step order
    scores: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # K -> problem_scores(K) rows

    @property
    def k_max(self) -> int | None:
        return self.ks[-1] if self.ks else None

    @property
    def supervision(self) -> str:
        return self.info.get("supervision") or "unknown"

    @property
    def label(self) -> str:
        return f"{self.run_id} ({self.supervision})"

    def evaluation(self, iteration: int) -> Evaluation | None:
        """The last evaluation (largest step) of `iteration` with sampled completions."""
        steps = [r["step"] for r in self.at_k if r["iteration"] == iteration]
        return (iteration, max(steps)) if steps else None

    def at(self, iteration: int, k: int) -> dict[str, Any] | None:
        """The eval_at_k row of `iteration`'s evaluation at K = k."""
        ev = self.evaluation(iteration)
        return next((r for r in self.at_k if (r["iteration"], r["step"]) == ev and r["k"] == k), None)

    def per_problem(self, evaluation: Evaluation, k: int, score: str) -> dict[str, float]:
        """{problem_id: score} of one evaluation; score is 'greedy', 'pass' (Pass@k) or 'maj' (Maj@k)."""
        col = SCORE[score]
        return {r["problem_id"]: r[col] for r in self.scores.get(k, [])
                if (r["iteration"], r["step"]) == evaluation and r[col] is not None}


@dataclass(frozen=True)
class Difference:
    """One difference the report states: b minus a, with its interval (accuracy units 0..1)."""

    comparison: str        # what is compared: "before vs after RL", "iteration 2", "outcome vs process at step 4"
    subject: str           # whose: a run's label, or "process - outcome"
    metric: str            # "greedy accuracy", "Pass@1", "Maj@16", ...
    a: float | None        # side a's mean over the paired problems (None when the sides are not accuracies)
    b: float | None        # side b's
    ci: Interval           # of b - a
    n_problems: int        # problems paired

    @property
    def verdict(self) -> str:
        """'gain', 'loss' or 'not distinguishable from no change', by the interval."""
        v = self.ci.verdict()
        return NOT_DISTINGUISHABLE if v == "not distinguishable" else v

    def change(self, name: str | None = None) -> str:
        """'Maj@16 rose 3.8 points from 40.0% to 43.8% (95% CI -3.0 to +10.8), not distinguishable from
        no change' (rose / fell / stayed at by the estimate; the clause only when the interval holds 0)."""
        name = name or self.metric
        d = 100 * self.ci.estimate
        if self.a is None or self.b is None:
            text = f"{name} {d:+.1f} points {self.ci.text()}"
        elif round(d, 1) == 0:
            text = f"{name} stayed at {_pct(self.b)} {self.ci.text()}"
        else:
            text = (f"{name} {'rose' if d > 0 else 'fell'} {abs(d):.1f} points from {_pct(self.a)} to "
                    f"{_pct(self.b)} {self.ci.text()}")
        return text if self.ci.excludes_zero() or round(d, 1) == 0 else f"{text}, {NOT_DISTINGUISHABLE}"


@dataclass(frozen=True)
class ReportData:
    runs: list[RunData]
    outcome_vs_process: list[dict[str, Any]]  # outcome_vs_process(run_ids) rows; empty unless both are present
    stats: ReportConfig = field(default_factory=ReportConfig)

    @cached_property
    def differences(self) -> list[Difference]:
        """Every difference the report states, in the order the summary states them."""
        out = [d for run in self.runs for d in run_differences(run, self.stats)]
        ovp = outcome_vs_process_difference(self)
        return out + ([ovp] if ovp else []) + runs_differences(self.runs, self.stats)

    def find(self, comparison: str, metric: str, subject: str) -> Difference | None:
        return next((d for d in self.differences
                     if (d.comparison, d.metric, d.subject) == (comparison, metric, subject)), None)


# -- reading the store ------------------------------------------------------------------------------
def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rel = con.sql(sql, params=params)
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def load_run(con: duckdb.DuckDBPyConnection, run_id: str) -> RunData:
    """One run's rows. K runs up to the run's eval.k_max, capped by the fewest samples of a problem."""
    p = {"run": run_id}
    info = next(iter(_rows(con, "from run_info where run_id = $run", p)), {})
    (n_min,) = con.execute("select min(n_min) from pass_at_k(1) where run_id = $run", p).fetchall()[0]
    k_max = min(n_min, info.get("k_max") or n_min) if n_min else None
    ks = ks_up_to(k_max) if k_max else []
    at_k = [r for k in ks for r in _rows(con, "from eval_at_k($k) where run_id = $run order by iteration, step",
                                        {**p, "k": k})]
    gains = _rows(con, "from iteration_gains($k) where run_id = $run order by iteration, step", {**p, "k": k_max}) \
        if k_max else []
    curves = _rows(con, "from run_curves where run_id = $run order by global_step", p)
    scores = {k: _rows(con, "from problem_scores($k) where run_id = $run order by iteration, step, problem_id",
                       {**p, "k": k}) for k in ks}
    return RunData(run_id, info, ks, at_k, gains, curves, scores)


def load_report_data(root: Path, run_ids: Sequence[str], stats: ReportConfig | None = None) -> ReportData:
    """The rows of every run in `run_ids` (unknown ids raise ValueError naming the known ones)."""
    if not run_ids:
        raise ValueError("a report needs at least one run id")
    con = connect(root, read_only=True)
    try:
        known = {r for (r,) in con.sql("select run_id from run_info union select run_id from run_evals").fetchall()}
        missing = [r for r in run_ids if r not in known]
        if missing:
            raise ValueError(f"no run {missing} in the store at {root}; known runs: {sorted(known)}")
        runs = [load_run(con, r) for r in dict.fromkeys(run_ids)]
        both = {r.supervision for r in runs} >= {"outcome", "process"}
        ovp = _rows(con, "from outcome_vs_process($runs) order by global_step", {"runs": list(run_ids)}) \
            if both else []
    finally:
        con.close()
    return ReportData(runs, ovp, stats or ReportConfig())


# -- the differences: paired (and nested) bootstraps over the held-out problems ----------------------
def _aligned(sides: Sequence[dict[str, float]]) -> tuple[list[str], np.ndarray]:
    """The problems every side scored (sorted) and the (sides, problems) array of their scores."""
    common = sorted(set.intersection(*(set(s) for s in sides))) if sides else []
    return common, np.array([[s[p] for p in common] for s in sides], dtype=float).reshape(len(sides), len(common))


def paired_difference(a: dict[str, float], b: dict[str, float], stats: ReportConfig, *, comparison: str,
                      subject: str, metric: str) -> Difference | None:
    """b minus a over the problems both scored, with the paired bootstrap interval; None without a pair."""
    problems, scores = _aligned([a, b])
    if not problems:
        return None
    ci = paired_bootstrap_diff(scores[0], scores[1], resamples=stats.resamples, seed=stats.seed, level=stats.level)
    return Difference(comparison, subject, metric, float(scores[0].mean()), float(scores[1].mean()), ci,
                      len(problems))


def _metric(score: str, k: int) -> str:
    return {"greedy": "greedy accuracy", "pass": f"Pass@{k}", "maj": f"Maj@{k}"}[score]


def run_differences(run: RunData, stats: ReportConfig) -> list[Difference]:
    """Within one run: before vs after RL (greedy; Pass@K and Maj@K at every K), each iteration's gain
    (greedy, Pass@1, Maj@Kmax), and the first iteration's greedy gain minus the later ones'."""
    last = _last_iteration(run)
    before, after = run.evaluation(0), run.evaluation(last) if last else None
    if before is None or after is None:
        return []
    out = []

    def add(a: Evaluation, b: Evaluation, k: int, score: str, comparison: str) -> None:
        d = paired_difference(run.per_problem(a, k, score), run.per_problem(b, k, score), stats,
                              comparison=comparison, subject=run.label, metric=_metric(score, k))
        if d:
            out.append(d)

    add(before, after, run.ks[0], "greedy", BEFORE_AFTER)
    for k in run.ks:
        for score in ("pass", "maj"):
            add(before, after, k, score, BEFORE_AFTER)
    evals = [(g["iteration"], g["step"]) for g in run.gains]
    for a, b in zip(evals, evals[1:]):
        for k, score in ((run.ks[0], "greedy"), (1, "pass"), (run.k_max, "maj")):
            add(a, b, k, score, f"iteration {b[0]}")
    first = next((e for e in evals if e[0] == 1), None)
    if first and after[0] > 1:  # later iterations exist: first gain (s1 - s0) vs later gains (sL - s1)
        s0, s1, s_last = (run.per_problem(e, run.ks[0], "greedy") for e in (before, first, after))
        later = {p: s_last[p] - s1[p] for p in set(s0) & set(s1) & set(s_last)}
        d = paired_difference(later, {p: s1[p] - s0[p] for p in later}, stats, comparison=FIRST_VS_LATER,
                              subject=run.label, metric="greedy accuracy gain")
        if d:
            out.append(Difference(d.comparison, d.subject, d.metric, None, None, d.ci, d.n_problems))
    return out


def outcome_vs_process_difference(data: ReportData) -> Difference | None:
    """Process minus outcome greedy accuracy at the last GRPO step both supervisions evaluated: the runs of
    each supervision are resampled as replicates and the shared problems inside (hierarchical bootstrap;
    with one run each, the paired bootstrap over problems)."""
    evaluated = [r for r in data.outcome_vs_process if r["greedy_gap"] is not None and r["global_step"] > 0]
    if not evaluated:
        return None
    step = evaluated[-1]["global_step"]
    sides: dict[str, list[dict[str, float]]] = {"outcome": [], "process": []}
    for run in data.runs:
        row = next((g for g in run.gains if g["global_step"] == step), None)
        if row and run.supervision in sides and run.ks:
            sides[run.supervision].append(run.per_problem((row["iteration"], row["step"]), run.ks[0], "greedy"))
    if not sides["outcome"] or not sides["process"]:
        return None
    problems, scores = _aligned([*sides["outcome"], *sides["process"]])
    if not problems:
        return None
    a, b = scores[: len(sides["outcome"])], scores[len(sides["outcome"]):]
    ci = hierarchical_bootstrap_diff(a, b, resamples=data.stats.resamples, seed=data.stats.seed,
                                     level=data.stats.level)
    return Difference(f"outcome vs process supervision at step {step}", "process - outcome", "greedy accuracy",
                      float(a.mean()), float(b.mean()), ci, len(problems))


def runs_differences(runs: Sequence[RunData], stats: ReportConfig) -> list[Difference]:
    """Every later run minus the first, at each one's last evaluation, on the problems both scored: greedy
    accuracy, Pass@K and Maj@K at the largest K both evaluated."""
    out = []
    first = runs[0] if runs else None
    for other in runs[1:]:
        ea, eb = _last_evaluation(first), _last_evaluation(other)
        common_ks = [k for k in first.ks if k in other.ks]
        if ea is None or eb is None or not common_ks:
            continue
        k = common_ks[-1]
        for score, kk in (("greedy", common_ks[0]), ("pass", k), ("maj", k)):
            d = paired_difference(first.per_problem(ea, kk, score), other.per_problem(eb, kk, score), stats,
                                  comparison=f"{first.run_id} vs {other.run_id} (last evaluations)",
                                  subject=f"{other.run_id} - {first.run_id}", metric=_metric(score, kk))
            if d:
                out.append(d)
    return out


# -- the summary: sentences computed from the rows and the differences -----------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def figure7_sentence(data: ReportData, run: RunData) -> str | None:
    """Maj@Kmax and Pass@Kmax before vs after RL, and whether the intervals support the paper's Figure 7
    pattern (Maj@K up, Pass@K not); says which part they do not support otherwise."""
    k = run.k_max
    maj = data.find(BEFORE_AFTER, f"Maj@{k}", run.label) if k else None
    pas = data.find(BEFORE_AFTER, f"Pass@{k}", run.label) if k else None
    if maj is None or pas is None:
        return None
    text = f"{maj.change()}; {pas.change()}. "
    m, p = maj.ci.verdict(), pas.ci.verdict()
    if m == "gain" and p != "gain":
        why = "here Pass@K fell" if p == "loss" else "Pass@K's change is not distinguishable from no change"
        return text + ("RL sharpened the distribution rather than widening it (the paper's Figure 7 pattern: "
                       f"Maj@K up, Pass@K not; {why}).")
    if m == "gain":
        return text + ("RL lifted both, so it also made answers reachable that sampling missed before "
                       "(the paper saw Maj@K rise without Pass@K).")
    if m == "loss":
        return text + "Maj@K fell, against the Figure 7 pattern" + {
            "gain": "; Pass@K rose.", "loss": "; Pass@K fell too.",
            "not distinguishable": "; Pass@K's change is not distinguishable from no change."}[p]
    return text + ("The data do not support the Figure 7 pattern: Maj@K's change is not distinguishable from no "
                   "change" + {"gain": "; Pass@K rose, so RL widened what sampling reaches.",
                               "loss": "; only its Pass@K part holds (Pass@K fell).",
                               "not distinguishable": ", nor is Pass@K's."}[p])


def greedy_sentence(data: ReportData, run: RunData) -> str | None:
    """Greedy accuracy and Pass@1 before vs after RL, over how many iterations and steps."""
    if len(run.gains) < 2:
        return None
    changes = [d.change("Greedy accuracy" if name == "greedy accuracy" else None)
               for name in ("greedy accuracy", "Pass@1")
               if (d := data.find(BEFORE_AFTER, name, run.label))]  # no greedy rows: no greedy accuracy
    if not changes:
        return None
    last = run.gains[-1]
    return ("; ".join(changes) + f"; over {last['iteration']} iteration{'s' if last['iteration'] != 1 else ''} "
            f"({last['global_step']} GRPO steps).")


def iteration_sentence(data: ReportData, run: RunData) -> str | None:
    """Each iteration's greedy gain with its interval, which of them hold, and whether the first iteration
    gave more than the later ones (the paper, Sec. 4.1.4: most of the gain comes in the first)."""
    gains = [d for g in run.gains[1:] if (d := data.find(f"iteration {g['iteration']}", "greedy accuracy", run.label))]
    if len(gains) < 2:
        return None
    parts = ", ".join(f"{d.comparison} {100 * d.ci.estimate:+.1f} {d.ci.text()}" for d in gains)
    held = [d.comparison for d in gains if d.ci.excludes_zero()]
    if not held:
        which = "no iteration's gain is distinguishable from no change"
    elif len(held) == len(gains):
        which = "every iteration's change excludes zero"
    else:
        which = "only " + " and ".join(held) + (" excludes" if len(held) == 1 else " exclude") + " zero"
    text = f"Greedy accuracy points gained per iteration: {parts}; {which}"
    first = data.find(FIRST_VS_LATER, "greedy accuracy gain", run.label)
    if first is None:
        return text + "."
    claim = {"gain": "the first iteration gained more than the later ones together, as in the paper",
             "loss": "the later iterations together gained more than the first",
             "not distinguishable": "the first iteration's gain cannot be told apart from the later ones'"}
    return text + (f"; {claim[first.ci.verdict()]} (first minus later: {100 * first.ci.estimate:+.1f} points "
                   f"{first.ci.text()}).")


def training_sentence(run: RunData) -> str | None:
    """Reward, KL and length at the start vs the end of training (means over the first/last tenth of steps)."""
    c = run.curves
    if not c:
        return None
    w = max(1, len(c) // 10)

    def mean(rows: list[dict[str, Any]], col: str) -> float | None:
        values = [r[col] for r in rows if r[col] is not None]
        return sum(values) / len(values) if values else None

    head, tail = c[:w], c[-w:]
    span = "the first vs the last step" if w == 1 else f"means over the first vs the last {w} steps"
    text = (f"Mean train reward went from {mean(head, 'reward_mean'):.3f} to {mean(tail, 'reward_mean'):.3f} "
            f"and completion length from {mean(head, 'length_mean'):.1f} to {mean(tail, 'length_mean'):.1f} tokens "
            f"({span}, of {len(c)} step{'s' if len(c) != 1 else ''})")
    kls = [r for r in c if r["kl_mean"] is not None]
    if kls:
        peak = max(kls, key=lambda r: r["kl_mean"])
        text += f"; KL to the reference peaked at {peak['kl_mean']:.4f} at step {peak['global_step']}"
    return text + "."


def outcome_vs_process_sentence(data: ReportData) -> str | None:
    """Process minus outcome greedy accuracy at the last step both evaluated, its interval and verdict,
    and how often process led (point estimates)."""
    evaluated = [r for r in data.outcome_vs_process if r["greedy_gap"] is not None and r["global_step"] > 0]
    d = next((x for x in data.differences if x.subject == "process - outcome"), None)
    if d is None:
        return None
    last = evaluated[-1]
    gap = 100 * d.ci.estimate
    relation = "level with" if round(gap, 1) == 0 else f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'}"
    verdict = {"gain": "process supervision ahead", "loss": "outcome supervision ahead",
               "not distinguishable": "not distinguishable from no difference"}[d.ci.verdict()]
    runs = (f" ({int(last['outcome_runs'])} outcome and {int(last['process_runs'])} process runs, resampled as "
            "replicates)") if max(last["outcome_runs"], last["process_runs"]) > 1 else ""
    ahead = sum(r["greedy_gap"] > 0 for r in evaluated)
    return (f"After {last['global_step']} GRPO steps, process supervision's greedy accuracy was {_pct(d.b)}, "
            f"{relation} outcome supervision's {_pct(d.a)} {d.ci.text()}, {verdict}{runs}; process supervision "
            f"led at {ahead} of {len(evaluated)} evaluated step{'s' if len(evaluated) != 1 else ''} "
            "(point estimates).")


def runs_sentences(data: ReportData) -> list[str]:
    """Each later run against the first at their last evaluations."""
    out = []
    for other in data.runs[1:]:
        ds = [d for d in data.differences if d.subject == f"{other.run_id} - {data.runs[0].run_id}"]
        if ds:
            out.append(f"{other.run_id} against {data.runs[0].run_id} (last evaluations, {ds[0].n_problems} shared "
                       "problems): " + "; ".join(d.change() for d in ds) + ".")
    return out


def summary_sentences(data: ReportData) -> list[str]:
    """The report's summary: per run, then outcome vs process, then the runs against each other.
    Prefixed with the run id when there are several."""
    out = []
    for run in data.runs:
        prefix = f"{run.run_id}: " if len(data.runs) > 1 else ""
        for sentence in (figure7_sentence(data, run), greedy_sentence(data, run), iteration_sentence(data, run),
                         training_sentence(run)):
            if sentence:
                out.append(prefix + sentence)
        if len(run.gains) < 2:
            out.append(prefix + "No evaluation after RL in the store yet, so no before/after comparison.")
    ovp = outcome_vs_process_sentence(data)
    if ovp:
        out.append(ovp)
    return out + runs_sentences(data)


# -- figures --------------------------------------------------------------------------------------
def _legend(ax: plt.Axes) -> None:
    """A small legend, when anything was drawn with a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _last_iteration(run: RunData) -> int | None:
    iterations = [r["iteration"] for r in run.at_k if r["iteration"] > 0]
    return max(iterations) if iterations else None


def _last_evaluation(run: RunData) -> Evaluation | None:
    return max(((r["iteration"], r["step"]) for r in run.at_k), default=None)


def _eval_label(iteration: int) -> str:
    return "before RL" if iteration == 0 else f"after iteration {iteration}"


def mean_interval(run: RunData, evaluation: Evaluation, k: int, score: str, stats: ReportConfig) -> Interval | None:
    """The mean over problems of one evaluation's scores, with its bootstrap interval."""
    scores = run.per_problem(evaluation, k, score)
    values = np.array([scores[p] for p in sorted(scores)])  # problem_id order: reproducible draws
    return bootstrap_mean(values, resamples=stats.resamples, seed=stats.seed, level=stats.level) \
        if values.size else None


def error_bars(ax: plt.Axes, xs: Sequence[float], cis: Sequence[Interval], fmt: str, **kw: Any) -> None:
    """Points at each estimate with error bars to its interval (in %)."""
    y = np.array([100 * c.estimate for c in cis])
    err = np.array([[100 * (c.estimate - c.low) for c in cis], [100 * (c.high - c.estimate) for c in cis]])
    err = np.maximum(err, 0.0)  # a float hair outside its interval (every problem alike) draws no bar
    ax.errorbar(xs, y, yerr=err, fmt=fmt, capsize=3, **kw)


def pass_maj_figure(run: RunData, stats: ReportConfig) -> plt.Figure:
    """Pass@K (solid) and Maj@K (dashed) vs K with 95% intervals over problems, one colour per evaluation."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, it in enumerate(sorted({r["iteration"] for r in run.at_k})):
        ev = run.evaluation(it)
        colour = f"C{i}"
        for score, fmt, name in (("pass", "o-", "Pass@K"), ("maj", "s--", "Maj@K")):
            points = [(k, ci) for k in run.ks if (ci := mean_interval(run, ev, k, score, stats))]
            if points:
                error_bars(ax, [k * (0.97 if score == "pass" else 1.03) for k, _ in points], [c for _, c in points],
                          fmt, color=colour, label=f"{name}, {_eval_label(it)}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(run.ks, [str(k) for k in run.ks])
    ax.set(xlabel="K", ylabel="accuracy (%)", title=run.label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over `window` points (fewer at the ends)."""
    h = window // 2
    return [float(np.mean(values[max(0, i - h): i + h + 1])) for i in range(len(values))]


def training_figure(runs: Sequence[RunData]) -> plt.Figure:
    """Reward, share of zero-variance groups, KL and length per GRPO step, one colour per run: the raw
    curve thin, its moving average over about a tenth of the steps bold; dotted lines mark iterations."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for ax, (col, label) in zip(axes.flat, CURVES.items()):
        for i, run in enumerate(runs):
            points = [(r["global_step"], r[col]) for r in run.curves if r[col] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, lw=0.8, alpha=0.35, color=f"C{i}")
                ax.plot(xs, smooth(ys, max(3, len(ys) // 10)), lw=1.8, color=f"C{i}", label=run.label)
        m = runs[0].info.get("steps_per_iteration")
        last = max((r["global_step"] for run in runs for r in run.curves), default=0)
        for boundary in range(m, last, m) if m else ():
            ax.axvline(boundary + 0.5, color="grey", ls=":", lw=1)
        ax.set(ylabel=label)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set(xlabel="GRPO step")
    _legend(axes[0][0])
    fig.tight_layout()
    return fig


def gains_figure(runs: Sequence[RunData], stats: ReportConfig) -> plt.Figure:
    """Greedy accuracy, Pass@1 and Maj@Kmax per iteration (0 = before RL) with 95% intervals over problems,
    one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
    for ax, score in zip(axes, ("greedy", "pass", "maj")):
        for run in runs:
            k = run.k_max if score == "maj" else 1
            points = [(g["iteration"], ci) for g in run.gains
                      if (ci := mean_interval(run, (g["iteration"], g["step"]), k, score, stats))]
            if points:
                error_bars(ax, [x for x, _ in points], [c for _, c in points], "o-", label=run.label)
        title = {"greedy": "greedy accuracy", "pass": "Pass@1",
                 "maj": "Maj@Kmax (" + ", ".join(f"K={r.k_max}" for r in runs if r.k_max) + ")"}[score]
        ax.set(title=title, xlabel="iteration (0 = before RL)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="accuracy (%)")
    _legend(axes[0])
    fig.tight_layout()
    return fig


def outcome_vs_process_figure(runs: Sequence[RunData], rows: Sequence[dict[str, Any]]) -> plt.Figure:
    """Train accuracy per step of each run (lines) and held-out greedy accuracy at equal steps (markers)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"outcome": "C0", "process": "C3"}
    for run in runs:
        if run.supervision in colours:
            ax.plot([r["global_step"] for r in run.curves], [100 * r["accuracy"] for r in run.curves],
                    color=colours[run.supervision], alpha=0.35, lw=1, label=f"train, {run.label}")
    evaluated = [r for r in rows if r["greedy_gap"] is not None]
    for sup, colour in colours.items():
        ax.plot([r["global_step"] for r in evaluated], [100 * r[f"{sup}_greedy_accuracy"] for r in evaluated],
                "o-", color=colour, lw=2, label=f"held-out greedy, {sup} supervision")
    ax.set(xlabel="GRPO step", ylabel="accuracy (%)", title="Outcome vs process supervision at equal steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# -- the document ---------------------------------------------------------------------------------
def _pct_cell(x: float | None) -> str:
    return "" if x is None else _pct(x)


def _pts_cell(d: float | None) -> str:
    return "" if d is None else f"{100 * d:+.1f}"


def _ci_cell(d: Difference | None) -> str:
    return "" if d is None else f"{100 * d.ci.low:+.1f} to {100 * d.ci.high:+.1f}"


def _slug(run_id: str) -> str:
    return _SLUG.sub("-", run_id.lower()).strip("-") or "run"


def differences_table(data: ReportData) -> list[dict[str, Any]]:
    """One row per stated difference: its sides, the difference, its interval and its verdict."""
    level = f"{data.stats.level:.0%} CI (pts)"
    return [{"comparison": d.comparison, "of": d.subject, "metric": d.metric, "a": _pct_cell(d.a),
             "b": _pct_cell(d.b), "b - a (pts)": _pts_cell(d.ci.estimate), level: _ci_cell(d),
             "verdict": d.verdict, "problems": d.n_problems} for d in data.differences]


def build_document(data: ReportData) -> Document:
    """The report as a Document: summary, differences, runs, Pass/Maj@K per run, training curves,
    iterations, OS vs PS."""
    ids = [r.run_id for r in data.runs]
    stats = data.stats
    doc = Document("RL effects: " + ", ".join(ids))
    doc.heading("Summary")
    doc.bullets(summary_sentences(data))

    if data.differences:
        doc.heading("Every stated difference")
        doc.paragraph(f"b minus a in accuracy points with its {stats.level:.0%} percentile bootstrap interval "
                      f"({stats.resamples} resamples, seed {stats.seed}): paired over the held-out problems both "
                      "sides scored; outcome vs process resamples the runs of each supervision too. A gain or "
                      f"loss is one whose interval excludes zero; otherwise {NOT_DISTINGUISHABLE}.")
        doc.table(differences_table(data))

    doc.heading("Runs")
    doc.table([{"run": r.run_id, "supervision": r.supervision, "status": r.info.get("status"),
                "iterations": r.info.get("iterations"), "steps per iteration (M)": r.info.get("steps_per_iteration"),
                "G": r.info.get("group_size"), "beta": r.info.get("beta"), "Kmax": r.k_max} for r in data.runs])

    compared = [r for r in data.runs if r.ks and _last_iteration(r) is not None]
    if compared:
        doc.heading("Pass@K and Maj@K before and after RL")
        doc.paragraph("The paper's Figure 7 question: does RL make the top answer right more often (Maj@K) "
                      "without widening what sampling can reach (Pass@K)? Pass@K is the unbiased estimator "
                      "1 - C(n-c, K)/C(n, K); Maj@K votes over groups of K samples from 8 partitions of each "
                      "problem's n samples (unbiased; ties scored by expectation; analysis/sql/"
                      "maj_at_k_per_problem.sql). Error bars: 95% intervals of the mean over problems.")
    for run in compared:
        last = _last_iteration(run)
        doc.heading(run.label, level=3)
        rows = []
        for k in run.ks:
            b, a = run.at(0, k), run.at(last, k)
            dp, dm = data.find(BEFORE_AFTER, f"Pass@{k}", run.label), data.find(BEFORE_AFTER, f"Maj@{k}", run.label)
            if b and a:
                rows.append({"K": k,
                             "Pass@K before": _pct_cell(b["pass_at_k"]), "Pass@K after": _pct_cell(a["pass_at_k"]),
                             "Pass@K change (pts)": _pts_cell(a["pass_at_k"] - b["pass_at_k"]),
                             "Pass@K 95% CI": _ci_cell(dp),
                             "Maj@K before": _pct_cell(b["maj_at_k"]), "Maj@K after": _pct_cell(a["maj_at_k"]),
                             "Maj@K change (pts)": _pts_cell(a["maj_at_k"] - b["maj_at_k"]),
                             "Maj@K 95% CI": _ci_cell(dm)})
        doc.paragraph(f"Before RL = iteration 0; after RL = iteration {last}.")
        doc.table(rows)
        doc.figure(pass_maj_figure(run, stats), f"pass_maj_vs_k-{_slug(run.run_id)}",
                   f"Pass@K and Maj@K vs K with 95% intervals over problems, {run.label}")

    if any(r.curves for r in data.runs):
        doc.heading("Training curves")
        doc.figure(training_figure([r for r in data.runs if r.curves]), "training_curves",
                   "Mean reward, share of zero-variance groups (no learning signal), KL to the reference and "
                   "completion length per GRPO step: raw (thin) and moving average (bold); dotted lines: "
                   "iteration boundaries")

    if any(len(r.gains) > 1 for r in data.runs):
        doc.heading("Gain per iteration")
        for run in data.runs:
            if len(run.gains) < 2:
                continue
            doc.heading(run.label, level=3)
            k = run.k_max
            rows = []
            for g in run.gains:
                it = f"iteration {g['iteration']}"
                dg = data.find(it, "greedy accuracy", run.label)
                dm = data.find(it, f"Maj@{k}", run.label)
                rows.append({"iteration": _eval_label(g["iteration"]), "GRPO step": g["global_step"],
                             "greedy": _pct_cell(g["greedy_accuracy"]), "greedy gain (pts)": _pts_cell(g["greedy_gain"]),
                             "greedy gain 95% CI": _ci_cell(dg),
                             "Pass@1": _pct_cell(g["pass_at_1"]), "Pass@1 gain (pts)": _pts_cell(g["pass_at_1_gain"]),
                             f"Maj@{k}": _pct_cell(g["maj_at_k"]), f"Maj@{k} gain (pts)": _pts_cell(g["maj_at_k_gain"]),
                             f"Maj@{k} gain 95% CI": _ci_cell(dm), f"Pass@{k}": _pct_cell(g["pass_at_k"])})
            doc.table(rows)
        doc.figure(gains_figure([r for r in data.runs if r.gains], stats), "iteration_gains",
                   "Greedy accuracy, Pass@1 and Maj@Kmax after each iteration (0 = before RL), with 95% "
                   "intervals over problems")

    evaluated = [r for r in data.outcome_vs_process if r["greedy_gap"] is not None]
    if data.outcome_vs_process:
        doc.heading("Outcome vs process supervision")
        doc.paragraph("Runs of each supervision averaged at equal GRPO steps (the paper's Figure 5), compared "
                      "on accuracy; the PRM's step scores behind process supervision are in rollouts.step_rewards. "
                      "The interval of the last step's gap is in the summary and the table of differences.")
        doc.table([{"GRPO step": r["global_step"], "outcome greedy": _pct_cell(r["outcome_greedy_accuracy"]),
                    "process greedy": _pct_cell(r["process_greedy_accuracy"]),
                    "process - outcome (pts)": _pts_cell(r["greedy_gap"]),
                    "outcome sampled": _pct_cell(r["outcome_sample_accuracy"]),
                    "process sampled": _pct_cell(r["process_sample_accuracy"])} for r in evaluated])
        doc.figure(outcome_vs_process_figure(data.runs, data.outcome_vs_process), "outcome_vs_process",
                   "Train accuracy per step (thin) and held-out greedy accuracy at equal steps (markers)")

    doc.heading("Reproduce with SQL")
    doc.paragraph("Every number above is one of these queries over the store (grpo sql \"...\"); the intervals "
                  "resample the per-problem rows of problem_scores / paired_scores (analysis/stats.py):")
    lines = []
    for run in data.runs:  # one run per query: its filter reaches the macros' scans (other runs' n do not matter)
        last = _last_iteration(run)
        lines += [f"select * from eval_at_k({run.k_max}) where run_id = '{run.run_id}' order by iteration;",
                  f"select * from iteration_gains({run.k_max}) where run_id = '{run.run_id}' order by iteration;"] \
            if run.k_max else []
        if run.k_max and last:
            lines.append(f"select * from paired_scores({run.k_max}, '{run.run_id}', 0, '{run.run_id}', {last});")
        lines.append(f"select * from run_curves where run_id = '{run.run_id}' order by global_step;")
    if data.outcome_vs_process:
        listed = ", ".join(f"'{r}'" for r in ids)
        lines.append(f"select * from outcome_vs_process([{listed}]) order by global_step;")
    doc.code("\n".join(lines), "sql")
    return doc


def default_report_dir(runs_dir: Path, run_ids: Sequence[str]) -> Path:
    """<runs_dir>/<run_id>/report for one run; <runs_dir>/reports/<id1>+<id2>... for several."""
    ids = list(dict.fromkeys(run_ids))
    if len(ids) == 1:
        return Path(runs_dir) / ids[0] / "report"
    return Path(runs_dir) / "reports" / "+".join(ids)


def write_report(root: Path, run_ids: Sequence[str], out_dir: Path, stats: ReportConfig | None = None) -> ReportPaths:
    """Read the runs from the store at `root` and write report.md, report.html and the PNGs into `out_dir`;
    `stats` (the config's `report` section) sets the bootstrap's resamples, seed and level."""
    return build_document(load_report_data(Path(root), run_ids, stats)).write(Path(out_dir))
