"""analysis.report and its SQL (run_info, run_curves, run_evals, iteration_gains, outcome_vs_process) on a
hand-made store: two runs (outcome, process) of 2 iterations x 2 GRPO steps, 2 held-out problems x 4
samples, gold "4". Every expected number below is worked out by hand from the rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.catalog import query
from analysis.report import default_report_dir, load_report_data, summary_sentences, write_report
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


def test_summary_sentences_carry_the_computed_numbers(report_store):
    data = load_report_data(report_store, ["os", "ps"])
    assert [r.ks for r in data.runs] == [[1, 2, 4], [1, 2, 4]]
    sentences = summary_sentences(data)
    assert sentences[:4] == [
        "os: Maj@4 rose 37.5 points from 12.5% to 50.0% while Pass@4 fell 50.0 points from 100.0% to 50.0%: "
        "RL sharpened the distribution rather than widening it (the paper's Figure 7 pattern: Maj@K up, Pass@K not).",
        "os: Greedy accuracy rose 50.0 points from 0.0% to 50.0% and Pass@1 rose 12.5 points from 25.0% to 37.5% "
        "over 2 iterations (4 GRPO steps).",
        "os: Greedy accuracy points gained per iteration: iteration 1 +50.0, iteration 2 +0.0 (total +50.0); "
        "the first iteration gave most of the gain (100%), as in the paper.",
        "os: Mean train reward went from 0.500 to 1.000 and completion length from 15.0 to 35.0 tokens "
        "(the first vs the last step, of 4 steps); KL to the reference peaked at 0.0300 at step 3.",
    ]
    # ps: Pass@4 before 100%, after p1 all right, p2 3 of 4 right -> 100%; Maj@4 12.5% -> 100%.
    assert sentences[4].startswith("ps: Maj@4 rose 87.5 points from 12.5% to 100.0% while Pass@4 stayed at 100.0%: "
                                   "RL sharpened the distribution")
    assert sentences[-1] == ("After 4 GRPO steps, process supervision's greedy accuracy was 100.0%, 50.0 points above "
                             "outcome supervision's 50.0%; process supervision led at 1 of 2 evaluated steps.")


def test_report_files_figures_and_sections(report_store, tmp_path):
    both = write_report(report_store, ["os", "ps"], tmp_path / "both")
    md, page = both.markdown.read_text(), both.html.read_text()
    assert both.markdown == tmp_path / "both" / "report.md" and both.html.exists()
    names = sorted(p.name for p in both.figures)
    assert names == ["iteration_gains.png", "outcome_vs_process.png", "pass_maj_vs_k-os.png", "pass_maj_vs_k-ps.png",
                     "training_curves.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in both.figures)
    assert "## Outcome vs process supervision" in md and "| 4 | 50.0% | 100.0% | +50.0 |" in md
    assert "| 4 | 100.0% | 50.0% | -50.0 | 12.5% | 50.0% | +37.5 |" in md  # os: K, Pass before/after, Maj before/after
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
    assert summary_sentences(data)[0] == ("small: Maj@2 rose 50.0 points from 50.0% to 100.0% while Pass@2 stayed at "
                                          "100.0%: RL sharpened the distribution rather than widening it (the "
                                          "paper's Figure 7 pattern: Maj@K up, Pass@K not).")
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


def test_iteration_sentence_when_a_later_iteration_loses_ground():
    from types import SimpleNamespace

    from analysis.report import iteration_sentence

    gains = [{"iteration": 0, "greedy_gain": None}, {"iteration": 1, "greedy_gain": 0.035},
             {"iteration": 2, "greedy_gain": -0.01}]
    assert iteration_sentence(SimpleNamespace(gains=gains)) == (
        "Greedy accuracy points gained per iteration: iteration 1 +3.5, iteration 2 -1.0 (total +2.5); "
        "the first iteration gave all of the gain and later ones lost some of it.")
    gains[2]["greedy_gain"] = -0.05
    assert iteration_sentence(SimpleNamespace(gains=gains)).endswith("iterating did not raise greedy accuracy.")
