"""Rollout engines: sample G completions per prompt with their sampling log-probs."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_core.config import RolloutConfig
from grpo_core.rollout.base import RolloutBatch, RolloutEngine, SamplingParams

__all__ = ["RolloutBatch", "RolloutEngine", "SamplingParams", "close_engine", "make_engine"]


def make_engine(cfg: RolloutConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                model_path: Path | None = None, seed: int = 0) -> RolloutEngine:
    """The engine named by `rollout.engine`, generating from `model`'s current weights.

    vLLM starts from a model dir (`model_path`, default the dir `model` was
    loaded from) and then receives `model`'s in-memory weights, so it samples
    exactly what the training module holds.
    """
    if cfg.engine == "hf":
        from grpo_core.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, batch_size=cfg.batch_size)
    if cfg.engine == "vllm":
        from grpo_core.rollout.vllm import VLLMEngine

        path = Path(model_path or model.name_or_path)
        engine = VLLMEngine(path, tokenizer, cfg.vllm, seed=seed)
        engine.sync_weights(model)
        return engine
    raise ValueError(f"rollout.engine={cfg.engine!r} is not available; use 'hf' or 'vllm'")


def close_engine(engine: RolloutEngine) -> None:
    """Release an engine's resources (vLLM's KV cache and process group); a no-op for HF."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()
