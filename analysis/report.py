"""The RL-effects report of one run or several: Markdown plus self-contained HTML with PNG figures.

    .venv/bin/grpo report default-32decf95                   # -> runs/default-32decf95/report/report.{md,html}
    .venv/bin/grpo report default-32decf95 default-1043a156 --out /tmp/os-vs-ps

    from analysis.report import write_report
    paths = write_report(Path("runs/store"), ["default-32decf95"], Path("runs/default-32decf95/report"))

What it shows, all read from the store through the catalog (analysis/sql/):
  * Pass@K and Maj@K vs K before RL and after each iteration, per run (the paper's Sec. 5.2 / Figure 7
    question: does RL lift Maj@K but not Pass@K?)                            eval_at_k(k)
  * training curves: reward, accuracy, KL to the reference, length per step  run_curves
  * greedy accuracy, Pass@1 and Maj@Kmax per iteration, and each one's gain  iteration_gains(k)
  * outcome vs process supervision at equal GRPO steps, when the runs hold both (Fig. 5)
                                                                             outcome_vs_process(run_ids)
  * a summary in plain sentences whose every number is computed from those rows.

Before RL is the run's iteration-0 evaluation; after RL its last evaluation. Changes smaller than
FLAT (half a point) count as "unchanged" in the summary's verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import matplotlib.pyplot as plt

from analysis.catalog import connect
from analysis.render import Document, ReportPaths
from analysis.summary import ks_up_to

__all__ = ["FLAT", "ReportData", "RunData", "build_document", "default_report_dir", "load_report_data",
           "summary_sentences", "write_report"]

FLAT = 0.005  # |change| below half a point of accuracy reads as "unchanged" in the verdicts
CURVES = {  # run_curves column -> axis label of the training-curve panels
    "reward_mean": "mean reward",
    "accuracy": "train accuracy",
    "kl_mean": "KL to reference (k3)",
    "length_mean": "length (tokens)",
}
_SLUG = re.compile(r"[^a-z0-9_\-]+")


@dataclass(frozen=True)
class RunData:
    """Everything the report shows of one run, as rows of the catalog's views and macros."""

    run_id: str
    info: dict[str, Any]        # run_info row (supervision, steps_per_iteration, ...); {} when the run has no runs row
    ks: list[int]               # K = 1, 2, 4, ..., k_max evaluated
    at_k: list[dict[str, Any]]  # eval_at_k rows for every K in ks: iteration, step, k, pass_at_k, maj_at_k
    gains: list[dict[str, Any]]  # iteration_gains(k_max) rows, one per evaluation in iteration order
    curves: list[dict[str, Any]]  # run_curves rows in global_step order

    @property
    def k_max(self) -> int | None:
        return self.ks[-1] if self.ks else None

    @property
    def supervision(self) -> str:
        return self.info.get("supervision") or "unknown"

    @property
    def label(self) -> str:
        return f"{self.run_id} ({self.supervision})"

    def at(self, iteration: int, k: int) -> dict[str, Any] | None:
        """The eval_at_k row of `iteration` at K = k."""
        return next((r for r in self.at_k if r["iteration"] == iteration and r["k"] == k), None)


@dataclass(frozen=True)
class ReportData:
    runs: list[RunData]
    outcome_vs_process: list[dict[str, Any]]  # outcome_vs_process(run_ids) rows; empty unless both are present


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
    return RunData(run_id, info, ks, at_k, gains, curves)


def load_report_data(root: Path, run_ids: Sequence[str]) -> ReportData:
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
    return ReportData(runs, ovp)


# -- the summary: sentences computed from the rows -------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _change(name: str, before: float, after: float) -> str:
    """'Maj@16 rose 3.2 points from 43.2% to 46.4%' (or fell, or stayed at)."""
    d = 100 * (after - before)
    if round(d, 1) == 0:
        return f"{name} stayed at {_pct(after)}"
    return f"{name} {'rose' if d > 0 else 'fell'} {abs(d):.1f} points from {_pct(before)} to {_pct(after)}"


