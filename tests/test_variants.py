"""The GRPO variants of issue 19 through the trainer: DAPO dynamic sampling (draws, bound, stored and marked
rows), overlong filtering and the soft penalty, GSPO's sequence ratio, the policy's token entropy (against a
direct computation from the logits), and the config's checks. The maths of each variant is tested by hand in
tests/test_advantages.py and tests/test_loss.py."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from grpo_core.config import ConfigError, load_config
from grpo_core.data.problem import Problem
from grpo_core.data.sampling import derive_seed, draw_seed, pick_groups, sample_questions
from grpo_core.maths.batch import pack, sampled_entropy, token_logprobs
from grpo_core.policy.load import load_policy
from grpo_core.store import Store
from grpo_core.training.trainer import train_grpo
from tests.test_trainer import train_problems, trainer_config

B, G = 4, 4  # trainer_config's questions per step and group size


def half_flat(completions: list[str], problems: list[Problem]) -> list[float]:
    """A reward with no signal in half the groups: 1.0 for every sample of an even-numbered problem, the
    completion's length for an odd-numbered one (whose samples differ)."""
    return [1.0 if int(p.problem_id.rsplit("-", 1)[1]) % 2 == 0 else float(len(c))
            for c, p in zip(completions, problems, strict=True)]


def _rows(root):
    return pq.read_table(sorted((root / "rollouts").rglob("*-train.parquet"))).to_pylist()


def _run(tmp_path, policy_dir, *extra, run_id="v"):
    cfg = trainer_config(tmp_path, "grpo.steps=2", "grpo.checkpoint_every=0", *extra)
    result = train_grpo(cfg, policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id=run_id)
    return cfg, result


# ---------------------------------------------------------------- draws


def test_draw_seeds_are_pure_and_draw_zero_is_the_steps_seed():
    assert draw_seed(3, 1, 7, 0) == derive_seed(3, 1, 7)
    seeds = {draw_seed(3, 1, 7, d) for d in range(6)}
    assert len(seeds) == 6 and draw_seed(3, 1, 7, 4) == draw_seed(3, 1, 7, 4)
    assert draw_seed(3, 1, 7, 1) != draw_seed(3, 1, 8, 1) != draw_seed(3, 2, 7, 1)


def test_sample_questions_skips_excluded_problems():
    train = [Problem(problem_id=f"p{i}", question="q", answer="1", solution="", source="test") for i in range(6)]
    drawn = sample_questions(train, 4, seed=0, exclude={"p0", "p1", "p2"})
    assert sorted(p.problem_id for p in drawn) == ["p3", "p4", "p5"]  # only three left


def test_pick_groups_takes_b_with_signal_and_tops_up_when_the_bound_is_hit():
    assert pick_groups([[True, False, False, True], [False, True, True, False]], 4, True) == [
        (0, 0), (0, 3), (1, 1), (1, 2)]
    assert pick_groups([[True, True, True], [True]], 2, True) == [(0, 0), (0, 1)]  # never more than B
    # the bound hit with one group of signal: topped up with the earliest groups without
    assert pick_groups([[False, False, True, False], [False, False, False, False]], 4, True) == [
        (0, 0), (0, 1), (0, 2), (0, 3)]
    assert pick_groups([[False, True, False]], 3, False) == [(0, 0), (0, 1), (0, 2)]  # off: draw 0 as it is


