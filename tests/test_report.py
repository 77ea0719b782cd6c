"""analysis.report and its SQL (run_info, run_curves, run_evals, iteration_gains, outcome_vs_process) on a
hand-made store: two runs (outcome, process) of 2 iterations x 2 GRPO steps, 2 held-out problems x 4
samples, gold "4". Every expected number below is worked out by hand from the rows."""

from __future__ import annotations

from pathlib import Path

import pytest

import matplotlib.pyplot as plt
import numpy as np

from analysis.catalog import query
from analysis.report import default_report_dir, load_report_data, summary_sentences, write_report
from analysis.stats import Interval, paired_bootstrap_diff
from grpo_core.config import ConfigError, ReportConfig, load_config
from grpo_core.pipeline.stages import run_id_for
from grpo_core.store import Store
from tests.test_analysis_sql import eval_samples, row

M = 2  # GRPO steps per iteration

# (run, iteration) -> sampled answers of p1 and p2, and whether the greedy answers of p1, p2 are right.
SAMPLES = {
    ("os", 0): (["4", "5", "5", "6"], ["7", "8", "9", "4"]),  # Pass@4 1, 1; Maj@4 0 (5 wins), 1/4 (4-way tie)
    ("os", 1): (["4", "4", "4", "6"], ["7", "7", "7", "8"]),  # Pass@1 3/4, 0
    ("os", 2): (["4", "4", "4", "5"], ["7", "7", "7", "7"]),  # Pass@4 1, 0; Maj@4 1, 0; Pass@1 3/4, 0
    ("ps", 0): (["4", "5", "5", "6"], ["7", "8", "9", "4"]),  # the same starting policy
    ("ps", 1): (["5", "5", "5", "5"], ["7", "7", "7", "7"]),
    ("ps", 2): (["4", "4", "4", "4"], ["4", "4", "4", "5"]),
}
GREEDY = {("os", 0): (False, False), ("os", 1): (True, False), ("os", 2): (True, False),
          ("ps", 0): (False, False), ("ps", 1): (False, False), ("ps", 2): (True, True)}
# os training rows per (iteration, step): rewards (= correctness), KL and lengths of a group of 2.
OS_TRAIN = {
    (1, 1): ([1, 0], [0.01, 0.01], [10, 20]),
    (1, 2): ([1, 1], [0.02, 0.02], [10, 10]),
    (2, 1): ([1, 0], [0.03, 0.03], [20, 20]),  # global step 3: the KL peak
    (2, 2): ([1, 1], [0.01, 0.01], [30, 40]),
}


def _config(supervision: str, k_max: int = 4, n_samples: int = 4) -> dict:
    return {"grpo": {"supervision": supervision, "steps": M, "group_size": 2, "beta": 0.04},
            "iterative": {"iterations": 2}, "eval": {"k_max": k_max, "n_samples": n_samples}}


def _train_rows(rewards: list[int], kls: list[float], lengths: list[int]) -> list[dict]:
    return [row(sample_index=i, reward=float(r), correct=bool(r), answer="4" if r else "5", kl=kl, n_tokens=n)
            for i, (r, kl, n) in enumerate(zip(rewards, kls, lengths))]


@pytest.fixture
def report_store(tmp_path: Path) -> Path:
    """Runs os (outcome) and ps (process) as above, and a run `small` with only 2 samples per problem."""
    store = Store(tmp_path / "store")
    for run, supervision in (("os", "outcome"), ("ps", "process")):
        store.write_run(run, trial_id=None, name=run, config=_config(supervision), status="finished")
        for it in range(3):
            step = 0 if it == 0 else M
            answers, greedy = SAMPLES[(run, it)], GREEDY[(run, it)]
            rows = [r for g, (p, a) in enumerate(zip(("p1", "p2"), answers)) for r in eval_samples(p, a, group_index=g)]
            rows += [row(problem_id=p, group_index=g, decoding="greedy", answer="4" if ok else "5",
                         answer_norm="4" if ok else "5", correct=ok)
                     for g, (p, ok) in enumerate(zip(("p1", "p2"), greedy))]
            store.write_rollouts(rows, run_id=run, iteration=it, step=step, split="eval")
        for (it, step), (rewards, kls, lengths) in OS_TRAIN.items():
            if run == "ps":  # ps trains worse: one right answer of two at every step
                rewards, kls, lengths = [1, 0], [0.05, 0.05], [20, 20]
            store.write_rollouts(_train_rows(rewards, kls, lengths), run_id=run, iteration=it, step=step, split="train")
    store.write_run("small", trial_id=None, name="small", config=_config("outcome", k_max=2, n_samples=2))
    for it, answers in ((0, ["4", "5"]), (1, ["4", "4"])):
        store.write_rollouts(eval_samples("p1", answers), run_id="small", iteration=it, step=0 if it == 0 else M,
                             split="eval")
    return tmp_path / "store"


