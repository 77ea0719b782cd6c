"""Shared fixtures: a very small embedded policy, built once per test session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning idle threads crawl on 2 shared cores

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_core.policy.bootstrap import build_policy
from grpo_core.config import ExperimentConfig, load_config

# A policy that builds in a few seconds: 2 layers of width 32, ~100 SFT steps on 256 problems.
TINY_OVERRIDES = [
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.vocab_size=300",
    "model.sft_steps=100",
    "model.sft_batch_size=16",
    "model.sft_lr=3e-3",
    "model.sft_direct_fraction=0.0",  # worked solutions only: the tests' learnable signal stays what it was
    "task.synthetic.n_train=256",
    "task.synthetic.n_test=32",
    "logging.progress=false",
]


def tiny_config(cache_dir: Path, *overrides: str) -> ExperimentConfig:
    """The tiny test configuration with its policy cached under `cache_dir`."""
    return load_config(None, [*TINY_OVERRIDES, f"model.cache_dir={cache_dir}", *overrides])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models gain nothing from two, and two OpenMP
    threads spin-wait badly when other processes share the 2 cores (5 s -> 80 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> ExperimentConfig:
    """The ExperimentConfig `tiny_policy_dir` was built from."""
    return tiny_config(tmp_path_factory.mktemp("tiny_policy_cache"))


@pytest.fixture(scope="session")
def tiny_policy_dir(tiny_cfg: ExperimentConfig) -> Path:
    """A local HF model dir holding the tiny policy (load it with grpo_core.policy.load.load_policy)."""
    with one_thread():
        return build_policy(tiny_cfg.model, tiny_cfg.task, progress=False)
