"""The GRPO loop end to end on the tiny policy: learning, store rows, resume, bad rewards."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from grpo_core.config import load_config
from grpo_core.data.synthetic import generate_splits
from grpo_core.maths.batch import pack, token_logprobs
from grpo_core.maths.loss import aggregate, per_token_loss
from grpo_core.policy.load import load_policy
from grpo_core.reward.functions import RewardError
from grpo_core.rollout.base import SamplingParams
from grpo_core.rollout.hf import HFEngine
from grpo_core.store import Store
from grpo_core.training.backend import TorchBackend
from grpo_core.training.trainer import train_grpo
from tests.helpers import rewards as helper_rewards

REPO = Path(__file__).resolve().parents[1]


def trainer_config(tmp_path, *extra):
    """Small GRPO batches in `tmp_path`'s store and run dirs (the trainer tests' shared settings)."""
    return load_config(None, [
        f"store.root={tmp_path / 'store'}", f"store.runs_dir={tmp_path / 'runs'}", "logging.progress=false",
        "grpo.group_size=4", "grpo.questions_per_step=4", "grpo.minibatch_size=16", "grpo.steps=4",
        "grpo.checkpoint_every=2", "rollout.max_new_tokens=24", *extra,
    ])


def _train_rows(store_root: Path):
    files = sorted((store_root / "rollouts").rglob("*-train.parquet"))
    return pq.read_table(files).to_pylist() if files else []


def train_problems(cfg):
    """The synthetic task's train problems of `cfg`."""
    return generate_splits(cfg.task.synthetic, cfg.task.seed)[0]


def train_on_learnable_target(tmp_path, policy_dir, *extra):
    """12 GRPO steps on the `ones` reward; asserts the mean reward rises and returns the result."""
    cfg = trainer_config(tmp_path, "reward.functions={tests.helpers.rewards:ones: 1.0}", "grpo.steps=12", "grpo.lr=3e-3",
               "grpo.beta=0.0", "grpo.checkpoint_every=0", "grpo.group_size=8", "grpo.minibatch_size=32", *extra)
    result = train_grpo(cfg, policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id="learn")
    rewards = [h["rollout/reward_mean"] for h in result.history]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.05 and last > 1.5 * first, rewards
    return result


def test_reward_rises_on_a_learnable_target(tmp_path, tiny_policy_dir):
    train_on_learnable_target(tmp_path, tiny_policy_dir)


def test_every_rollout_stored_once_with_metrics(tmp_path, tiny_policy_dir):
    cfg = trainer_config(tmp_path)
    train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id="r1")
    rows = _train_rows(cfg.store.root)
    assert len(rows) == 4 * 4 * 4  # steps x B x G
    keys = {(r["step"], r["group_index"], r["sample_index"]) for r in rows}
    assert len(keys) == len(rows)
    for step in range(1, 5):
        groups = [r for r in rows if r["step"] == step]
        for g in range(4):
            adv = [r["advantage"] for r in groups if r["group_index"] == g]
            rew = [r["reward"] for r in groups if r["group_index"] == g]
            assert abs(sum(adv)) < 1e-4  # z-scored within the group (Sec. 4.1.2)
            if len(set(rew)) == 1:
                assert adv == [0.0] * 4
    assert all(r["kl"] is not None and r["kl"] >= 0 for r in rows)
    metrics = pq.read_table(sorted((cfg.store.root / "step_metrics").rglob("*.parquet"))).to_pylist()
    names = {m["metric"] for m in metrics}
    for name in ("rollout/reward_mean", "rollout/frac_zero_std", "train/kl", "train/clip_frac", "time/generate_s",
                 "time/reward_s", "time/train_s", "time/store_s", "rollout/logprob_gap"):
        assert name in names
    gap = [m["value"] for m in metrics if m["metric"] == "rollout/logprob_gap"]
    assert max(gap) < 1e-3  # engine and trainer score the sampled tokens alike


@pytest.mark.parametrize(("fn", "message"), [
    ("raises", "raised KeyError"), ("nan", "not finite"), ("short", "returned 15 values for 16 completions"),
])
def test_bad_reward_functions_fail_the_step_and_keep_earlier_rows(tmp_path, tiny_policy_dir, fn, message):
    cfg = trainer_config(tmp_path, f"reward.functions={{tests.helpers.rewards:{fn}: 1.0}}")
    with pytest.raises(RewardError, match=message) as err:
        train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id="bad")
    assert f"tests.helpers.rewards:{fn}" in str(err.value) and "syn-train-" in str(err.value)


def test_crash_then_resume_continues_from_checkpoint_without_duplicates(tmp_path, tiny_policy_dir):
    helper_rewards.CALLS["n"] = 0
    cfg = trainer_config(tmp_path, "reward.functions={tests.helpers.rewards:fail_on_third_call: 1.0}")
    store, run_dir = Store(cfg.store.root), tmp_path / "run"
    with pytest.raises(RewardError, match="crash at step 3"):
        train_grpo(cfg, tiny_policy_dir, train_problems(cfg), store, run_dir, run_id="crash")
    assert {r["step"] for r in _train_rows(cfg.store.root)} == {1, 2}
    step2 = sorted((cfg.store.root / "rollouts").rglob("*step000002-train.parquet"))[0]
    mtime = step2.stat().st_mtime_ns
    result = train_grpo(cfg, tiny_policy_dir, train_problems(cfg), store, run_dir, run_id="crash")
    assert [h["step"] for h in result.history] == [3, 4]  # resumed after the step-2 checkpoint
    assert step2.stat().st_mtime_ns == mtime
    rows = _train_rows(cfg.store.root)
    assert sorted({r["step"] for r in rows}) == [1, 2, 3, 4] and len(rows) == 4 * 16


