"""Reward model: step-tag gather positions, forward shapes, overfitting a tiny set, save/load."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from grpo_core.config import PRMConfig
from grpo_core.maths.batch import pack, token_logprobs
from grpo_core.maths.steps import step_token_ends
from grpo_core.policy.load import load_tokenizer
from prm.batch import collate, encode_solution
from prm.data import LabelledSolution
from prm.model import MIN_LOGPROB, RewardModel, step_surprise
from prm.train import HEAD_FIT_L2, batch_logits, evaluate, fit_head, train


def sol(prompt: str, steps: list[str], hard: list[bool], exact: list[bool | None] | None = None) -> LabelledSolution:
    return LabelledSolution(key=(None, None, "p", 0), problem_id="p", prompt=prompt, steps=steps, hard=hard,
                            soft=[float(h) for h in hard], exact=exact or [None] * len(steps))


@cache
def merging_bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE without a regex pre-split: merges run across newlines ("7\\nThe")."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=["<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["3 + 4 = 7\nThe answer is 7\n"] * 50, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


SOLUTIONS = [
    sol("Question: Ann has 3 apples. How many?\nAnswer:\n", ["How many?", "3 + 4 = 7", "The answer is 7"],
        [True, True, True]),
    sol("Q: x\nA:\n", ["3 + 4 = 7", "The answer is 7"], [True, False]),  # shorter prompt: more left padding
]


def check_gather(tok, solutions, delimiter="\n"):
    items = [encode_solution(s, tok, delimiter) for s in solutions]
    b = collate(items, tok.pad_token_id)
    P = max(len(e.prompt_ids) for e in items)
    for i, (s, e) in enumerate(zip(solutions, items)):
        ends = step_token_ends(e.completion_ids, tok, delimiter).ends
        assert b.gather_index[i, : len(ends)].tolist() == [P + t for t in ends]
        assert b.gather_mask[i].tolist() == [True] * len(ends) + [False] * (b.gather_mask.shape[1] - len(ends))
        for j, t in enumerate(ends):
            assert int(b.input_ids[i, P + t]) == e.completion_ids[t]  # the gathered column is that token
            through = tok.decode(e.completion_ids[: t + 1])
            closing = delimiter.join(s.steps[: j + 1]) + (delimiter if j < len(s.steps) - 1 else "")
            assert through.startswith(closing)  # the token completes step j (and its delimiter)
            assert not tok.decode(e.completion_ids[:t]).startswith(closing)  # ... and no earlier token does
    return b, items


def test_gather_positions_policy_tokenizer(tiny_policy_dir):
    tok = load_tokenizer(tiny_policy_dir)
    b, items = check_gather(tok, SOLUTIONS)
    assert b.gather_index.shape == (2, 3) and b.targets[1].tolist() == [1.0, 0.0, 0.0]
    first_end = items[0].ends[0]
    assert "?" in tok.decode([items[0].completion_ids[first_end]])  # "?\n" is one token: delimiter merged


def test_gather_positions_when_the_delimiter_merges_with_the_next_step():
    tok = merging_bpe()
    b, items = check_gather(tok, SOLUTIONS)
    merged = [tok.decode([e.completion_ids[t]]) for e in items for t in e.ends[:-1]]
    assert any("\n" in m and not m.endswith("\n") for m in merged), merged  # e.g. "3 + 4 = 7\nTh"


def test_outcome_encoding_reads_the_last_text_token(tiny_policy_dir):
    tok = load_tokenizer(tiny_policy_dir)
    e = encode_solution(SOLUTIONS[1], tok, "\n", kind="outcome")
    assert e.ends == [len(e.completion_ids) - 1] and e.targets == [0.0]


@pytest.mark.parametrize("surprise", [False, True])
def test_forward_shapes_and_masked_zeros(tiny_policy_dir, surprise):
    tok = load_tokenizer(tiny_policy_dir)
    rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=surprise)
    b = collate([encode_solution(s, tok, "\n") for s in SOLUTIONS], tok.pad_token_id)
    logits = rm(b.input_ids, b.attention_mask, b.position_ids, b.gather_index, b.gather_mask, b.prompt_len)
    assert logits.shape == b.gather_index.shape == (2, 3)
    assert float(logits[1, 2].detach()) == 0.0  # padding step
    assert rm.head.in_features == rm.backbone.config.hidden_size + 3 * surprise


def test_step_surprise_pools_each_step_and_the_prefix():
    lp = torch.tensor([[-0.1, -2.0, -0.3, -0.2, -0.5, -0.4, -50.0],
                       [-1.0, -0.2, -0.6, 0.0, 0.0, 0.0, 0.0]])  # (N=2, T=7) completion token log-probs
    ends = torch.tensor([[2, 3, 5], [1, 2, 0]])  # steps: tokens 0-2, 3, 4-5 | 0-1, 2, padding
    mask = torch.tensor([[True, True, True], [True, True, False]])
    f = step_surprise(lp, ends, mask)  # (2, 3, 3): step min, prefix min, step mean
    assert f.shape == (2, 3, 3)
    torch.testing.assert_close(f[0, :, 0], torch.tensor([-2.0, -0.2, -0.5]))
    torch.testing.assert_close(f[0, :, 1], torch.tensor([-2.0, -2.0, -2.0]))
    torch.testing.assert_close(f[0, :, 2], torch.tensor([-0.8, -0.2, -0.45]))
    torch.testing.assert_close(f[1, :2], torch.tensor([[-1.0, -1.0, -0.6], [-0.6, -1.0, -0.6]]))
    assert (f[1, 2] == 0).all()  # padding step
    tail = step_surprise(lp, torch.tensor([[6], [2]]), torch.tensor([[True], [True]]))  # one span: the whole text
    assert tail[0, 0, 0] == MIN_LOGPROB  # -50 clamped
    torch.testing.assert_close(tail[1, 0], torch.tensor([-1.0, -1.0, -0.6]))


def test_surprise_features_are_the_reference_lms_token_logprobs(tiny_policy_dir):
    """Before training the surprise weights are (0, 1, 0): logit - (tag part) = the prefix's least likely token
    under the policy, computed here independently with grpo_core.maths.batch.token_logprobs."""
    tok = load_tokenizer(tiny_policy_dir)
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=True)
    plain = RewardModel.from_pretrained(tiny_policy_dir, surprise=False)
    H = rm.backbone.config.hidden_size
    with torch.no_grad():
        plain.head.weight.copy_(rm.head.weight[:, :H])
        plain.head.bias.copy_(rm.head.bias)
    items = [encode_solution(s, tok, "\n") for s in SOLUTIONS]
    b = collate(items, tok.pad_token_id)
    args = (b.input_ids, b.attention_mask, b.position_ids, b.gather_index, b.gather_mask, b.prompt_len)
    with torch.no_grad():
        shift = rm(*args) - plain(*args)  # (N, S)
        packed = pack([e.prompt_ids for e in items], [e.completion_ids for e in items], tok.pad_token_id)
        lp = token_logprobs(AutoModelForCausalLM.from_pretrained(tiny_policy_dir), packed)  # (N, T)
    for i, e in enumerate(items):
        want, lowest, start = [], 0.0, 0
        for end in e.ends:
            lowest = min(lowest, max(MIN_LOGPROB, float(lp[i, start : end + 1].min())))
            want.append(lowest)
            start = end + 1
        torch.testing.assert_close(shift[i, : len(want)], torch.tensor(want), atol=1e-4, rtol=0)
    assert all(not p.requires_grad for p in rm.reference.parameters())  # frozen: training moves only the rest


@pytest.mark.parametrize("surprise", [True, False])
def test_fit_head_calibrates_bias_and_feature_weights_only(tiny_policy_dir, surprise):
    """fit_head reaches the optimum of its logistic regression over (w_f, b): zero gradient there,
    a loss no higher than the prior head's, the hidden-state weights and the backbone untouched."""
    tok = load_tokenizer(tiny_policy_dir)
    data = [sol("Q: a\nA:\n", ["2 + 3 = 5", "5 * 2 = 10", "The answer is 10"], [True, True, True]),
            sol("Q: a\nA:\n", ["2 + 3 = 6", "6 * 2 = 12", "The answer is 12"], [True, False, False]),
            sol("Q: b\nA:\n", ["4 - 1 = 3", "3 + 3 = 7", "The answer is 7"], [False, False, False])]
    items = [encode_solution(s, tok, "\n") for s in data]
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=surprise)
    H = rm.backbone.config.hidden_size
    w_h, backbone = rm.head.weight[0, :H].detach().clone(), [p.detach().clone() for p in rm.backbone.parameters()]
    b = collate(items, tok.pad_token_id)

    def objective() -> torch.Tensor:
        logits = batch_logits(rm, b)[b.gather_mask]
        return F.binary_cross_entropy_with_logits(logits, b.targets[b.gather_mask]) + HEAD_FIT_L2 * (
            rm.head.weight[0, H:] ** 2).sum()

    before = float(objective().detach())
    after = fit_head(rm, items, tok.pad_token_id, batch_size=2)
    assert after == pytest.approx(float(objective().detach()), abs=1e-5) and after < before
    rm.zero_grad()
    objective().backward()
    assert all(abs(g) < 1e-3 for g in rm.head.weight.grad[0, H:].tolist() + rm.head.bias.grad.tolist())
    assert torch.equal(rm.head.weight[0, :H].detach(), w_h)
    assert all(torch.equal(p, q) for p, q in zip(rm.backbone.parameters(), backbone))


