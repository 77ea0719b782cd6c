"""Rollout engines: sample G completions per prompt with their sampling log-probs."""

from grpo_core.rollout.base import RolloutBatch, RolloutEngine, SamplingParams

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingParams", "make_engine"]


def make_engine(cfg, model, tokenizer) -> RolloutEngine:
    """The engine named by `rollout.engine` (a RolloutConfig), over the training model."""
    from grpo_core.rollout.hf import HFEngine

    if cfg.engine == "hf":
        return HFEngine(model, tokenizer, batch_size=cfg.batch_size)
    raise ValueError(f"rollout.engine={cfg.engine!r} is not available; use 'hf'")
