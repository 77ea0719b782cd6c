"""The GRPO loop (DeepSeekMath Sec. 4.1, Eq. 3), read top to bottom.

One step: sample B questions -> G completions each from the policy -> verify
and reward -> group advantages -> old-policy (and reference) log-probs once ->
mu passes of clipped-ratio updates over minibatches -> append every rollout
and the step's metrics to the store -> checkpoint every N steps. The first
update scores its minibatch at pi_old anyway, so that minibatch's old-policy
log-probs are taken from it: with mu = 1 and one minibatch (exactly on-policy)
there is no separate old-policy pass at all, as in TRL.

Resuming: a run directory's newest checkpoint restores model, optimizer,
scheduler, RNG and step; questions and sampling seeds are functions of
(seed, iteration, step), so a resumed run draws what the uninterrupted run
would have, and store files are per step, so re-run steps replace their rows.

Scale-out seams: the rollout engine (`rollout.engine`: HF generate or vLLM)
receives the policy's weights after every step's updates (`sync_weights`),
and the training backend (`grpo.backend`: plain torch or DeepSpeed ZeRO, see
grpo_core.training.backend) applies the updates. Under a multi-process DeepSpeed launch
every rank draws the same rollouts (same seeds), trains on its share of each
minibatch, and rank 0 alone writes the store and checkpoints.

Departures from the paper, for the CPU default (see ExperimentConfig): smaller
G, larger lr, shorter completions. Process supervision (Sec. 4.1.3) needs a
step scorer (a PRM): pass `step_scorer`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from grpo_core.config import ExperimentConfig, GRPOConfig
from grpo_core.data.loaders import format_prompt
from grpo_core.data.problem import Problem
from grpo_core.data.sampling import derive_seed, sample_questions
from grpo_core.device import autocast, resolve_device
from grpo_core.maths.advantages import add_outcome_to_last_step, outcome_advantages, process_advantages
from grpo_core.maths.batch import PackedBatch, pack, token_logprobs
from grpo_core.maths.loss import aggregate, k3_kl, loss_metrics, per_token_loss
from grpo_core.policy.load import load_policy
from grpo_core.provenance import check_same_code
from grpo_core.reward.functions import compute_rewards, verdicts_for
from grpo_core.reward.process import StepScorer
from grpo_core.rollout import close_engine, make_engine
from grpo_core.rollout.base import SamplingParams
from grpo_core.store import Store
from grpo_core.store.records import RunKey, rollout_rows
from grpo_core.training import checkpoint
from grpo_core.training.backend import TrainBackend, make_backend
from grpo_core.training.loggers import Tracker, make_tracker
from grpo_core.training.schedule import lr_multiplier

log = logging.getLogger("grpo")

@dataclass
class TrainResult:
    run_id: str
    run_dir: Path
    policy_dir: Path
    steps_done: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def _logprobs_in_chunks(model, packed: PackedBatch, temperature: float, chunk: int,
                        rows: torch.Tensor | None = None) -> torch.Tensor:
    """log-probs (N, T) of `rows` (default all), `chunk` sequences a forward pass; other rows stay 0."""
    n = packed.input_ids.shape[0]
    rows = torch.arange(n) if rows is None else rows
    out = torch.zeros(packed.completion_mask.shape, device=packed.completion_mask.device)  # on the batch's device
    for lo in range(0, len(rows), chunk):
        part = rows[lo : lo + chunk]
        out[part] = token_logprobs(model, packed.select(part), temperature)
    return out


def minibatch_order(n: int, g: GRPOConfig, seed: int) -> list[torch.Tensor]:
    """The minibatches of one step's mu epochs, in update order: each epoch a fresh shuffle of the n sequences."""
    gen = torch.Generator().manual_seed(seed)
    return [idx for _ in range(g.mu) for idx in torch.randperm(n, generator=gen).split(g.minibatch_size)]


