"""The trainer's StepScorer backed by a reward model, and Math-Shepherd solution scores."""

from __future__ import annotations

import torch

from grpo_core.data.problem import Problem
from grpo_core.maths.advantages import process_advantages
from grpo_core.maths.steps import step_token_ends
from grpo_core.policy.load import load_tokenizer
from grpo_core.rollout.base import RolloutBatch
from prm.batch import collate, encode_solution
from prm.data import LabelledSolution
from prm.model import RewardModel
from prm.score import make_step_scorer, read_positions, solution_scores
from prm.train import batch_logits

PROMPTS = ["Question: Ann has 3 apples.\nAnswer:\n", "Q: b\nA:\n", "Q: c\nA:\n", "Q: d\nA:\n"]
TEXTS = ["3 + 4 = 7\n7 * 2 = 14\nThe answer is 14", "How many?\nThe answer is 2\n", "5 - 1 = 4\n4 + 4", ""]
EOS = [True, True, False, True]  # the third is truncated (no EOS)


def batch_of(tok) -> RolloutBatch:
    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    completion_ids = [tok(t, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if e else [])
                      for t, e in zip(TEXTS, EOS)]
    return RolloutBatch(prompt_ids, completion_ids, TEXTS, [[0.0] * len(c) for c in completion_ids], EOS, "test")


PROBLEMS = [Problem(f"p{i}", "q", "1", "The answer is 1", "synthetic") for i in range(4)]


def test_step_scorer_shapes_and_ends_agree_with_step_token_ends(tiny_policy_dir):
    tok = load_tokenizer(tiny_policy_dir)
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=True)
    batch = batch_of(tok)
    rewards, mask, ends = make_step_scorer(rm, tok, "\n", batch_size=3)(batch, PROBLEMS)
    T = max(len(c) for c in batch.completion_ids)
    assert rewards.shape == mask.shape == ends.shape == (4, 3)
    assert rewards.dtype == torch.float32 and mask.dtype == torch.bool and ends.dtype == torch.long
    for i, ids in enumerate(batch.completion_ids):
        want = step_token_ends(ids, tok, "\n").ends
        assert mask[i].sum() == len(want) == [3, 2, 2, 0][i]
        assert ends[i, : len(want)].tolist() == want
        assert all(0 <= e < T for e in want)
    assert ((rewards > 0) & (rewards < 1))[mask].all() and (rewards[~mask] == 0).all()
    # the trainer's next call accepts them
    adv, _ = process_advantages(rewards, mask, ends, torch.tensor([0, 0, 1, 1]), T)
    assert adv.shape == (4, T)

    # a last step closed by "\n" before EOS: advantages end at the "\n", the head reads the "2" before it
    reads, step_ends = read_positions(batch.completion_ids[1], tok, "\n")
    assert step_ends == ends[1, :2].tolist() and reads == [step_ends[0], step_ends[1] - 1]
    assert tok.decode([batch.completion_ids[1][reads[1]]]) == "2"

    # scores equal the training path's (same prompts, same positions; EOS and padding to the right don't matter)
    sols = [LabelledSolution((None, None, "p", i), "p", PROMPTS[i], step_token_ends(batch.completion_ids[i], tok).steps,
                             [True] * int(mask[i].sum()), [1.0] * int(mask[i].sum()), [None] * int(mask[i].sum()))
            for i in range(3)]
    b = collate([encode_solution(s, tok, "\n") for s in sols] + [encode_solution(sols[0], tok, "\n")], tok.pad_token_id)
    b.input_ids[3], b.attention_mask[3] = b.input_ids[0], b.attention_mask[0]  # keep P the same as the scorer's batch
    with torch.no_grad():
        train_scores = torch.sigmoid(batch_logits(rm, b))
    assert torch.allclose(train_scores[:3][b.gather_mask[:3]], rewards[:3][mask[:3]], atol=1e-5)


def test_outcome_scorer_gives_one_score_per_output(tiny_policy_dir):
    tok = load_tokenizer(tiny_policy_dir)
    rm = RewardModel.from_pretrained(tiny_policy_dir, kind="outcome", surprise=True)
    batch = batch_of(tok)
    rewards, mask, ends = make_step_scorer(rm, tok)(batch, PROBLEMS)
    assert rewards.shape == (4, 1)
    assert mask[:, 0].tolist() == [True, True, True, False]
    assert ends[:3, 0].tolist() == [len(c) - 1 for c in batch.completion_ids[:3]]  # EOS included: all tokens advantaged


def test_solution_scores_are_the_minimum_step_score():
    r = torch.tensor([[0.9, 0.2, 0.7], [0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    assert torch.equal(solution_scores(r, m), torch.tensor([0.2, 0.6, 0.0]))
