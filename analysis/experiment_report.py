"""The report of an experiment (arms x seeds): every arm compared with across-seed 95% intervals.

    from analysis.experiment_report import write_experiment_report
    paths, summary = write_experiment_report(Path("runs/store"), "main", Path("runs/experiments/main"))

Read from the store: the experiment's runs (view experiment_runs joined to runs, finished runs only) and,
per run and evaluation, the per-problem scores of three metrics on the held-out problems: greedy
correctness, Pass@K and Maj@K at K = the evaluations' k_max (macro problem_scores). For an arm they form an array X of shape (seeds, evaluations, problems), and
every statement carries an interval from analysis.stats (report.resamples, .seed, .level), resampling seeds within each arm and, nested
inside, the held-out problems (one draw shared by everything compared):
  * level of arm A at evaluation i:         hierarchical_bootstrap_mean(X_A[:, i])
  * gain of A in iteration i:               hierarchical_bootstrap_mean(X_A[:, i] - X_A[:, i-1])
  * gain of A over all iterations:          hierarchical_bootstrap_mean(X_A[:, I] - X_A[:, 0])
  * arm B vs the first arm A after iteration i:  hierarchical_bootstrap_diff(X_A[:, i], X_B[:, i])
  * B's total gain vs A's:                   hierarchical_bootstrap_diff(X_A[:, I] - X_A[:, 0], same for B)
A difference is a gain when its whole interval lies above zero, a loss when below, else not
distinguishable from no change (Interval.verdict). With one seed per arm the intervals cover the
problems only, and the report says so. The figure shows per-seed curves (held-out greedy accuracy per
evaluation, the training reward per GRPO step) with the arm's mean over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analysis.catalog import connect
from analysis.render import Document, ReportPaths
from analysis.stats import Interval, hierarchical_bootstrap_diff, hierarchical_bootstrap_mean
from grpo_core.config import ReportConfig

__all__ = ["ExperimentData", "Finding", "findings", "load_experiment", "summary_sentences",
           "write_experiment_report"]

# The per-problem scores of the runs $runs at K = $k (macro problem_scores), one column per metric.
_SCORES = ("select run_id, iteration, problem_id, greedy_correct, pass_at_k, maj_at_k from problem_scores($k) "
           "where list_contains($runs, run_id)")
_METRICS = ("greedy", "pass", "maj")  # in _SCORES' column order


@dataclass
class ExperimentData:
    """An experiment's finished runs and their per-problem scores."""

    name: str
    arms: list[str]
    seeds: dict[str, list[int]]                  # arm -> seeds of its finished runs, ascending
    run_ids: dict[tuple[str, int], str]          # (arm, seed) -> run id
    unfinished: list[dict]                       # member runs left out (not finished): arm, seed, run_id, status
    k: int                                       # the K of Pass@K and Maj@K
    iterations: list[int]                        # evaluations held by every run: 0 (before RL), 1, ..., I
    problems: list[str]                          # held-out problems, the columns of every score array
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # metric -> arm -> (S, E, P)
    curves: list[dict] = field(default_factory=list)  # arm, seed, global_step, reward_mean per GRPO step

    def label(self, metric: str) -> str:
        return {"greedy": "greedy accuracy", "pass": f"Pass@{self.k}", "maj": f"Maj@{self.k}"}[metric]


def load_experiment(root: Path, name: str, arms: Sequence[str] | None = None) -> ExperimentData:
    """The finished runs of experiment `name` and their scores. `arms` orders the arms (the first is the
    reference the others are compared with); default: the order their runs were first tagged."""
    con = connect(root, read_only=True)
    try:
        members = con.execute("select e.arm, e.seed, e.run_id, r.status, i.k_max from experiment_runs e left join "
                              "runs r using (run_id) left join run_info i using (run_id) where e.experiment = $name "
                              "order by e.created_at, e.arm, e.seed", {"name": name}).fetchall()
        if not members:
            known = [e for (e,) in con.sql("select distinct experiment from experiment_runs order by 1").fetchall()]
            raise ValueError(f"no experiment {name!r} in the store at {root}; known experiments: {known}")
        order = list(arms) if arms is not None else list(dict.fromkeys(m[0] for m in members))
        done = [m for m in members if m[3] == "finished" and m[0] in order]
        if not done:
            raise ValueError(f"experiment {name!r} has no finished run yet (runs: {[m[2] for m in members]})")
        run_ids = {(a, s): r for a, s, r, _, _ in done}
        k = min(m[4] for m in done)
        data = ExperimentData(
            name, [a for a in order if any(m[0] == a for m in done)],
            {a: sorted(s for (arm, s) in run_ids if arm == a) for a in order}, run_ids,
            [{"arm": a, "seed": s, "run_id": r, "status": st} for a, s, r, st, _ in members if st != "finished"],
            k, [], [])
        runs = list(run_ids.values())
        scored = con.execute(_SCORES, {"runs": runs, "k": k}).fetchall()
        rows = {m: [(r, it, p, scores[j]) for r, it, p, *scores in scored if scores[j] is not None]
                for j, m in enumerate(_METRICS)}
        curves = con.execute("select run_id, global_step, reward_mean from run_curves where list_contains($runs, "
                             "run_id) order by run_id, global_step", {"runs": runs}).fetchall()
    finally:
        con.close()
    by_run = {r: key for key, r in run_ids.items()}
    data.curves = [{"arm": by_run[r][0], "seed": by_run[r][1], "global_step": g, "reward_mean": v}
                   for r, g, v in curves]
    _fill_scores(data, rows)
    return data