def test_dynamic_sampling_replaces_groups_without_signal_and_stores_every_draw(tmp_path, tiny_policy_dir):
    cfg, result = _run(tmp_path, tiny_policy_dir, "reward.functions={tests.test_variants:half_flat: 1.0}",
                       "grpo.dynamic_sampling=true", "grpo.max_extra_draws=3")
    rows = _rows(cfg.store.root)
    for h in result.history:
        step = [r for r in rows if r["step"] == h["step"]]
        groups = {}
        for r in step:
            groups.setdefault(r["group_index"], []).append(r)
        assert sorted(groups) == list(range(len(groups)))  # one index per drawn group of the step
        flat = {g for g, rs in groups.items() if len({r["reward"] for r in rs}) == 1}
        trained = {g for g, rs in groups.items() if not rs[0]["filtered"]}
        assert all(len({r["filtered"] for r in rs}) == 1 and len(rs) == G for rs in groups.values())
        assert len(trained) == B and not trained & flat  # B groups, all with signal
        last = int(h["rollout/draws"]) - 1
        extra = {g for g in groups if g not in trained and g not in flat}  # signal beyond the B the step needed
        assert all(groups[g][0]["draw"] == last for g in extra)  # only in the last draw
        assert h["rollout/groups_drawn"] == len(groups) == B * h["rollout/draws"] > B  # draw 0 had flat groups
        assert h["rollout/groups_filtered"] == len(groups) - B and h["rollout/frac_zero_std"] == 0.0
        assert {r["draw"] for r in step} == set(range(int(h["rollout/draws"])))
        assert all(r["advantage"] is None and r["kl"] is None for r in step if r["filtered"])
        assert len({r["problem_id"] for r in step}) == len(groups)  # an extra draw takes new questions


def test_dynamic_sampling_honours_the_bound(tmp_path, tiny_policy_dir):
    """A constant reward: no group ever has signal; 1 + max_extra_draws draws, then the first draw's B groups
    (zero advantages) are trained on and the rest stored as filtered."""
    cfg, result = _run(tmp_path, tiny_policy_dir, "reward.functions={tests.helpers.rewards:ones: 0.0}",
                       "grpo.dynamic_sampling=true", "grpo.max_extra_draws=2")
    rows = _rows(cfg.store.root)
    assert [h["rollout/draws"] for h in result.history] == [3.0, 3.0]
    assert [h["rollout/groups_filtered"] for h in result.history] == [2.0 * B] * 2
    assert len(rows) == 2 * 3 * B * G
    kept = [r for r in rows if not r["filtered"]]
    assert len(kept) == 2 * B * G and {r["draw"] for r in kept} == {0}


# ---------------------------------------------------------------- overlong


def test_overlong_filter_masks_truncated_completions_out_of_the_loss(tmp_path, tiny_policy_dir):
    """On-policy (mu = 1, one minibatch: rho = 1) and beta = 0, the loss is -mean_i A_i over the sequences in
    it (each token of o_i carries -A_i): with the filter, over the finished ones only, read from the store."""
    cfg, result = _run(tmp_path, tiny_policy_dir, "rollout.max_new_tokens=10", "grpo.minibatch_size=16",
                       "grpo.beta=0.0", "grpo.overlong_filter=true",
                       "reward.functions={tests.helpers.rewards:ones: 1.0}")
    rows = _rows(cfg.store.root)
    assert any(0 < h["rollout/frac_truncated"] < 1 for h in result.history)  # both kinds in a step
    for h in result.history:
        finished = [r["advantage"] for r in rows if r["step"] == h["step"] and r["finished"]]
        expected = -sum(finished) / len(finished) if finished else 0.0
        assert h["train/loss"] == pytest.approx(expected, abs=1e-5)


def test_soft_overlong_penalty_reaches_the_stored_reward(tmp_path, tiny_policy_dir):
    """rollout.max_new_tokens=24, overlong_buffer=8, coefficient 0.5: reward = ones + 0.5 * min(0, 16 - n) / 8,
    floored at -0.5, per completion of n tokens (DAPO Eq. 13)."""
    cfg, _ = _run(tmp_path, tiny_policy_dir, "reward.functions={tests.helpers.rewards:ones: 1.0}",
                  "grpo.overlong_buffer=8", "grpo.overlong_penalty=0.5")
    rows = _rows(cfg.store.root)
    assert any(r["n_tokens"] > 16 for r in rows)
    for r in rows:
        ones = r["completion"].count("1") / max(1, len(r["completion"]))
        assert r["reward"] == pytest.approx(ones + 0.5 * max(-1.0, min(0.0, (16 - r["n_tokens"]) / 8)), abs=1e-6)