def test_run_curves_and_evals_align_iterations_on_a_global_step(report_store):
    curves = query(report_store, "select iteration, step, global_step, supervision, reward_mean, kl_mean, length_mean "
                   "from run_curves where run_id = 'os' order by global_step").to_pylist()
    assert [(c["iteration"], c["step"], c["global_step"]) for c in curves] == [
        (1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4)]
    assert {c["supervision"] for c in curves} == {"outcome"}
    assert [c["reward_mean"] for c in curves] == [0.5, 1.0, 0.5, 1.0]
    assert [c["length_mean"] for c in curves] == [15.0, 10.0, 20.0, 35.0]
    evals = query(report_store, "select iteration, global_step, greedy_accuracy from run_evals where run_id = 'os' "
                  "order by iteration").to_pylist()
    assert [(e["iteration"], e["global_step"], e["greedy_accuracy"]) for e in evals] == [(0, 0, 0.0), (1, 2, 0.5),
                                                                                          (2, 4, 0.5)]


def test_iteration_gains_by_hand(report_store):
    got = query(report_store, "select iteration, global_step, greedy_accuracy, pass_at_1, pass_at_k, maj_at_k, "
                "greedy_gain, pass_at_1_gain, maj_at_k_gain from iteration_gains(4) where run_id = 'os' "
                "order by iteration").to_pylist()
    assert got == [
        {"iteration": 0, "global_step": 0, "greedy_accuracy": 0.0, "pass_at_1": 0.25, "pass_at_k": 1.0,
         "maj_at_k": 0.125, "greedy_gain": None, "pass_at_1_gain": None, "maj_at_k_gain": None},
        {"iteration": 1, "global_step": 2, "greedy_accuracy": 0.5, "pass_at_1": 0.375, "pass_at_k": 0.5,
         "maj_at_k": 0.5, "greedy_gain": 0.5, "pass_at_1_gain": 0.125, "maj_at_k_gain": 0.375},
        {"iteration": 2, "global_step": 4, "greedy_accuracy": 0.5, "pass_at_1": 0.375, "pass_at_k": 0.5,
         "maj_at_k": 0.5, "greedy_gain": 0.0, "pass_at_1_gain": 0.0, "maj_at_k_gain": 0.0},
    ]


def test_outcome_vs_process_pairs_equal_steps(report_store):
    got = query(report_store, "select global_step, outcome_train_accuracy, process_train_accuracy, "
                "outcome_greedy_accuracy, process_greedy_accuracy, greedy_gap from outcome_vs_process(['os', 'ps']) "
                "order by global_step").to_pylist()
    assert [(r["global_step"], r["outcome_train_accuracy"], r["process_train_accuracy"]) for r in got] == [
        (0, None, None), (1, 0.5, 0.5), (2, 1.0, 0.5), (3, 0.5, 0.5), (4, 1.0, 0.5)]
    assert [(r["global_step"], r["outcome_greedy_accuracy"], r["process_greedy_accuracy"], r["greedy_gap"])
            for r in got if r["greedy_gap"] is not None] == [
        (0, 0.0, 0.0, 0.0), (2, 0.5, 0.0, -0.5), (4, 0.5, 1.0, 0.5)]
    assert query(report_store, "select count(*) as n from outcome_vs_process(['os'])").to_pylist() == [{"n": 0}]
    everything = query(report_store, "select count(*) as n from outcome_vs_process()").to_pylist()
    assert everything == [{"n": 5}]  # null = every run; `small` (outcome, no train rows) adds no step


STATS = ReportConfig()


def ci(before: list[float], after: list[float]) -> Interval:
    """The paired bootstrap of analysis.stats on hand-listed per-problem scores, with the report's knobs."""
    return paired_bootstrap_diff(np.array(before), np.array(after), resamples=STATS.resamples, seed=STATS.seed,
                                 level=STATS.level)


