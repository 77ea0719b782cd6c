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
from grpo_core.reward.functions import RewardError
from grpo_core.store import Store
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