def train_grpo(
    cfg: ExperimentConfig,
    policy_path: Path,
    train: list[Problem],
    store: Store,
    run_dir: Path,
    *,
    run_id: str,
    trial_id: str | None = None,
    iteration: int = 0,
    step_scorer: StepScorer | None = None,
    reward_model: str | None = None,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Run `cfg.grpo.steps` GRPO steps from `policy_path` (or resume in `run_dir`).

    Step metrics go to the store and to `tracker` (default: the one
    `logging.wandb` asks for, opened and closed here).
    """
    g = cfg.grpo
    if g.supervision == "process" and step_scorer is None:
        raise ValueError(
            "grpo.supervision='process' needs step rewards from a process reward model: "
            "run the iterative pipeline, which trains one, or set grpo.supervision=outcome"
        )
    t_start = time.perf_counter()
    torch.manual_seed(g.seed)
    ckpt = checkpoint.latest(run_dir)
    if ckpt is not None:
        check_same_code(checkpoint.recorded_code(ckpt), f"checkpoint {ckpt.path}", allow=cfg.store.allow_code_change)
    device = resolve_device(cfg.device)  # the policy, the reference and every batch tensor live here
    precision = partial(autocast, device, cfg.precision)  # the forward passes' precision (fp32 or bf16 autocast)
    model, tok = load_policy(ckpt.path if ckpt else policy_path, device=device)
    model.train()
    ref = None
    if g.beta > 0:
        ref, _ = load_policy(policy_path, device=device)  # pi_ref: the policy at the start of this iteration
        ref.requires_grad_(False)
    if cfg.rollout.engine == "vllm" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "rollout.engine=vllm runs inside the training process, so it needs a single training process; "
            "with several ranks (a deepspeed/torchrun launch) use rollout.engine=hf"
        )
    engine = make_engine(cfg.rollout, model, tok, seed=g.seed)  # before DeepSpeed: vLLM sets up its own group

    n_seq = g.questions_per_step * g.group_size
    updates_per_step = g.mu * math.ceil(n_seq / g.minibatch_size)
    backend = make_backend(g, model, lr_multiplier(g.lr_schedule, g.warmup_steps, g.steps * updates_per_step))
    start = backend.restore(ckpt) if ckpt else 0
    if start:
        log.info("resuming %s from checkpoint step %d", run_id, start)
    writer = backend.rank == 0  # the one rank that writes the store and logs
    own_tracker = tracker is None
    if tracker is None:
        tracker = make_tracker(cfg, run_dir, name=f"{run_id}-it{iteration:03d}", group=run_id) if writer else None
    temperature = cfg.rollout.temperature
    eps_high = g.epsilon_high if g.epsilon_high is not None else g.epsilon
    history: list[dict[str, float]] = []

    try:
        bar = tqdm(range(start + 1, g.steps + 1), initial=start, total=g.steps, desc=f"GRPO it{iteration}",
                   disable=not cfg.logging.progress)
        for step in bar:
            timer = _PhaseTimer()
            seed = derive_seed(g.seed, iteration, step)
            problems = sample_questions(train, g.questions_per_step, seed)
            b = len(problems)
            prompts = [format_prompt(p, cfg.task.prompt_template) for p in problems]
            expanded = [p for p in problems for _ in range(g.group_size)]

            # 1. exploration: G samples per question from pi_old (= the current policy)
            with timer("generate"), precision():
                params = SamplingParams(n=g.group_size, temperature=temperature, top_p=cfg.rollout.top_p,
                                        max_new_tokens=cfg.rollout.max_new_tokens, seed=seed)
                rollouts = engine.generate(prompts, params)

            # 2. rewards and advantages (Sec. 4.1.2 outcome / 4.1.3 process)
            with timer("reward"):
                verdicts = verdicts_for(rollouts.completions, expanded)
                rewards, _ = compute_rewards(cfg.reward.functions, rollouts.completions, expanded, verdicts)
                packed = pack(rollouts.prompt_ids, rollouts.completion_ids, tok.pad_token_id).to(device)
                mask = packed.completion_mask  # (N, T)
                r = torch.tensor(rewards, dtype=torch.float32).view(b, g.group_size)  # (B, G)
                step_rewards = None
                if g.supervision == "outcome":
                    adv_seq, zero_std = outcome_advantages(r)  # (B, G), (B,)
                    adv = adv_seq.reshape(-1, 1).expand_as(mask)  # (N, T): A_it = A_i for every token
                else:
                    s_rewards, s_mask, s_ends = step_scorer(rollouts, expanded)
                    if g.process_outcome_weight > 0:
                        s_rewards = add_outcome_to_last_step(s_rewards, s_mask, r.flatten(), g.process_outcome_weight)
                    group_index = torch.arange(b).repeat_interleave(g.group_size)
                    adv, zero_std = process_advantages(s_rewards, s_mask, s_ends, group_index, mask.shape[1])
                    step_rewards = [s_rewards[i][s_mask[i]].tolist() for i in range(len(rollouts))]
                adv = adv.to(device) * mask

            # 3. log-probs of pi_old (the training model, before any update) and pi_ref, once. The first
            # update's forward pass runs at pi_old, so its minibatch's pi_old log-probs are that pass's,
            # detached (_update fills them in): only the other sequences need a forward pass here, and
            # with mu = 1 and one minibatch (exactly on-policy, rho = 1) none does.
            with timer("logprob"), precision():
                chunk = g.minibatch_size
                minibatches = minibatch_order(len(rollouts), g, seed)
                rest = torch.ones(len(rollouts), dtype=torch.bool)
                rest[minibatches[0][backend.rank :: backend.world_size]] = False  # this rank's first update
                old_logp = _logprobs_in_chunks(backend.module, packed, temperature, chunk, rest.nonzero().flatten())
                ref_logp = _logprobs_in_chunks(ref, packed, temperature, chunk) if ref is not None else None

            # 4. mu passes of policy updates over minibatches (Eq. 3, k3 KL of Eq. 4)
            with timer("train"):
                stats = _update(backend, packed, minibatches, old_logp, ref_logp, adv, g, temperature, eps_high,
                                max_len=cfg.rollout.max_new_tokens, precision=precision)

            # 4b. pi_old of the next step = the updated policy: push it into the rollout engine
            with timer("sync"):
                engine.sync_weights(model)

            # 5. record: every rollout and the step's metrics, then maybe a checkpoint
            with timer("store"):
                # what goes to the store and the metrics, moved to the CPU once per step
                old_logp, mask, adv = old_logp.cpu(), mask.cpu(), adv.cpu()
                ref_logp = ref_logp.cpu() if ref_logp is not None else None
                seq_kl = _sequence_kl(old_logp, ref_logp, mask)
                key = RunKey(run_id, trial_id, iteration, step)
                rows = rollout_rows(key, "train", "sample", prompts, problems, rollouts, verdicts, rewards,
                                    group_size=g.group_size, advantages=(adv.sum(1) / mask.sum(1).clamp(min=1)).tolist(),
                                    kl=seq_kl, step_rewards=step_rewards, reward_model=reward_model)
                engine_logp = _pad_logprobs(rollouts.logprobs, mask.shape)
                metrics = {
                    "rollout/reward_mean": float(rewards.mean()),
                    "rollout/reward_std": float(rewards.std()),
                    "rollout/accuracy": float(np.mean([v.correct for v in verdicts])),
                    "rollout/wellformed": float(np.mean([v.answer is not None for v in verdicts])),
                    "rollout/frac_zero_std": float(zero_std.float().mean()),
                    "rollout/mean_length": float(mask.sum(1).mean()),
                    "rollout/frac_truncated": float(1 - np.mean(rollouts.finished)),
                    "rollout/logprob_gap": float(((engine_logp - old_logp).abs() * mask).sum() / mask.sum()),
                    **stats,
                    "train/lr": backend.lr(),
                }
                if writer:
                    store.write_rollouts(rows, run_id=run_id, iteration=iteration, step=step, split="train")
            metrics.update(timer.metrics())
            if writer:
                store.write_step_metrics(metrics, run_id=run_id, trial_id=trial_id, iteration=iteration, step=step)
                tracker.log(metrics, step)
            # last: a step is done once its checkpoint exists; a crash before it redoes (and rewrites) the step
            if (g.checkpoint_every and step % g.checkpoint_every == 0) or step == g.steps:
                t_ckpt = time.perf_counter()
                backend.save(run_dir, step, tok)
                log.debug("checkpoint of step %d in %.2fs", step, time.perf_counter() - t_ckpt)
            history.append({"step": step, **metrics})
            bar.set_postfix(reward=f"{metrics['rollout/reward_mean']:.3f}", kl=f"{metrics['train/kl']:.4f}")
            log.info("it%d step %d/%d (%.0f%%, ETA %.0fs at this step's pace) reward %.3f acc %.3f kl %.4f %.1fs",
                     iteration, step, g.steps, 100 * step / g.steps, metrics["time/step_s"] * (g.steps - step),
                     metrics["rollout/reward_mean"], metrics["rollout/accuracy"], metrics["train/kl"],
                     metrics["time/step_s"])
    finally:  # also on a failed step: a vLLM engine holds a KV cache and a process group
        close_engine(engine)
        if own_tracker and tracker is not None:
            tracker.close()
    final = checkpoint.latest(run_dir)
    return TrainResult(run_id, run_dir, final.path if final else policy_path, g.steps, time.perf_counter() - t_start,
                       history)


def _update(backend: TrainBackend, packed: PackedBatch, minibatches: list[torch.Tensor], old_logp: torch.Tensor,
            ref_logp: torch.Tensor | None, adv: torch.Tensor, g: GRPOConfig, temperature: float, eps_high: float,
            max_len: int, precision: Callable[[], AbstractContextManager] = nullcontext) -> dict[str, float]:
    """One update per minibatch, in order; returns metrics averaged over updates.

    The first minibatch is scored at pi_old, before any update: its log-probs,
    detached, are its pi_old log-probs, written into `old_logp` (the other rows
    must hold theirs already). Each rank of a multi-process backend takes every
    `world_size`-th sequence of a minibatch; the backend averages the ranks' gradients.
    The forward pass runs under `precision` (bf16 autocast or none); the loss is fp32 either way.
    """
    sums: dict[str, float] = {}
    for i, idx in enumerate(minibatches):
        idx = idx[backend.rank :: backend.world_size]  # this rank's share of the minibatch
        mb = packed.select(idx)
        with precision():
            logp = token_logprobs(backend.module, mb, temperature)  # (n_mb, T), fp32 (sampled_logprobs casts)
        if i == 0:
            old_logp[idx] = logp.detach()  # pi_old = pi_theta before the first update (rho = 1)
        per_tok, tok_stats = per_token_loss(
            logp, old_logp[idx], ref_logp[idx] if ref_logp is not None else None, adv[idx],
            beta=g.beta, epsilon=g.epsilon, epsilon_high=eps_high,
        )
        loss = aggregate(per_tok, mb.completion_mask, g.loss_agg, max_len=max_len)  # Dr. GRPO: the generation budget
        grad_norm = backend.step(loss)  # backward, clip, optimizer step, lr step
        m = {f"train/{k}": v for k, v in loss_metrics(tok_stats, mb.completion_mask).items()}
        m["train/loss"] = float(loss.detach())
        m["train/grad_norm"] = float(grad_norm)
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / len(minibatches) for k, v in sums.items()}


def _sequence_kl(old_logp: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor) -> list[float] | None:
    """Mean k3 KL(pi_old || pi_ref) per sequence (Eq. 4), from the pre-update log-probs."""
    if ref_logp is None:
        return None
    kl = k3_kl(old_logp, ref_logp) * mask  # (N, T)
    return (kl.sum(1) / mask.sum(1).clamp(min=1)).tolist()


def _pad_logprobs(logprobs: list[list[float]], shape: torch.Size) -> torch.Tensor:
    out = torch.zeros(shape)
    for i, lp in enumerate(logprobs):
        out[i, : len(lp)] = torch.tensor(lp)
    return out


class _PhaseTimer:
    """Wall seconds per named phase of a step -> `time/<phase>_s` metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> _Phase:
        return _Phase(self, name)

    def metrics(self) -> dict[str, float]:
        out = {f"time/{k}_s": v for k, v in self.seconds.items()}
        out["time/step_s"] = time.perf_counter() - self._t0
        return out


class _Phase:
    def __init__(self, timer: _PhaseTimer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.seconds[self.name] = self.timer.seconds.get(self.name, 0.0) + time.perf_counter() - self.t