def _fill_scores(data: ExperimentData, rows: dict[str, list[tuple]]) -> None:
    """data.iterations, data.problems and data.scores from (run_id, iteration, problem_id, score) rows."""
    held: dict[str, set[int]] = {}
    for run_id, iteration, _, _ in rows["greedy"]:
        held.setdefault(run_id, set()).add(iteration)
    data.iterations = sorted(set.intersection(*(held.get(r, set()) for r in data.run_ids.values())))
    first = next(iter(data.run_ids.values()))
    data.problems = sorted({p for r, it, p, _ in rows["greedy"] if r == first and it == 0})
    if not data.iterations or not data.problems:
        raise ValueError(f"experiment {data.name!r}: its finished runs hold no common evaluation")
    col = {p: j for j, p in enumerate(data.problems)}
    ev = {it: j for j, it in enumerate(data.iterations)}
    for metric, metric_rows in rows.items():
        table = {(r, it, p): s for r, it, p, s in metric_rows}
        data.scores[metric] = {}
        for arm in data.arms:
            x = np.full((len(data.seeds[arm]), len(ev), len(col)), np.nan)
            for si, seed in enumerate(data.seeds[arm]):
                run_id = data.run_ids[(arm, seed)]
                for it, j in ev.items():
                    for p, c in col.items():
                        x[si, j, c] = table.get((run_id, it, p), np.nan)
            if np.isnan(x).any():
                raise ValueError(f"experiment {data.name!r}, arm {arm!r}: a run lacks a {data.label(metric)} score "
                                 "of some held-out problem; its arms must be evaluated on the same problems")
            data.scores[metric][arm] = x


# -- the statistics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One stated quantity: a level, a gain or an arm difference, with its interval."""

    metric: str          # 'greedy' | 'pass' | 'maj'
    kind: str            # 'level' | 'gain' | 'total gain' | 'difference' | 'gain difference'
    arm: str             # the arm (for a difference: the arm compared with the reference)
    iteration: int       # the evaluation (gain: its iteration; total gain and gain difference: the last)
    interval: Interval
    reference: str | None = None  # the arm a difference is taken against


def findings(data: ExperimentData, stats: ReportConfig = ReportConfig()) -> list[Finding]:
    """Every level, gain and arm difference the report states (see the module docstring for each formula),
    with `stats`' resamples, seed and level."""
    out: list[Finding] = []
    boot = {"resamples": stats.resamples, "seed": stats.seed, "level": stats.level}
    last = len(data.iterations) - 1
    for metric, by_arm in data.scores.items():
        for arm, x in by_arm.items():
            for j, it in enumerate(data.iterations):
                out.append(Finding(metric, "level", arm, it, hierarchical_bootstrap_mean(x[:, j], **boot)))
                if j:
                    out.append(Finding(metric, "gain", arm, it,
                                       hierarchical_bootstrap_mean(x[:, j] - x[:, j - 1], **boot)))
            if last:
                out.append(Finding(metric, "total gain", arm, data.iterations[last],
                                   hierarchical_bootstrap_mean(x[:, last] - x[:, 0], **boot)))
        ref = data.arms[0]
        a = by_arm[ref]
        for arm in data.arms[1:]:
            b = by_arm[arm]
            for j, it in enumerate(data.iterations[1:], start=1):
                out.append(Finding(metric, "difference", arm, it,
                                   hierarchical_bootstrap_diff(a[:, j], b[:, j], **boot), ref))
            if last:
                out.append(Finding(metric, "gain difference", arm, data.iterations[last], hierarchical_bootstrap_diff(
                    a[:, last] - a[:, 0], b[:, last] - b[:, 0], **boot), ref))
    return out


def _find(found: Sequence[Finding], metric: str, kind: str, arm: str, iteration: int) -> Finding | None:
    return next((f for f in found if (f.metric, f.kind, f.arm, f.iteration) == (metric, kind, arm, iteration)), None)


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}"


