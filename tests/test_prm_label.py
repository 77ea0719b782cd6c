"""Math-Shepherd labels: hard/soft estimation, the completer call, last-step labels, agreement."""

from __future__ import annotations

import math

import pytest

from grpo_core.data.problem import Problem
from grpo_core.rollout.base import RolloutBatch, SamplingParams
from prm.label import estimate_labels, label_agreement, label_solutions, step_prefix

TEMPLATE = "Q: {question}\nA:\n"
# start 3, ops (+2, *2): 3 + 2 = 5, 5 * 2 = 10, answer 10
PROBLEM = Problem("p0", "Ann has 3. +2. *2.", "10", "3 + 2 = 5\n5 * 2 = 10\nThe answer is 10", "synthetic",
                  start=3, ops=(("+", 2), ("*", 2)))


class ScriptedEngine:
    """Returns, for each prompt, n continuations looked up by the prompt's last step."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch:
        self.calls.append((list(prompts), params))
        texts = []
        for p in prompts:
            last = p.rstrip("\n").split("\n")[-1]
            conts = self.script[last]
            assert len(conts) == params.n
            texts.extend(conts)
        n = len(texts)
        return RolloutBatch([[0]] * n, [[1]] * n, texts, [[0.0]] * n, [True] * n, engine=self.name)

    def sync_weights(self, model) -> None:  # pragma: no cover - protocol only
        pass


def test_estimate_labels_from_known_outcomes():
    hard, soft = estimate_labels([[True, False, False, False], [False, False], [True, True, True]])
    assert hard == [True, False, True]
    assert soft == [0.25, 0.0, 1.0]
    with pytest.raises(ValueError, match="step 1 has no completer outcomes"):
        estimate_labels([[True], []])


def test_step_prefix_closes_with_the_delimiter():
    assert step_prefix("P\n", ["a", "b", "c"], 1, "\n") == "P\na\nb\n"


def test_label_solutions_one_call_hard_soft_and_last_step_by_correctness():
    right = "3 + 2 = 5\n5 * 2 = 10\nThe answer is 10"
    wrong_first = "3 + 2 = 6\n6 * 2 = 12\nThe answer is 12"
    engine = ScriptedEngine({
        # continuations after "3 + 2 = 5": 3 of 4 reach 10
        "3 + 2 = 5": ["5 * 2 = 10\nThe answer is 10", "The answer is 10", "The answer is 11", "5 * 2 = 10\nThe answer is 10"],
        # after "5 * 2 = 10": all reach 10 (the solution itself is right)
        "5 * 2 = 10": ["The answer is 10"] * 4,
        # after "3 + 2 = 6": none reach 10
        "3 + 2 = 6": ["6 * 2 = 12\nThe answer is 12"] * 4,
        # after "6 * 2 = 12": one lucky continuation states 10
        "6 * 2 = 12": ["The answer is 12", "The answer is 12", "The answer is 10", "no answer"],
    })
    rows = label_solutions(engine, [PROBLEM, PROBLEM], [right, wrong_first], n_completions=4,
                           prompt_template=TEMPLATE, max_new_tokens=17, temperature=0.9, seed=3)
    assert len(engine.calls) == 1  # one batched call for every prefix of every solution
    prompts, params = engine.calls[0]
    q = "Q: Ann has 3. +2. *2.\nA:\n"
    assert prompts == [q + "3 + 2 = 5\n", q + "3 + 2 = 5\n5 * 2 = 10\n", q + "3 + 2 = 6\n", q + "3 + 2 = 6\n6 * 2 = 12\n"]
    assert (params.n, params.max_new_tokens, params.temperature, params.seed) == (4, 17, 0.9, 3)

    got = [(r["solution_index"], r["step_index"], r["hard"], r["soft"], r["exact"], r["n_completions"],
            r["completions_correct"]) for r in rows]
    assert got == [
        (0, 0, True, 0.75, True, 4, 3),
        (0, 1, True, 1.0, True, 4, 4),
        (0, 2, True, 1.0, True, 0, 0),  # last step: the solution's own verdict
        (1, 0, False, 0.0, False, 4, 0),
        (1, 1, True, 0.25, False, 4, 1),  # estimate disagrees with the exact label
        (1, 2, False, 0.0, False, 0, 0),
    ]
    assert rows[0]["prompt"] == q and rows[2]["step_text"] == "The answer is 10"


def test_last_step_uses_correctness_even_when_continuations_would_differ():
    # a one-step solution has no prefixes to complete: no engine call at all
    engine = ScriptedEngine({})
    rows = label_solutions(engine, [PROBLEM, PROBLEM], ["The answer is 10", "The answer is 9"], n_completions=2,
                           prompt_template=TEMPLATE)
    assert engine.calls == []
    assert [(r["hard"], r["soft"], r["n_completions"]) for r in rows] == [(True, 1.0, 0), (False, 0.0, 0)]
    assert [r["exact"] for r in rows] == [True, False]  # a direct answer is right iff it states the gold answer


def test_rollout_batch_input_and_empty_solutions_give_no_rows():
    engine = ScriptedEngine({"3 + 2 = 5": ["The answer is 10"]})
    batch = RolloutBatch([[0], [0]], [[1], [1]], ["3 + 2 = 5\nThe answer is 10", "\n\n"], [[0.0]] * 2, [True] * 2, "x")
    rows = label_solutions(engine, [PROBLEM, PROBLEM], batch, n_completions=1, prompt_template=TEMPLATE)
    assert [(r["solution_index"], r["step_index"], r["hard"]) for r in rows] == [(0, 0, True), (0, 1, True)]
    with pytest.raises(ValueError, match="2 completions for 1 problems"):
        label_solutions(engine, [PROBLEM], batch, n_completions=1, prompt_template=TEMPLATE)


def test_non_synthetic_problems_have_no_exact_label():
    p = Problem("g0", "q", "4", "2 + 2 = 4\n#### 4", "gsm8k")
    engine = ScriptedEngine({"2 + 2 = 4": ["#### 4"]})
    rows = label_solutions(engine, [p], ["2 + 2 = 4\n#### 4"], n_completions=1, prompt_template=TEMPLATE)
    assert [r["exact"] for r in rows] == [None, None]
    assert [r["hard"] for r in rows] == [True, True]


def _row(hard, soft, exact, n=4):
    return {"hard": hard, "soft": soft, "exact": exact, "n_completions": n}


def test_label_agreement_hand_counted():
    rows = [
        _row(True, 0.5, True),  # TP
        _row(True, 0.25, False),  # FP
        _row(False, 0.0, True),  # FN
        _row(False, 0.0, False),  # TN
        _row(True, 1.0, True, n=0),  # final step, TP
        _row(True, 1.0, None),  # no exact label: ignored
    ]
    a = label_agreement(rows)
    assert a["n_steps"] == 5 and a["n_prefix_steps"] == 4
    assert a["agreement"] == pytest.approx(3 / 5)
    assert a["agreement_prefix"] == pytest.approx(2 / 4)
    assert a["soft_mae"] == pytest.approx((0.5 + 0.25 + 1.0 + 0.0 + 0.0) / 5)
    assert a["precision"] == pytest.approx(2 / 3)
    assert a["recall"] == pytest.approx(2 / 3)
    empty = label_agreement([_row(True, 1.0, None)])
    assert empty["n_steps"] == 0 and math.isnan(empty["agreement"]) and math.isnan(empty["precision"])