def test_killed_process_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_policy_dir):
    """A real SIGKILL mid-run; the rerun's rows equal an uninterrupted run's, each step once."""
    script = REPO / "tests" / "helpers" / "train_script.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    args = [sys.executable, str(script), str(tiny_policy_dir), str(killed), "6"]
    proc = subprocess.Popen(args, env=env)
    marker = killed / "store" / "rollouts" / "run" / "it000-step000003-train.parquet"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached step 3"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(args, env=env, check=True)
    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(script), str(tiny_policy_dir), str(clean), "6"], env=env, check=True)
    killed_rows, clean_rows = _train_rows(killed / "store"), _train_rows(clean / "store")
    assert len(killed_rows) == len(clean_rows) == 6 * 16
    drop = ("created_at",)
    as_set = lambda rows: {tuple((k, v if not isinstance(v, float) else round(v, 4)) for k, v in r.items() if k not in drop) for r in rows}  # noqa: E731
    assert as_set(killed_rows) == as_set(clean_rows)


def test_process_supervision_adds_the_configured_outcome_reward_to_the_last_step(tmp_path, tiny_policy_dir):
    """grpo.process_outcome_weight: the trainer's outcome reward (reward.functions, here not just the
    verifier) joins each output's last step reward; earlier steps keep the scorer's value."""

    def two_steps(batch, problems):  # a constant PRM: two "steps" per output, 0.25 and 0.5
        n = len(batch)
        ends = torch.tensor([[0, max(0, len(ids) - 1)] for ids in batch.completion_ids])
        return torch.tensor([[0.25, 0.5]] * n), torch.ones(n, 2, dtype=torch.bool), ends

    cfg = trainer_config(tmp_path, "grpo.supervision=process", "grpo.process_outcome_weight=0.5", "grpo.steps=2",
               "reward.functions={correct: 1.0, tests.helpers.rewards:ones: 1.0}")
    train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id="ps",
               step_scorer=two_steps, reward_model="const")
    rows = _train_rows(cfg.store.root)
    assert len(rows) == 2 * 4 * 4
    assert any(r["reward"] != float(r["correct"]) for r in rows)  # the reward is more than the verifier
    for r in rows:
        first, last = r["step_rewards"]
        assert first == pytest.approx(0.25) and last == pytest.approx(0.5 + 0.5 * r["reward"], abs=1e-6)


def test_first_update_takes_pi_old_from_its_own_forward_pass(tiny_policy_dir):
    """pi_old's log-probs of the first minibatch are its training forward's, detached (rho = 1), instead of a
    separate no-grad pass at the same weights: the same loss, gradient norm and updated weights."""
    cfg = load_config(None, ["grpo.lr=1e-2"])
    model, tok = load_policy(tiny_policy_dir)
    rollouts = HFEngine(model, tok).generate(["Question: 3 + 4?\nAnswer:\n", "Question: 9 - 2?\nAnswer:\n"],
                                             SamplingParams(n=4, max_new_tokens=12, seed=7))
    packed = pack(rollouts.prompt_ids, rollouts.completion_ids, tok.pad_token_id)
    adv = torch.linspace(-1, 1, len(rollouts)).view(-1, 1) * packed.completion_mask  # (N, T)
    results = []
    for separate_pass in (True, False):
        policy, _ = load_policy(tiny_policy_dir)
        policy.train()
        backend = TorchBackend(policy, cfg.grpo, lambda step: 1.0)
        logp = token_logprobs(policy, packed)
        if separate_pass:
            with torch.no_grad():
                old = token_logprobs(policy, packed)
        else:
            old = logp.detach()
        per_tok, _ = per_token_loss(logp, old, None, adv, beta=0.0, epsilon=0.2)
        loss = aggregate(per_tok, packed.completion_mask, "seq_mean_token_mean")
        grad_norm = backend.step(loss)
        results.append((float(loss), grad_norm, torch.cat([p.detach().flatten() for p in policy.parameters()])))
    (loss_a, norm_a, weights_a), (loss_b, norm_b, weights_b) = results
    assert loss_a == pytest.approx(loss_b, abs=1e-7) and norm_a == pytest.approx(norm_b, rel=1e-5)
    assert torch.allclose(weights_a, weights_b, atol=1e-6)


def test_exactly_on_policy_steps_have_ratio_one(tmp_path, tiny_policy_dir):
    """mu = 1 and one minibatch: no old-policy pass, and every ratio is exactly 1 (nothing clipped)."""
    cfg = trainer_config(tmp_path, "grpo.steps=2", "grpo.checkpoint_every=0")
    result = train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), tmp_path / "run", run_id="on")
    for h in result.history:
        assert h["train/ratio_min"] == h["train/ratio_max"] == 1.0 and h["train/clip_frac"] == 0.0
        assert h["rollout/logprob_gap"] < 1e-3  # pi_old from the training pass still matches the engine's
