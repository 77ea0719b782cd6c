"""The HF rollout engine: ordering, EOS handling, seeded sampling, log-probs that match training."""

import torch

from grpo_core.maths.batch import pack, token_logprobs
from grpo_core.policy.load import load_policy
from grpo_core.rollout.base import SamplingParams
from grpo_core.rollout.hf import HFEngine, sample

PROMPTS = ["Question: Ann has 3 apples. Then Ann gets 2 more. How many apples does Ann have now?\nAnswer:\n",
           "Question: Ben has 7 coins. Then Ben gives away 4. How many coins does Ben have now?\nAnswer:\n"]


def _engine(path, batch_size=256):
    model, tok = load_policy(path)
    return HFEngine(model, tok, batch_size=batch_size), model, tok


def test_prompt_major_order_eos_and_lengths(tiny_policy_dir):
    engine, _, tok = _engine(tiny_policy_dir)
    out = engine.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=1))
    assert len(out) == 6
    for i, ids in enumerate(out.completion_ids):
        assert out.prompt_ids[i] == tok(PROMPTS[i // 3], add_special_tokens=False)["input_ids"]
        assert len(out.logprobs[i]) == len(ids)
        if out.finished[i]:
            assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
        else:
            assert len(ids) == 24 and tok.eos_token_id not in ids
        assert tok.pad_token_id not in ids


def test_seeded_sampling_is_reproducible_and_batching_invariant_for_greedy(tiny_policy_dir):
    engine, _, _ = _engine(tiny_policy_dir)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=16, seed=5)
    assert engine.generate(PROMPTS, params).completions == engine.generate(PROMPTS, params).completions
    small, _, _ = _engine(tiny_policy_dir, batch_size=1)
    greedy = SamplingParams(n=1, greedy=True, max_new_tokens=16)
    assert small.generate(PROMPTS, greedy).completions == engine.generate(PROMPTS, greedy).completions


def test_engine_logprobs_match_the_training_forward_pass(tiny_policy_dir):
    engine, model, tok = _engine(tiny_policy_dir)
    for temperature in (1.0, 0.7):
        out = engine.generate(PROMPTS, SamplingParams(n=4, temperature=temperature, max_new_tokens=20, seed=3))
        packed = pack(out.prompt_ids, out.completion_ids, tok.pad_token_id)
        with torch.no_grad():
            trainer_logp = token_logprobs(model, packed, temperature)  # (N, T)
        for i, lp in enumerate(out.logprobs):
            assert torch.allclose(trainer_logp[i, : len(lp)], torch.tensor(lp), atol=1e-4), i


def test_sync_weights_requires_the_training_module(tiny_policy_dir):
    engine, model, _ = _engine(tiny_policy_dir)
    engine.sync_weights(model)
    other, _ = load_policy(tiny_policy_dir)
    try:
        engine.sync_weights(other)
    except ValueError as err:
        assert "training module" in str(err)
    else:
        raise AssertionError("sync with a different module must fail")


def test_sample_draws_what_hf_generate_draws(tiny_policy_dir):
    """The engine's sampling loop (shared prefill, finished rows dropped) against `model.generate` on the same
    seed: the same tokens, and log-probs equal to generate's logits up to rounding."""
    model, tok = load_policy(tiny_policy_dir)
    prompts = [p for p in PROMPTS + ["Question: 2 + 2?\nAnswer:\n"] for _ in range(3)]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    for params in (SamplingParams(n=3, temperature=1.0, max_new_tokens=24, seed=1),
                   SamplingParams(n=3, temperature=0.7, max_new_tokens=24, seed=2),
                   SamplingParams(n=3, temperature=1.0, top_p=0.8, max_new_tokens=24, seed=3),
                   SamplingParams(n=3, greedy=True, max_new_tokens=24)):
        torch.manual_seed(params.seed)
        gen = model.generate(**enc, do_sample=not params.greedy, top_k=None, max_new_tokens=params.max_new_tokens,
                             temperature=None if params.greedy else params.temperature,
                             top_p=None if params.greedy else params.top_p, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, output_logits=True, return_dict_in_generate=True)
        want = gen.sequences[:, enc["input_ids"].shape[1] :]  # (b, T)
        scale = 1.0 if params.greedy else params.temperature
        want_logp = torch.log_softmax(torch.stack(gen.logits, 1) / scale, -1).gather(-1, want[..., None]).squeeze(-1)
        torch.manual_seed(params.seed)
        tokens, logp = sample(model, enc["input_ids"], enc["attention_mask"], params, tok.eos_token_id, tok.pad_token_id)
        assert torch.equal(tokens, want), params
        real = want != tok.pad_token_id
        assert torch.allclose(logp[real], want_logp[real], atol=1e-5), params
        assert (logp[~real] == 0).all()