def _moved(i: Interval, what: str) -> str:
    """'rose 4.0 points (95% CI +1.0 to +7.0): a gain' and the like, the verdict from the interval."""
    verb = "rose" if i.estimate > 0 else "fell" if i.estimate < 0 else "stayed"
    verdict = {"gain": "a gain", "loss": "a loss", "not distinguishable": "not distinguishable from no change"}
    return f"{what} {verb} {abs(i.estimate) * 100:.1f} points {i.text()}: {verdict[i.verdict()]}"


def summary_sentences(data: ExperimentData, found: Sequence[Finding]) -> list[str]:
    """The report's conclusions, each number and verdict computed from `found`."""
    out = []
    if not data.iterations[1:]:
        return ["No evaluation after RL yet: nothing to compare."]
    last = data.iterations[-1]
    when = f"from before RL to iteration {last}"
    for arm in data.arms:
        total = {m: _find(found, m, "total gain", arm, last) for m in data.scores}
        parts = [_moved(total[m].interval, data.label(m)) for m in data.scores]
        out.append(f"{arm} ({_seeds(len(data.seeds[arm]))}), {when}: " + "; ".join(parts) + ".")
        gains = [_find(found, "greedy", "gain", arm, it) for it in data.iterations[1:]]
        if len(gains) > 1:
            out.append(f"{arm}, greedy accuracy per iteration: " + "; ".join(
                f"iteration {g.iteration} {_pts(g.interval.estimate)} {g.interval.text()} ({g.interval.verdict()})"
                for g in gains) + ".")
        out.append(f"{arm}: " + figure7_sentence(data, total["maj"].interval, total["pass"].interval))
    for arm in data.arms[1:]:
        ref = data.arms[0]
        for m in data.scores:
            d = _find(found, m, "difference", arm, last).interval
            side = {"gain": f"{arm} is higher", "loss": f"{arm} is lower",
                    "not distinguishable": "the arms are not distinguishable"}[d.verdict()]
            out.append(f"{data.label(m)} after iteration {last}, {arm} minus {ref}: {_pts(d.estimate)} points "
                       f"{d.text()}: {side}.")
    if min(len(s) for s in data.seeds.values() if s) == 1:
        out.append("An arm has one seed: its intervals cover the held-out problems only, not the variation "
                   "between seeds (run more seeds: experiment.seeds).")
    return out


def figure7_sentence(data: ExperimentData, maj: Interval, pas: Interval) -> str:
    """The paper's Figure 7 pattern (RL lifts Maj@K, not Pass@K), stated only as far as the intervals carry it."""
    k = data.k
    if maj.verdict() == "gain" and pas.verdict() != "gain":
        return (f"the Figure 7 pattern holds: Maj@{k} gained {_pts(maj.estimate)} points {maj.text()} while Pass@{k} "
                f"did not ({_pts(pas.estimate)} {pas.text()}, {pas.verdict()}).")
    missing = []
    if maj.verdict() != "gain":
        missing.append(f"Maj@{k} shows no gain ({_pts(maj.estimate)} {maj.text()}, {maj.verdict()})")
    if pas.verdict() == "gain":
        missing.append(f"Pass@{k} gained too ({_pts(pas.estimate)} {pas.text()})")
    return "the Figure 7 pattern (Maj@K up, Pass@K not) is not supported: " + "; ".join(missing) + "."


# -- the document -------------------------------------------------------------------------------------
def _cell(i: Interval, signed: bool) -> str:
    value = f"{i.estimate * 100:+.1f}" if signed else f"{i.estimate * 100:.1f}"
    return f"{value} ({i.low * 100:{'+' if signed else ''}.1f} to {i.high * 100:{'+' if signed else ''}.1f})"


def metric_table(data: ExperimentData, found: Sequence[Finding], metric: str) -> list[dict[str, str]]:
    """One row per evaluation (and the total): each arm's level and gain, each arm minus the reference."""
    rows = []
    ref = data.arms[0]
    for it in data.iterations:
        row = {"evaluation": "before RL" if it == 0 else f"iteration {it}"}
        for arm in data.arms:
            row[f"{arm} %"] = _cell(_find(found, metric, "level", arm, it).interval, False)
            gain = _find(found, metric, "gain", arm, it)
            row[f"{arm} gain"] = _cell(gain.interval, True) + f" {gain.interval.verdict()}" if gain else ""
        for arm in data.arms[1:]:
            d = _find(found, metric, "difference", arm, it)
            row[f"{arm} - {ref}"] = _cell(d.interval, True) + f" {d.interval.verdict()}" if d else ""
        rows.append(row)
    if len(data.iterations) > 1:
        last = data.iterations[-1]
        row = {"evaluation": f"total, before RL to iteration {last}"}
        for arm in data.arms:
            row[f"{arm} %"] = ""
            t = _find(found, metric, "total gain", arm, last)
            row[f"{arm} gain"] = _cell(t.interval, True) + f" {t.interval.verdict()}"
        for arm in data.arms[1:]:
            d = _find(found, metric, "gain difference", arm, last)
            row[f"{arm} - {ref}"] = _cell(d.interval, True) + f" {d.interval.verdict()} (of gains)"
        rows.append(row)
    return rows


