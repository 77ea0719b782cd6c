"""The DeepSpeed backend (ZeRO-2, one CPU process): same first-step loss as plain torch, checkpoint and resume.

Needs the `deepspeed` extra (`make test` installs it); outside CI the module is
skipped when DeepSpeed is missing. The first DeepSpeed use compiles a CPU op
(~70 s) into TORCH_EXTENSIONS_DIR (runs/torch_extensions), reused afterwards.
"""

import os

import pytest

from grpo_core.config import load_config
from grpo_core.store import Store
from grpo_core.training.backend import deepspeed_config
from grpo_core.training.trainer import train_grpo
from tests.test_trainer import train_problems, trainer_config

if not os.environ.get("CI"):
    pytest.importorskip("deepspeed")

ZERO2 = ["grpo.backend=deepspeed", "grpo.deepspeed_config=configs/deepspeed/zero2.json"]
SETTINGS = ["reward.functions={tests.helpers.rewards:ones: 1.0}", "grpo.lr=3e-3", "grpo.minibatch_size=8",
            "grpo.checkpoint_every=1"]


def _run(tmp_path, policy, name, *extra):
    cfg = trainer_config(tmp_path / name, *SETTINGS, *extra)
    return train_grpo(cfg, policy, train_problems(cfg), Store(cfg.store.root), tmp_path / name / "run", run_id=name)


def test_config_takes_lr_clipping_and_batch_from_the_grpo_section():
    g = load_config(None, [*ZERO2, "grpo.lr=1e-3", "grpo.max_grad_norm=0.5", "grpo.minibatch_size=32"]).grpo
    ds = deepspeed_config(g, world_size=2)
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["optimizer"]["params"]["lr"] == 1e-3 and ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["gradient_clipping"] == 0.5
    assert ds["train_micro_batch_size_per_gpu"] == 16 and ds["train_batch_size"] == 32


def test_zero2_matches_plain_torch_then_resumes_from_its_checkpoint(tmp_path, tiny_policy_dir):
    torch_run = _run(tmp_path, tiny_policy_dir, "torch", "grpo.steps=2")
    ds_run = _run(tmp_path, tiny_policy_dir, "zero2", *ZERO2, "grpo.steps=2")
    t, d = torch_run.history, ds_run.history
    # step 1: the same rollouts, and minibatch losses before and after AdamW updates (2 updates per step)
    assert abs(t[0]["train/loss"] - d[0]["train/loss"]) < 1e-6, (t[0]["train/loss"], d[0]["train/loss"])
    assert abs(t[0]["train/grad_norm"] - d[0]["train/grad_norm"]) < 1e-4
    assert abs(t[1]["train/loss"] - d[1]["train/loss"]) < 1e-4  # after two identical optimizer updates
    ckpt = tmp_path / "zero2" / "run" / "checkpoints" / "step-000002"
    assert (ckpt / "config.json").exists() and (ckpt / "deepspeed" / "state").is_dir()
    # resume: a longer run in each dir continues at step 3, DeepSpeed's from its own optimizer state
    ds_resumed = _run(tmp_path, tiny_policy_dir, "zero2", *ZERO2, "grpo.steps=3")
    torch_resumed = _run(tmp_path, tiny_policy_dir, "torch", "grpo.steps=3")
    assert [h["step"] for h in ds_resumed.history] == [h["step"] for h in torch_resumed.history] == [3]
    assert abs(ds_resumed.history[0]["train/loss"] - torch_resumed.history[0]["train/loss"]) < 1e-4