def figure7_sentence(run: RunData) -> str | None:
    """Maj@Kmax and Pass@Kmax before vs after RL, and which way RL moved the distribution."""
    k, last = run.k_max, _last_iteration(run)
    before, after = (run.at(0, k), run.at(last, k)) if k and last else (None, None)
    if before is None or after is None:
        return None
    dm, dp = after["maj_at_k"] - before["maj_at_k"], after["pass_at_k"] - before["pass_at_k"]
    text = (f"{_change(f'Maj@{k}', before['maj_at_k'], after['maj_at_k'])} while "
            f"{_change(f'Pass@{k}', before['pass_at_k'], after['pass_at_k'])}: ")
    if dm >= FLAT and dp < FLAT:
        return text + ("RL sharpened the distribution rather than widening it "
                       "(the paper's Figure 7 pattern: Maj@K up, Pass@K not).")
    if dm >= FLAT:
        return text + ("RL lifted both, so it also made answers reachable that sampling missed before "
                       "(the paper saw Maj@K rise without Pass@K).")
    if dp >= FLAT:
        return text + "RL widened what sampling reaches without making the majority answer right more often."
    return text + f"RL improved neither at K={k}."


def greedy_sentence(run: RunData) -> str | None:
    """Greedy accuracy and Pass@1 before vs after RL, over how many iterations and steps."""
    if len(run.gains) < 2:
        return None
    first, last = run.gains[0], run.gains[-1]
    changes = [_change(name, first[col], last[col]) for name, col in (("Greedy accuracy", "greedy_accuracy"),
                                                                      ("Pass@1", "pass_at_1"))
               if first[col] is not None and last[col] is not None]  # no greedy rows: no greedy accuracy
    return (" and ".join(changes) + f" over {last['iteration']} iteration{'s' if last['iteration'] != 1 else ''} "
            f"({last['global_step']} GRPO steps).")


def iteration_sentence(run: RunData) -> str | None:
    """Each iteration's greedy gain and whether the first gave most of it (as in the paper, Sec. 4.1.4)."""
    gains = [g for g in run.gains[1:] if g["greedy_gain"] is not None]
    if len(gains) < 2:
        return None
    parts = ", ".join(f"iteration {g['iteration']} {100 * g['greedy_gain']:+.1f}" for g in gains)
    total = sum(g["greedy_gain"] for g in gains)
    text = f"Greedy accuracy points gained per iteration: {parts} (total {100 * total:+.1f}); "
    if total <= 0:
        return text + "iterating did not raise greedy accuracy."
    share = gains[0]["greedy_gain"] / total
    if share > 1:  # later iterations lost some of it
        return text + "the first iteration gave all of the gain and later ones lost some of it."
    if share >= 0.5:
        return text + f"the first iteration gave most of the gain ({share:.0%}), as in the paper."
    return text + f"later iterations gave most of the gain (the first {share:.0%})."


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


def outcome_vs_process_sentence(rows: Sequence[dict[str, Any]]) -> str | None:
    """Process minus outcome greedy accuracy at the last step both evaluated, and how often process led."""
    evaluated = [r for r in rows if r["greedy_gap"] is not None and r["global_step"] > 0]
    if not evaluated:
        return None
    last = evaluated[-1]
    gap = 100 * last["greedy_gap"]
    ahead = sum(r["greedy_gap"] > 0 for r in evaluated)
    relation = "level with" if round(gap, 1) == 0 else f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'}"
    return (f"After {last['global_step']} GRPO steps, process supervision's greedy accuracy was "
            f"{_pct(last['process_greedy_accuracy'])}, {relation} outcome supervision's "
            f"{_pct(last['outcome_greedy_accuracy'])}; process supervision led at {ahead} of {len(evaluated)} "
            f"evaluated step{'s' if len(evaluated) != 1 else ''}.")


def summary_sentences(data: ReportData) -> list[str]:
    """The report's summary: per run, then outcome vs process. Prefixed with the run id when there are several."""
    out = []
    for run in data.runs:
        prefix = f"{run.run_id}: " if len(data.runs) > 1 else ""
        for make in (figure7_sentence, greedy_sentence, iteration_sentence, training_sentence):
            sentence = make(run)
            if sentence:
                out.append(prefix + sentence)
        if len(run.gains) < 2:
            out.append(prefix + "No evaluation after RL in the store yet, so no before/after comparison.")
    ovp = outcome_vs_process_sentence(data.outcome_vs_process)
    if ovp:
        out.append(ovp)
    return out


