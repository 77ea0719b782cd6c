"""Math-Shepherd automatic process labels (arXiv 2312.08935), the policy as completer.

For every sampled solution with steps s_0..s_{S-1} (`grpo_core.maths.steps.split_steps`):

    prefix_j = prompt + delimiter.join(s_0..s_j) + delimiter        for j = 0..S-2
    N continuations of each prefix from the policy (one batched engine.generate call, n = N)
    outcomes_j = [continuation k of prefix_j reaches the gold answer]  (grpo_core.reward.functions.verdicts_for)
    hard_j = any(outcomes_j)            soft_j = mean(outcomes_j)         (`estimate_labels`, pure)

The last step (the answer line) has nothing left to complete: it is labelled by
the solution's own verdict (hard = soft = correct; n_completions = 0 marks it).
Where the task can check steps (the synthetic task, `exact_step_labels`) the
exact label is recorded beside the estimates, and `label_agreement` measures the
estimates against it.

One output row per step (a `LabelRow`); these are also the columns of the
store's prm_labels table (`Store.write_prm_labels`) and of label files
(`prm.data.load_label_file`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

from grpo_core.data.loaders import format_prompt
from grpo_core.data.problem import Problem
from grpo_core.data.synthetic import exact_step_labels
from grpo_core.reward.functions import verdicts_for
from grpo_core.rollout.base import RolloutBatch, RolloutEngine, SamplingParams
from grpo_core.maths.steps import split_steps


class LabelRow(TypedDict):
    """One labelled step of one solution."""

    problem_id: str
    solution_index: int  # the solution's index in its labelling call
    step_index: int  # j, 0-based
    step_text: str  # s_j verbatim (split_steps keeps pieces as written)
    prompt: str  # the prompt the policy saw; prompt + delimiter.join(steps) rebuilds the solution
    hard: bool  # any continuation of prefix_j reaches the gold answer
    soft: float  # fraction of continuations that do
    exact: bool | None  # exact label where the task can check steps, else None
    n_completions: int  # N continuations sampled from prefix_j; 0 for the last step
    completions_correct: int  # how many of them reach the gold answer


def estimate_labels(outcomes: Sequence[Sequence[bool]]) -> tuple[list[bool], list[float]]:
    """Hard and soft Math-Shepherd labels from completer outcomes.

    outcomes[j][k]: continuation k of step prefix j reached the gold answer.
    Returns (hard, soft): hard[j] = any(outcomes[j]), soft[j] = mean(outcomes[j]).
    A step with no continuations has no estimate: that is an error here (the
    last step is labelled by correctness by the caller instead).
    """
    hard: list[bool] = []
    soft: list[float] = []
    for j, row in enumerate(outcomes):
        if len(row) == 0:
            raise ValueError(f"step {j} has no completer outcomes: cannot estimate its label")
        hard.append(any(bool(o) for o in row))
        soft.append(sum(bool(o) for o in row) / len(row))
    return hard, soft


def step_prefix(prompt: str, steps: Sequence[str], j: int, delimiter: str) -> str:
    """The text the completer continues after step j: prompt, steps 0..j, a closing delimiter."""
    return prompt + delimiter.join(steps[: j + 1]) + delimiter


def label_solutions(
    engine: RolloutEngine,
    problems: Sequence[Problem],
    completions: RolloutBatch | Sequence[str],
    *,
    n_completions: int,
    prompt_template: str,
    delimiter: str = "\n",
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[LabelRow]:
    """Label every step of every solution (problems[i] pairs with completions[i]).

    All step prefixes of all solutions go to ONE `engine.generate` call with
    n = n_completions. Solutions without any step give no rows.
    """
    texts = completions.completions if isinstance(completions, RolloutBatch) else list(completions)
    if len(texts) != len(problems):
        raise ValueError(f"{len(texts)} completions for {len(problems)} problems: pass one problem per completion")
    if n_completions < 1:
        raise ValueError(f"n_completions must be >= 1, got {n_completions}")
    prompts = [format_prompt(p, prompt_template) for p in problems]
    steps = [split_steps(t, delimiter) for t in texts]
    correct = [v.correct for v in verdicts_for(texts, list(problems))]

    # 1. every non-final step prefix of every solution, in one batched call
    jobs = [(i, j) for i, s in enumerate(steps) for j in range(len(s) - 1)]  # (solution, step)
    prefixes = [step_prefix(prompts[i], steps[i], j, delimiter) for i, j in jobs]
    outcomes: dict[tuple[int, int], list[bool]] = {}
    if jobs:
        params = SamplingParams(n=n_completions, temperature=temperature, top_p=top_p,
                                max_new_tokens=max_new_tokens, seed=seed)
        out = engine.generate(prefixes, params)  # prompt-major: prefix q's N continuations together
        if len(out) != len(jobs) * n_completions:
            raise RuntimeError(f"engine returned {len(out)} continuations for {len(jobs)} prefixes x n={n_completions}")
        # 2. does each continuation reach the gold answer? (the solution text = prefix steps + continuation)
        full = [prefixes[q][len(prompts[jobs[q][0]]):] + out.completions[q * n_completions + k]
                for q in range(len(jobs)) for k in range(n_completions)]
        judged = [problems[i] for i, _ in jobs for _ in range(n_completions)]
        ok = [v.correct for v in verdicts_for(full, judged)]
        for q, key in enumerate(jobs):
            outcomes[key] = ok[q * n_completions : (q + 1) * n_completions]

    # 3. estimates per step; the last step by the solution's own verdict
    rows: list[LabelRow] = []
    for i, (problem, s) in enumerate(zip(problems, steps, strict=True)):
        if not s:
            continue
        hard, soft = estimate_labels([outcomes[(i, j)] for j in range(len(s) - 1)])
        hard.append(correct[i])
        soft.append(float(correct[i]))
        exact = exact_step_labels(problem, s) if problem.start is not None else [None] * len(s)
        for j, text in enumerate(s):
            done = outcomes.get((i, j), [])
            rows.append(LabelRow(
                problem_id=problem.problem_id, solution_index=i, step_index=j, step_text=text,
                prompt=prompts[i], hard=hard[j], soft=soft[j], exact=exact[j],
                n_completions=len(done), completions_correct=sum(done),
            ))
    return rows


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def label_agreement(rows: Sequence[LabelRow]) -> dict[str, float]:
    """Estimated labels against exact ones, over the rows whose `exact` is known.

    agreement:  mean(hard == exact)          soft_mae: mean |soft - exact|
    precision:  P(exact | hard)              recall:   P(hard | exact)   ("correct step" is positive)
    agreement_prefix: agreement over non-final steps only (the final step is
    labelled by the verifier, so it agrees by construction on the synthetic task).
    n_steps / n_prefix_steps: how many rows were compared. NaN where undefined.
    """
    known = [r for r in rows if r.get("exact") is not None]
    prefix = [r for r in known if r.get("n_completions", 0) > 0]
    tp = sum(bool(r["hard"]) and bool(r["exact"]) for r in known)
    pred_pos = sum(bool(r["hard"]) for r in known)
    true_pos = sum(bool(r["exact"]) for r in known)
    return {
        "n_steps": float(len(known)),
        "n_prefix_steps": float(len(prefix)),
        "agreement": _ratio(sum(bool(r["hard"]) == bool(r["exact"]) for r in known), len(known)),
        "agreement_prefix": _ratio(sum(bool(r["hard"]) == bool(r["exact"]) for r in prefix), len(prefix)),
        "soft_mae": _ratio(sum(abs(float(r["soft"]) - float(bool(r["exact"]))) for r in known), len(known)),
        "precision": _ratio(tp, pred_pos),
        "recall": _ratio(tp, true_pos),
    }