def test_summary_sentences_carry_the_computed_numbers(report_store):
    data = load_report_data(report_store, ["os", "ps"])
    assert [r.ks for r in data.runs] == [[1, 2, 4], [1, 2, 4]]
    sentences = summary_sentences(data)
    # os per problem (p1, p2), before -> after iteration 2: Maj@4 (0, 1/4) -> (1, 0); Pass@4 (1, 1) -> (1, 0);
    # greedy (0, 0) -> (1, 0); Pass@1 (1/4, 1/4) -> (3/4, 0). Two problems: no interval excludes zero.
    maj, pas, greedy, pass1 = ci([0, 0.25], [1, 0]), ci([1, 1], [1, 0]), ci([0, 0], [1, 0]), ci([0.25, 0.25], [0.75, 0])
    assert [c.verdict() for c in (maj, pas, greedy, pass1)] == ["not distinguishable"] * 4
    assert (pas.low, pas.high) == (-1.0, 0.0)  # an interval ending at 0 does not exclude it
    nd = "not distinguishable from no change"
    first, later = ci([0, 0], [1, 0]), ci([0, 0], [1, 0])  # iteration 1 gains (1, 0); iteration 2 gains (0, 0)
    assert sentences[:4] == [
        f"os: Maj@4 rose 37.5 points from 12.5% to 50.0% {maj.text()}, {nd}; Pass@4 fell 50.0 points from 100.0% "
        f"to 50.0% {pas.text()}, {nd}. The data do not support the Figure 7 pattern: Maj@K's change is not "
        "distinguishable from no change, nor is Pass@K's.",
        f"os: Greedy accuracy rose 50.0 points from 0.0% to 50.0% {greedy.text()}, {nd}; Pass@1 rose 12.5 points "
        f"from 25.0% to 37.5% {pass1.text()}, {nd}; over 2 iterations (4 GRPO steps).",
        f"os: Greedy accuracy points gained per iteration: iteration 1 +50.0 {first.text()}, iteration 2 +0.0 "
        "(95% CI +0.0 to +0.0); no iteration's gain is distinguishable from no change; the first iteration's gain "
        f"cannot be told apart from the later ones' (first minus later: +50.0 points {later.text()}).",
        "os: Mean train reward went from 0.500 to 1.000 and completion length from 15.0 to 35.0 tokens "
        "(the first vs the last step, of 4 steps); KL to the reference peaked at 0.0300 at step 3.",
    ]
    # ps: Maj@4 (0, 1/4) -> (1, 1); Pass@4 stays at 1, 1: a gain of Maj@4 whose interval is (0.75, 1).
    ps_maj = ci([0, 0.25], [1, 1])
    assert ps_maj.verdict() == "gain"
    assert sentences[4] == (
        f"ps: Maj@4 rose 87.5 points from 12.5% to 100.0% {ps_maj.text()}; Pass@4 stayed at 100.0% (95% CI +0.0 to "
        "+0.0). RL sharpened the distribution rather than widening it (the paper's Figure 7 pattern: Maj@K up, "
        "Pass@K not; Pass@K's change is not distinguishable from no change).")
    # outcome vs process at step 4: greedy os (1, 0), ps (1, 1); one run each = the paired bootstrap
    gap = ci([1, 0], [1, 1])
    assert sentences[-2] == (f"After 4 GRPO steps, process supervision's greedy accuracy was 100.0%, 50.0 points "
                             f"above outcome supervision's 50.0% {gap.text()}, not distinguishable from no "
                             "difference; process supervision led at 1 of 2 evaluated steps (point estimates).")
    assert sentences[-1] == (
        f"ps against os (last evaluations, 2 shared problems): greedy accuracy rose 50.0 points from 50.0% to "
        f"100.0% {gap.text()}, {nd}; Pass@4 rose 50.0 points from 50.0% to 100.0% {ci([1, 0], [1, 1]).text()}, "
        f"{nd}; Maj@4 rose 50.0 points from 50.0% to 100.0% {ci([1, 0], [1, 1]).text()}, {nd}.")