# -- figures --------------------------------------------------------------------------------------
def _legend(ax: plt.Axes) -> None:
    """A small legend, when anything was drawn with a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _last_iteration(run: RunData) -> int | None:
    iterations = [r["iteration"] for r in run.at_k if r["iteration"] > 0]
    return max(iterations) if iterations else None


def _eval_label(iteration: int) -> str:
    return "before RL" if iteration == 0 else f"after iteration {iteration}"


def pass_maj_figure(run: RunData) -> plt.Figure:
    """Pass@K (solid) and Maj@K (dashed) vs K, one colour per evaluation."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, it in enumerate(sorted({r["iteration"] for r in run.at_k})):
        rows = [r for r in run.at_k if r["iteration"] == it]
        ks = [r["k"] for r in rows]
        colour = f"C{i}"
        ax.plot(ks, [100 * r["pass_at_k"] for r in rows], "o-", color=colour, label=f"Pass@K, {_eval_label(it)}")
        ax.plot(ks, [100 * r["maj_at_k"] for r in rows], "s--", color=colour, label=f"Maj@K, {_eval_label(it)}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(run.ks, [str(k) for k in run.ks])
    ax.set(xlabel="K", ylabel="accuracy (%)", title=run.label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def training_figure(runs: Sequence[RunData]) -> plt.Figure:
    """Reward, accuracy, KL and length per GRPO step, one line per run; dotted lines mark iterations."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for ax, (col, label) in zip(axes.flat, CURVES.items()):
        for run in runs:
            points = [(r["global_step"], r[col]) for r in run.curves if r[col] is not None]
            if points:
                ax.plot(*zip(*points), lw=1.2, label=run.label)
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


def gains_figure(runs: Sequence[RunData]) -> plt.Figure:
    """Greedy accuracy, Pass@1 and Maj@Kmax per iteration (0 = before RL), one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True)
    for ax, col in zip(axes, ("greedy_accuracy", "pass_at_1", "maj_at_k")):
        for run in runs:
            points = [(g["iteration"], 100 * g[col]) for g in run.gains if g[col] is not None]
            if points:
                ax.plot(*zip(*points), "o-", label=run.label)
        title = {"greedy_accuracy": "greedy accuracy", "pass_at_1": "Pass@1",
                 "maj_at_k": "Maj@Kmax (" + ", ".join(f"K={r.k_max}" for r in runs if r.k_max) + ")"}[col]
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


def _slug(run_id: str) -> str:
    return _SLUG.sub("-", run_id.lower()).strip("-") or "run"


def build_document(data: ReportData) -> Document:
    """The report as a Document: summary, runs, Pass/Maj@K per run, training curves, iterations, OS vs PS."""
    ids = [r.run_id for r in data.runs]
    doc = Document("RL effects: " + ", ".join(ids))
    doc.heading("Summary")
    doc.bullets(summary_sentences(data))

    doc.heading("Runs")
    doc.table([{"run": r.run_id, "supervision": r.supervision, "status": r.info.get("status"),
                "iterations": r.info.get("iterations"), "steps per iteration (M)": r.info.get("steps_per_iteration"),
                "G": r.info.get("group_size"), "beta": r.info.get("beta"), "Kmax": r.k_max} for r in data.runs])

    compared = [r for r in data.runs if r.ks and _last_iteration(r) is not None]
    if compared:
        doc.heading("Pass@K and Maj@K before and after RL")
        doc.paragraph("The paper's Figure 7 question: does RL make the top answer right more often (Maj@K) "
                      "without widening what sampling can reach (Pass@K)? Pass@K is the unbiased estimator "
                      "1 - C(n-c, K)/C(n, K); Maj@K votes over disjoint groups of K samples, ties scored by "
                      "expectation.")
    for run in compared:
        last = _last_iteration(run)
        doc.heading(run.label, level=3)
        rows = []
        for k in run.ks:
            b, a = run.at(0, k), run.at(last, k)
            if b and a:
                rows.append({"K": k,
                             "Pass@K before": _pct_cell(b["pass_at_k"]), "Pass@K after": _pct_cell(a["pass_at_k"]),
                             "Pass@K change (pts)": _pts_cell(a["pass_at_k"] - b["pass_at_k"]),
                             "Maj@K before": _pct_cell(b["maj_at_k"]), "Maj@K after": _pct_cell(a["maj_at_k"]),
                             "Maj@K change (pts)": _pts_cell(a["maj_at_k"] - b["maj_at_k"])})
        doc.paragraph(f"Before RL = iteration 0; after RL = iteration {last}.")
        doc.table(rows)
        doc.figure(pass_maj_figure(run), f"pass_maj_vs_k-{_slug(run.run_id)}", f"Pass@K and Maj@K vs K, {run.label}")

    if any(r.curves for r in data.runs):
        doc.heading("Training curves")
        doc.figure(training_figure([r for r in data.runs if r.curves]), "training_curves",
                   "Mean reward, train accuracy, KL to the reference and completion length per GRPO step "
                   "(dotted lines: iteration boundaries)")

    if any(len(r.gains) > 1 for r in data.runs):
        doc.heading("Gain per iteration")
        for run in data.runs:
            if len(run.gains) < 2:
                continue
            doc.heading(run.label, level=3)
            k = run.k_max
            doc.table([{"iteration": _eval_label(g["iteration"]), "GRPO step": g["global_step"],
                        "greedy": _pct_cell(g["greedy_accuracy"]), "greedy gain (pts)": _pts_cell(g["greedy_gain"]),
                        "Pass@1": _pct_cell(g["pass_at_1"]), "Pass@1 gain (pts)": _pts_cell(g["pass_at_1_gain"]),
                        f"Maj@{k}": _pct_cell(g["maj_at_k"]), f"Maj@{k} gain (pts)": _pts_cell(g["maj_at_k_gain"]),
                        f"Pass@{k}": _pct_cell(g["pass_at_k"])} for g in run.gains])
        doc.figure(gains_figure([r for r in data.runs if r.gains]), "iteration_gains",
                   "Greedy accuracy, Pass@1 and Maj@Kmax after each iteration (0 = before RL)")

    evaluated = [r for r in data.outcome_vs_process if r["greedy_gap"] is not None]
    if data.outcome_vs_process:
        doc.heading("Outcome vs process supervision")
        doc.paragraph("Runs of each supervision averaged at equal GRPO steps (the paper's Figure 5), compared "
                      "on accuracy; the PRM's step scores behind process supervision are in rollouts.step_rewards.")
        doc.table([{"GRPO step": r["global_step"], "outcome greedy": _pct_cell(r["outcome_greedy_accuracy"]),
                    "process greedy": _pct_cell(r["process_greedy_accuracy"]),
                    "process - outcome (pts)": _pts_cell(r["greedy_gap"]),
                    "outcome sampled": _pct_cell(r["outcome_sample_accuracy"]),
                    "process sampled": _pct_cell(r["process_sample_accuracy"])} for r in evaluated])
        doc.figure(outcome_vs_process_figure(data.runs, data.outcome_vs_process), "outcome_vs_process",
                   "Train accuracy per step (thin) and held-out greedy accuracy at equal steps (markers)")

    doc.heading("Reproduce with SQL")
    doc.paragraph("Every number above is one of these queries over the store (grpo sql \"...\"):")
    lines = []
    for run in data.runs:  # one run per query: its filter reaches the macros' scans (other runs' n do not matter)
        lines += [f"select * from eval_at_k({run.k_max}) where run_id = '{run.run_id}' order by iteration;",
                  f"select * from iteration_gains({run.k_max}) where run_id = '{run.run_id}' order by iteration;"] \
            if run.k_max else []
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


def write_report(root: Path, run_ids: Sequence[str], out_dir: Path) -> ReportPaths:
    """Read the runs from the store at `root` and write report.md, report.html and the PNGs into `out_dir`."""
    return build_document(load_report_data(Path(root), run_ids)).write(Path(out_dir))