def test_surprise_needs_a_causal_lm(tiny_policy_dir, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).base_model
    base.save_pretrained(tmp_path / "base")  # architectures: the decoder only, no LM head
    with pytest.raises(ValueError, match="prm.surprise_features needs a causal LM"):
        RewardModel.from_pretrained(tmp_path / "base", surprise=True)
    assert RewardModel.from_pretrained(tmp_path / "base", surprise=False).features == ()


def test_prm_overfits_a_tiny_labelled_set_and_round_trips(tiny_policy_dir, tmp_path):
    tok = load_tokenizer(tiny_policy_dir)
    data = [
        sol("Q: a\nA:\n", ["2 + 3 = 5", "5 * 2 = 10", "The answer is 10"], [True, True, True]),
        sol("Q: a\nA:\n", ["2 + 3 = 6", "6 * 2 = 12", "The answer is 12"], [False, False, False]),
        sol("Q: b\nA:\n", ["4 - 1 = 3", "3 + 3 = 7", "The answer is 7"], [True, False, False]),
        sol("Q: b\nA:\n", ["4 - 1 = 3", "3 + 3 = 6", "The answer is 6"], [True, True, True]),
    ]
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_policy_dir, version="test-v1", surprise=True)
    cfg = PRMConfig(lr=3e-3, epochs=60, batch_size=4, lr_schedule="constant")  # full lr to the end
    history = train(rm, tok, data, data, cfg, delimiter="\n")
    first, last = history[1], history[60]
    assert last["prm/train_loss"] < 0.05 < first["prm/train_loss"]
    assert last["prm/eval_acc"] == 1.0 and last["prm/eval_auc"] == 1.0

    b = collate([encode_solution(s, tok, "\n") for s in data], tok.pad_token_id)
    before = torch.sigmoid(batch_logits(rm, b))
    assert ((before > 0.5) == (b.targets > 0.5))[b.gather_mask].all()

    path = rm.save(tmp_path / "rm", tokenizer=tok)
    again = RewardModel.load(path)
    assert (again.kind, again.version, again.features) == ("process", "test-v1", rm.features)
    assert rm.features and (path / "reference" / "config.json").is_file()
    tok2 = load_tokenizer(path)
    b2 = collate([encode_solution(s, tok2, "\n") for s in data], tok2.pad_token_id)
    assert torch.equal(b2.input_ids, b.input_ids)
    after = torch.sigmoid(batch_logits(again, b2))
    assert torch.equal(after, before)
    assert evaluate(again, [encode_solution(s, tok2, "\n") for s in data], tok2.pad_token_id, 4) == pytest.approx(
        {k: v for k, v in last.items() if "/eval_" in k})