def decisive_store(tmp_path: Path, changed: int, n_problems: int = 30) -> Path:
    """One run: `changed` of n problems go from Maj@4 0 (answers 4 5 5 6) to 1 (4 4 4 6), the rest stay at 0;
    Pass@4 is 1 throughout; greedy follows Maj@4."""
    store = Store(tmp_path / "store")
    store.write_run("d", trial_id=None, name="d", config=_config("outcome"))
    for it in (0, 1):
        rows = []
        for g in range(n_problems):
            up = it == 1 and g < changed
            rows += eval_samples(f"q{g:02d}", ["4", "4", "4", "6"] if up else ["4", "5", "5", "6"], group_index=g)
            rows.append(row(problem_id=f"q{g:02d}", group_index=g, decoding="greedy", answer="4" if up else "5",
                            answer_norm="4" if up else "5", correct=up))
        store.write_rollouts(rows, run_id="d", iteration=it, step=0 if it == 0 else M, split="eval")
    return tmp_path / "store"


def test_figure7_verdict_follows_the_intervals(tmp_path):
    strong = summary_sentences(load_report_data(decisive_store(tmp_path / "a", changed=20), ["d"]))
    maj = ci([0.0] * 30, [1.0] * 20 + [0.0] * 10)
    assert maj.verdict() == "gain" and maj.estimate == pytest.approx(2 / 3)
    assert strong[0] == (f"Maj@4 rose 66.7 points from 0.0% to 66.7% {maj.text()}; Pass@4 stayed at 100.0% (95% CI "
                         "+0.0 to +0.0). RL sharpened the distribution rather than widening it (the paper's Figure 7 "
                         "pattern: Maj@K up, Pass@K not; Pass@K's change is not distinguishable from no change).")
    weak = summary_sentences(load_report_data(decisive_store(tmp_path / "b", changed=1), ["d"]))
    one = ci([0.0] * 30, [1.0] + [0.0] * 29)
    assert one.verdict() == "not distinguishable" and one.low == 0.0
    assert weak[0] == (f"Maj@4 rose 3.3 points from 0.0% to 3.3% {one.text()}, not distinguishable from no change; "
                       "Pass@4 stayed at 100.0% (95% CI +0.0 to +0.0). The data do not support the Figure 7 pattern: "
                       "Maj@K's change is not distinguishable from no change, nor is Pass@K's.")
    assert weak[1].startswith(f"Greedy accuracy rose 3.3 points from 0.0% to 3.3% {one.text()}, not distinguishable")


def test_report_knobs_set_the_intervals_and_leave_run_ids_alone(tmp_path):
    root = decisive_store(tmp_path, changed=5)
    knobs = ReportConfig(resamples=500, seed=7, level=0.9)
    data = load_report_data(root, ["d"], knobs)
    got = data.find("before vs after RL", "Maj@4", "d (outcome)")
    want = paired_bootstrap_diff(np.zeros(30), np.array([1.0] * 5 + [0.0] * 25), resamples=500, seed=7, level=0.9)
    assert got.ci == want and got.n_problems == 30
    assert run_id_for(load_config(None, ["report.resamples=5000", "report.seed=3"])) == run_id_for(
        load_config(None, []))
    with pytest.raises(ConfigError, match="report.resamples"):
        load_config(None, ["report.resamples=10"])