def curves_figure(data: ExperimentData) -> plt.Figure:
    """Per-seed curves (thin) and each arm's mean over seeds (thick): held-out greedy accuracy per
    evaluation, and the training reward per GRPO step."""
    fig, (ax_eval, ax_train) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, arm in enumerate(data.arms):
        colour = colours[n % len(colours)]
        x = data.scores["greedy"][arm].mean(axis=2)  # (S, E) accuracy per seed and evaluation
        for per_seed in x:
            ax_eval.plot(data.iterations, per_seed * 100, color=colour, alpha=0.35, lw=1)
        ax_eval.plot(data.iterations, x.mean(axis=0) * 100, color=colour, lw=2.5, marker="o",
                     label=f"{arm} (mean of {len(x)})")
        curves = [c for c in data.curves if c["arm"] == arm]
        steps = sorted({c["global_step"] for c in curves})
        for seed in data.seeds[arm]:
            mine = [c for c in curves if c["seed"] == seed]
            ax_train.plot([c["global_step"] for c in mine], [c["reward_mean"] for c in mine], color=colour,
                          alpha=0.35, lw=1)
        if steps:
            mean = [np.mean([c["reward_mean"] for c in curves if c["global_step"] == s]) for s in steps]
            ax_train.plot(steps, mean, color=colour, lw=2.5, label=f"{arm} (mean)")
    ax_eval.set(xlabel="evaluation (0 = before RL, i = after iteration i)", ylabel="held-out greedy accuracy (%)",
                xticks=data.iterations)
    ax_train.set(xlabel="GRPO step (across iterations)", ylabel="mean outcome reward of the training samples")
    for ax in (ax_eval, ax_train):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def build_document(data: ExperimentData, found: Sequence[Finding], stats: ReportConfig = ReportConfig()) -> Document:
    doc = Document(f"Experiment {data.name}: {', '.join(data.arms)}")
    seeds = ", ".join(f"{a}: {_seeds(len(data.seeds[a]))} ({', '.join(map(str, data.seeds[a]))})" for a in data.arms)
    doc.paragraph(f"{seeds}; {len(data.problems)} held-out problems; Pass@K and Maj@K at K = {data.k}. "
                  f"Every interval is a {stats.level:.0%} percentile interval from {stats.resamples} resamples that draw seeds within "
                  "each arm and, nested inside, the held-out problems (analysis.stats); a change is a gain or a loss "
                  "only when its whole interval lies on one side of zero.")
    doc.heading("Summary")
    doc.bullets(summary_sentences(data, found))
    for metric in data.scores:
        doc.heading(f"{data.label(metric)} (%; gains and differences in points, {stats.level:.0%} CI)")
        doc.table(metric_table(data, found, metric))
    doc.figure(curves_figure(data), "seed_curves", "Per-seed curves (thin) and the mean over seeds (thick): "
               "held-out greedy accuracy per evaluation, and the mean training reward per GRPO step")
    doc.heading("Runs")
    doc.table([{"arm": a, "seed": s, "run_id": r} for (a, s), r in data.run_ids.items()])
    if data.unfinished:
        doc.paragraph("Left out (not finished): " + ", ".join(
            f"{u['arm']} seed {u['seed']} ({u['run_id']}, {u['status'] or 'not started'})" for u in data.unfinished))
    doc.heading("Every stated quantity")
    doc.table([{"metric": data.label(f.metric), "quantity": f.kind, "arm": f.arm, "vs": f.reference or "",
                "iteration": f.iteration, "estimate": round(f.interval.estimate * 100, 2),
                "low": round(f.interval.low * 100, 2), "high": round(f.interval.high * 100, 2),
                "verdict": "" if f.kind == "level" else f.interval.verdict()} for f in found])
    doc.code(f"select arm, seed, run_id, r.status from experiment_runs join runs r using (run_id) "
             f"where experiment = '{data.name}' order by arm, seed;", "sql")
    return doc


def write_experiment_report(root: Path, name: str, out_dir: Path, stats: ReportConfig = ReportConfig(), *,
                            arms: Sequence[str] | None = None) -> tuple[ReportPaths, list[str]]:
    """Load the experiment, compute its findings with `stats` (report.resamples, .seed, .level) and write
    report.md, report.html and the figure; returns their paths and the summary sentences (what
    `grpo experiment` prints)."""
    data = load_experiment(root, name, arms)
    found = findings(data, stats)
    return build_document(data, found, stats).write(out_dir), summary_sentences(data, found)