def test_overlong_buffer_beyond_the_budget_names_both_fields():
    with pytest.raises(ConfigError, match=r"grpo.overlong_buffer \(80\) must be <= rollout.max_new_tokens \(64\)"):
        load_config(None, ["grpo.overlong_buffer=80"])
    with pytest.raises(ConfigError, match="grpo.process_credit"):
        load_config(None, ["grpo.process_credit=max"])


# ---------------------------------------------------------------- GSPO through the trainer


def test_sequence_ratio_reaches_the_trainers_loss(tmp_path, tiny_policy_dir):
    """mu = 2: the second epoch's ratios differ from 1. Token level: ratios vary within a sequence; sequence
    level (GSPO): train/ratio_* are the sequences' s_i, and the loss differs from the token-level run."""
    hist = {level: _run(tmp_path / level, tiny_policy_dir, "grpo.mu=2", "grpo.lr=1e-2", "grpo.steps=1",
                        f"grpo.importance_sampling_level={level}",
                        "reward.functions={tests.helpers.rewards:ones: 1.0}")[1].history[0]
            for level in ("token", "sequence")}
    assert hist["token"]["train/loss"] != hist["sequence"]["train/loss"]
    assert hist["token"]["rollout/reward_mean"] == hist["sequence"]["rollout/reward_mean"]  # same samples
    # a sequence's s_i is a geometric mean of its token ratios, so the extremes move inwards
    assert hist["sequence"]["train/ratio_max"] <= hist["token"]["train/ratio_max"]
    assert hist["sequence"]["train/ratio_min"] >= hist["token"]["train/ratio_min"]


# ---------------------------------------------------------------- entropy


def test_sampled_entropy_matches_a_direct_computation():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits.double() / 0.7, dim=-1)
    direct = -(p * p.log()).sum(-1)  # (2, 3)
    torch.testing.assert_close(sampled_entropy(logits, 0.7).double(), direct, atol=1e-6, rtol=1e-6)
    assert torch.allclose(sampled_entropy(torch.zeros(1, 1, 8)), torch.tensor(8.0).log())  # uniform: log V


def test_token_entropy_from_the_log_prob_pass_matches_one_padded_pass(tiny_policy_dir):
    model, tok = load_policy(tiny_policy_dir)
    prompts = [[5, 9, 12, 7], [5, 9, 12, 7], [3, 4]]
    completions = [[20, 31, 44, 9], [17], [60, 61, 62]]
    packed = pack(prompts, completions, tok.pad_token_id)
    with torch.no_grad():
        logp, ent = token_logprobs(model, packed, 0.7, entropy=True)
        alone = token_logprobs(model, packed, 0.7)
        logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                       position_ids=packed.position_ids).logits[:, packed.prompt_len - 1 : -1]  # (N, T, V)
    p = torch.softmax(logits.double() / 0.7, dim=-1)
    direct = -(p * p.log()).sum(-1)  # (N, T)
    keep = packed.completion_mask.bool()
    torch.testing.assert_close(ent[keep].double(), direct[keep], atol=1e-4, rtol=1e-4)
    assert torch.equal(logp, alone)  # asking for the entropy leaves the log-probs as they were


def test_entropy_is_stored_per_rollout_and_logged_per_step(tmp_path, tiny_policy_dir):
    cfg, result = _run(tmp_path, tiny_policy_dir, "grpo.minibatch_size=8", "grpo.entropy_threshold=1.5")
    rows = _rows(cfg.store.root)
    for h in result.history:
        step = [r for r in rows if r["step"] == h["step"]]
        token_mean = sum(r["entropy"] * r["n_tokens"] for r in step) / sum(r["n_tokens"] for r in step)
        assert h["rollout/entropy_mean"] == pytest.approx(token_mean, rel=1e-5)
        assert 0.0 <= h["rollout/frac_low_entropy"] <= 1.0 and h["rollout/entropy_mean"] > 0