def test_report_files_figures_and_sections(report_store, tmp_path):
    both = write_report(report_store, ["os", "ps"], tmp_path / "both")
    md, page = both.markdown.read_text(), both.html.read_text()
    assert both.markdown == tmp_path / "both" / "report.md" and both.html.exists()
    names = sorted(p.name for p in both.figures)
    assert names == ["iteration_gains.png", "outcome_vs_process.png", "pass_maj_vs_k-os.png", "pass_maj_vs_k-ps.png",
                     "training_curves.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in both.figures)
    assert "## Outcome vs process supervision" in md and "| 4 | 50.0% | 100.0% | +50.0 |" in md
    maj = ci([0, 0.25], [1, 0])  # os's Maj@4 per problem, before and after (test above)
    cells = f"{100 * maj.low:+.1f} to {100 * maj.high:+.1f}"
    # os: K, Pass@K before / after / change / interval, then the same for Maj@K
    assert f"| 4 | 100.0% | 50.0% | -50.0 | -100.0 to +0.0 | 12.5% | 50.0% | +37.5 | {cells} |" in md
    assert ("| before vs after RL | os (outcome) | Maj@4 | 12.5% | 50.0% | +37.5 | "
            f"{cells} | not distinguishable from no change | 2 |") in md  # the table of every stated difference
    assert "| first iteration vs later ones | os (outcome) | greedy accuracy gain |  |  | +50.0 |" in md
    assert "## Every stated difference" in md and "95% CI (pts)" in md
    assert "Maj@4 rose 37.5 points" in page and page.count("data:image/png;base64,") == 5

    one = write_report(report_store, ["os"], tmp_path / "one")
    assert "Outcome vs process" not in one.markdown.read_text()
    assert not (tmp_path / "one" / "outcome_vs_process.png").exists()
    assert "os: " not in one.markdown.read_text()  # a single run's sentences carry no run prefix


def test_report_of_a_run_with_fewer_samples_than_another_runs_kmax(report_store, tmp_path):
    # `small` has n = 2 samples: K stops at 2 for it, and its presence does not break os's K = 4.
    data = load_report_data(report_store, ["small", "os"])
    assert [r.ks for r in data.runs] == [[1, 2], [1, 2, 4]]
    assert data.outcome_vs_process == []  # both are outcome runs
    assert summary_sentences(data)[0] == (
        "small: Maj@2 rose 50.0 points from 50.0% to 100.0% (95% CI +50.0 to +50.0); Pass@2 stayed at 100.0% (95% CI "
        "+0.0 to +0.0). RL sharpened the distribution rather than widening it (the paper's Figure 7 pattern: Maj@K "
        "up, Pass@K not; Pass@K's change is not distinguishable from no change).")  # one problem: a point interval
    write_report(report_store, ["small"], tmp_path / "small")


def test_unknown_run_and_default_dir(report_store, tmp_path):
    with pytest.raises(ValueError, match=r"no run \['nope'\] in the store .*known runs: \['os', 'ps', 'small'\]"):
        load_report_data(report_store, ["nope"])
    assert default_report_dir(tmp_path, ["os"]) == tmp_path / "os" / "report"
    assert default_report_dir(tmp_path, ["os", "ps", "os"]) == tmp_path / "reports" / "os+ps"


def test_report_of_a_run_evaluated_only_before_rl(tmp_path):
    """A run still in its first iteration: the report says so and shows no before/after section."""
    store = Store(tmp_path / "store")
    store.write_run("fresh", trial_id=None, name="fresh", config=_config("outcome"))
    store.write_rollouts(eval_samples("p1", ["4", "5", "5", "6"]), run_id="fresh", iteration=0, step=0, split="eval")
    store.write_rollouts(_train_rows(*OS_TRAIN[(1, 1)]), run_id="fresh", iteration=1, step=1, split="train")
    data = load_report_data(tmp_path / "store", ["fresh"])
    assert summary_sentences(data) == [
        "Mean train reward went from 0.500 to 0.500 and completion length from 15.0 to 15.0 tokens "
        "(the first vs the last step, of 1 step); KL to the reference peaked at 0.0100 at step 1.",
        "No evaluation after RL in the store yet, so no before/after comparison.",
    ]
    paths = write_report(tmp_path / "store", ["fresh"], tmp_path / "out")
    assert [p.name for p in paths.figures] == ["training_curves.png"]
    assert "Pass@K and Maj@K before and after RL" not in paths.markdown.read_text()


def test_smooth_is_a_centred_moving_average():
    from analysis.report import smooth

    assert smooth([1, 2, 3, 10], 3) == [1.5, 2.0, 5.0, 6.5]
    assert smooth([4.0], 5) == [4.0]


def test_figures_carry_the_intervals_and_the_smoothed_curves(report_store):
    from matplotlib.container import ErrorbarContainer

    from analysis.report import CURVES, gains_figure, pass_maj_figure, training_figure
    from analysis.stats import bootstrap_mean

    run = load_report_data(report_store, ["os"]).runs[0]
    ax = pass_maj_figure(run, STATS).axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert len(bars) == 6  # Pass@K and Maj@K of 3 evaluations
    segments = bars["Maj@K, after iteration 2"].lines[2][0].get_segments()  # one vertical bar per K = 1, 2, 4
    maj4 = bootstrap_mean(np.array([1.0, 0.0]), resamples=STATS.resamples, seed=STATS.seed)  # p1 1, p2 0
    assert [segments[-1][0][1], segments[-1][1][1]] == pytest.approx([100 * maj4.low, 100 * maj4.high])

    axes = gains_figure([run], STATS).axes
    (greedy,) = [c for c in axes[0].containers if isinstance(c, ErrorbarContainer)]
    ends = [y for seg in greedy.lines[2][0].get_segments() for y in (seg[0][1], seg[1][1])]
    # greedy per problem: before (0, 0), after iteration 1 and 2 (1, 0): intervals (0, 0) then (0, 100)
    assert ends == pytest.approx([0, 0, 0, 100, 0, 100])

    fig = training_figure([run])
    assert [a.get_ylabel() for a in fig.axes] == list(CURVES.values())
    assert "share of zero-variance groups" in CURVES.values() and "train accuracy" not in CURVES.values()
    raw, smoothed = fig.axes[1].get_lines()[:2]  # zero-variance groups: [1,0] [1,1] [1,0] [1,1] per step
    assert list(raw.get_ydata()) == [0.0, 1.0, 0.0, 1.0]
    assert list(smoothed.get_ydata()) == pytest.approx([0.5, 1 / 3, 2 / 3, 0.5])
    plt.close("all")


def test_sweep_report_gives_each_trial_its_interval_and_says_when_the_best_is_not_apart(tmp_path):
    import optuna

    from analysis.stats import bootstrap_mean
    from analysis.sweep_report import objective_scores, write_sweep_report

    store = Store(tmp_path / "store")
    ups = {0: 20, 1: 19, 2: 5}  # trial -> problems (of 30) at Maj@4 = 1 after RL; the rest at 0
    study = optuna.create_study(study_name="s", direction="maximize")
    beta = optuna.distributions.FloatDistribution(0.001, 0.2, log=True)
    for trial, up in ups.items():
        run_id = f"s-t00{trial}-abc"
        rows = []
        for g in range(30):
            rows += eval_samples(f"q{g:02d}", ["4", "4", "4", "6"] if g < up else ["4", "5", "5", "6"], group_index=g)
        store.write_rollouts(rows, run_id=run_id, iteration=0, step=0, split="eval")  # before: not the objective
        store.write_rollouts(rows, run_id=run_id, iteration=1, step=M, split="eval")
        study.add_trial(optuna.trial.create_trial(params={"grpo.beta": 0.01 * (trial + 1)}, distributions={
            "grpo.beta": beta}, value=up / 30, user_attrs={"run_id": run_id, "overrides": {"grpo.beta": 0.01}}))
    scores = objective_scores(tmp_path / "store", "s-t000-abc", "maj@4")
    assert sorted(scores.values()) == [0.0] * 10 + [1.0] * 20
    paths = write_sweep_report(study, tmp_path / "r", objective="maj@4", store_root=tmp_path / "store",
                               runs_dir=tmp_path / "runs", storage="x.journal")
    md = paths.markdown.read_text()
    best = bootstrap_mean(np.array([1.0] * 20 + [0.0] * 10), resamples=STATS.resamples, seed=STATS.seed)
    assert f"Best trial: #0 (maj@4 = 0.6667, 95% CI {best.low:.4f} to {best.high:.4f})" in md
    near = ci([1.0] * 19 + [0.0] * 11, [1.0] * 20 + [0.0] * 10)  # best minus trial 1, paired by problem
    far = ci([1.0] * 5 + [0.0] * 25, [1.0] * 20 + [0.0] * 10)
    assert near.verdict() == "not distinguishable" and far.verdict() == "gain"
    assert ("The best trial #0 cannot be told apart from #1: the interval of its difference to them includes "
            "zero, so the sweep does not single it out (it is apart from #2).") in md
    assert f"| 1 | 0.6333 | 0.03333 | {near.low:.4f} to {near.high:.4f} | 30 | not distinguishable |" in md
    assert f"| 2 | 0.1667 | 0.5 | {far.low:.4f} to {far.high:.4f} | 30 | apart |" in md
    assert f"| 0 | COMPLETE | 0.01 | 0.6667 | {best.low:.4f} to {best.high:.4f} |" in md  # the trials table


def test_an_estimate_a_float_hair_outside_its_interval_draws_a_zero_bar():
    from matplotlib.container import ErrorbarContainer

    from analysis.report import error_bars

    fig, ax = plt.subplots()
    error_bars(ax, [1], [Interval(0.3, 0.30000000000000004, 0.4)], "o")  # the mean of equal scores, re-summed
    (bar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (segment,) = bar.lines[2][0].get_segments()
    assert [segment[0][1], segment[1][1]] == pytest.approx([30.0, 40.0])
    plt.close(fig)