def test_load_rejects_a_plain_model_dir(tiny_policy_dir):
    with pytest.raises(FileNotFoundError, match="not a saved reward model"):
        RewardModel.load(tiny_policy_dir)
    with pytest.raises(ValueError, match="kind must be"):
        RewardModel.from_pretrained(tiny_policy_dir, kind="bogus", surprise=False)


def test_orm_learns_solution_correctness_one_score_each(tiny_policy_dir):
    tok = load_tokenizer(tiny_policy_dir)
    data = [
        sol("Q: a\nA:\n", ["2 + 3 = 5", "The answer is 5"], [True, True]),
        sol("Q: a\nA:\n", ["2 + 3 = 6", "The answer is 6"], [False, False]),
        sol("Q: b\nA:\n", ["4 * 2 = 8", "The answer is 8"], [True, True]),
        sol("Q: b\nA:\n", ["4 * 2 = 6", "The answer is 6"], [False, False]),
    ]
    torch.manual_seed(0)
    orm = RewardModel.from_pretrained(tiny_policy_dir, kind="outcome", surprise=True)
    history = train(orm, tok, data, data, PRMConfig(lr=3e-3, epochs=40, batch_size=4), delimiter="\n")
    last = history[40]
    assert last["orm/eval_steps"] == 4 and last["orm/eval_acc"] == 1.0 and last["orm/train_loss"] < 0.1


def test_prm_training_follows_the_lr_schedule(tiny_policy_dir):
    """A warmup longer than the run keeps every update near lr/warmup_steps: the weights barely move."""
    tok = load_tokenizer(tiny_policy_dir)
    data = [sol("Q: a\nA:\n", ["2 + 3 = 5", "The answer is 5"], [True, True]),
            sol("Q: a\nA:\n", ["2 + 3 = 6", "The answer is 6"], [False, False])]

    def moved(**schedule: object) -> float:
        torch.manual_seed(0)
        rm = RewardModel.from_pretrained(tiny_policy_dir, surprise=True)
        start = torch.cat([p.detach().flatten().clone() for p in rm.parameters()])
        train(rm, tok, data, [], PRMConfig(lr=1e-3, epochs=3, batch_size=1, fit_head=False, **schedule), delimiter="\n")
        return float((torch.cat([p.detach().flatten() for p in rm.parameters()]) - start).abs().max())

    assert moved(warmup_steps=100_000) < 1e-3 * moved()
