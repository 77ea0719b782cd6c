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

Variants after the paper, all off by default (grpo_core.config GRPOConfig): GSPO's
sequence ratio and DAPO's overlong filtering reach the loss (grpo_core.maths.loss),
the advantage scale, PURE's min credit and DAPO's soft overlong penalty the
advantages (grpo_core.maths.advantages), DAPO's dynamic sampling the draws: with
it a step draws B more questions (draw d's seed: grpo_core.data.sampling.draw_seed)
until B groups have outcome rewards that differ, or `max_extra_draws` extra draws
were made; every drawn rollout is stored, those left out of the loss marked
`filtered`. The policy's per-token entropy on its samples comes from the pi_old
log-prob passes (no extra forward pass).
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
from grpo_core.data.sampling import derive_seed, draw_seed, pick_groups, sample_questions
from grpo_core.device import autocast, resolve_device
from grpo_core.maths.advantages import (
    add_outcome_to_last_step,
    outcome_advantages,
    process_advantages,
    soft_overlong_penalty,
)
from grpo_core.maths.batch import PackedBatch, pack, token_logprobs
from grpo_core.maths.loss import aggregate, k3_kl, loss_metrics, per_token_loss
from grpo_core.policy.load import load_policy
from grpo_core.provenance import check_same_code
from grpo_core.reward.functions import compute_rewards, verdicts_for
from grpo_core.reward.process import StepScorer
from grpo_core.reward.verify import Verdict
from grpo_core.rollout import close_engine, make_engine
from grpo_core.rollout.base import RolloutBatch, SamplingParams
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


@dataclass
class _Draw:
    """B questions, G samples each, and their outcome rewards: one draw of a step (dynamic sampling may
    make several), or the groups a step trains on (`_take`)."""

    problems: list[Problem]
    prompts: list[str]
    rollouts: RolloutBatch
    verdicts: list[Verdict]
    rewards: np.ndarray  # (B*G,) outcome rewards, prompt-major


def _take(draws: list[_Draw], picks: list[tuple[int, int]], group_size: int) -> _Draw:
    """The groups `picks` ((draw, group) pairs) of `draws`, joined in that order into one batch."""
    rows = [(d, j * group_size + k) for d, j in picks for k in range(group_size)]
    col = lambda name: [getattr(draws[d].rollouts, name)[i] for d, i in rows]  # noqa: E731
    rollouts = RolloutBatch(col("prompt_ids"), col("completion_ids"), col("completions"), col("logprobs"),
                            col("finished"), draws[0].rollouts.engine)
    return _Draw([draws[d].problems[j] for d, j in picks], [draws[d].prompts[j] for d, j in picks], rollouts,
                 [draws[d].verdicts[i] for d, i in rows],
                 np.array([draws[d].rewards[i] for d, i in rows], dtype=draws[0].rewards.dtype))


def _zero_std(rewards: np.ndarray, group_size: int) -> list[bool]:
    """Per group: are all its rewards equal (no signal)? The outcome advantages' own test."""
    return outcome_advantages(torch.tensor(rewards, dtype=torch.float32).view(-1, group_size))[1].tolist()


@torch.no_grad()
def _logprobs_in_chunks(model, packed: PackedBatch, temperature: float, chunk: int,
                        rows: torch.Tensor | None = None, entropy: torch.Tensor | None = None) -> torch.Tensor:
    """log-probs (N, T) of `rows` (default all), `chunk` sequences a forward pass; other rows stay 0.
    With `entropy` (N, T), the rows' per-token entropies are written into it from the same passes."""
    n = packed.input_ids.shape[0]
    rows = torch.arange(n) if rows is None else rows
    out = torch.zeros(packed.completion_mask.shape, device=packed.completion_mask.device)  # on the batch's device
    for lo in range(0, len(rows), chunk):
        part = rows[lo : lo + chunk]
        if entropy is None:
            out[part] = token_logprobs(model, packed.select(part), temperature)
        else:
            out[part], entropy[part] = token_logprobs(model, packed.select(part), temperature, entropy=True)
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
            draws: list[_Draw] = []
            signal: list[list[bool]] = []  # per draw, per group: do its rewards differ?
            for d in range(1 + (g.max_extra_draws if g.dynamic_sampling else 0)):
                taken = {p.problem_id for earlier in draws for p in earlier.problems}
                d_seed = draw_seed(g.seed, iteration, step, d)  # draw 0: the step's seed
                d_problems = sample_questions(train, g.questions_per_step, d_seed, taken)
                if not d_problems:  # dynamic sampling used up the train split
                    break
                d_prompts = [format_prompt(p, cfg.task.prompt_template) for p in d_problems]
                d_expanded = [p for p in d_problems for _ in range(g.group_size)]

                # 1. exploration: G samples per question from pi_old (= the current policy)
                with timer("generate"), precision():
                    params = SamplingParams(n=g.group_size, temperature=temperature, top_p=cfg.rollout.top_p,
                                            max_new_tokens=cfg.rollout.max_new_tokens, seed=d_seed)
                    d_rollouts = engine.generate(d_prompts, params)

                # 2a. outcome rewards, with DAPO's soft overlong penalty when grpo.overlong_buffer > 0
                with timer("reward"):
                    d_verdicts = verdicts_for(d_rollouts.completions, d_expanded)
                    d_rewards, _ = compute_rewards(cfg.reward.functions, d_rollouts.completions, d_expanded,
                                                   d_verdicts)
                    if g.overlong_buffer > 0:
                        lengths = torch.tensor([len(ids) for ids in d_rollouts.completion_ids])
                        d_rewards = d_rewards + soft_overlong_penalty(
                            lengths, cfg.rollout.max_new_tokens, g.overlong_buffer, g.overlong_penalty).numpy()
                draws.append(_Draw(d_problems, d_prompts, d_rollouts, d_verdicts, d_rewards))
                signal.append([not z for z in _zero_std(d_rewards, g.group_size)])
                if not g.dynamic_sampling or sum(map(sum, signal)) >= g.questions_per_step:
                    break
            # DAPO dynamic sampling: the step trains on B groups with signal where the draws found them
            picks = pick_groups(signal, g.questions_per_step, g.dynamic_sampling)
            offsets = np.cumsum([0] + [len(dr.problems) for dr in draws])  # a draw's first group index in the step
            batch = _take(draws, picks, g.group_size) if len(draws) > 1 else draws[0]
            problems, prompts, rollouts, verdicts, rewards = (batch.problems, batch.prompts, batch.rollouts,
                                                              batch.verdicts, batch.rewards)
            b = len(problems)
            expanded = [p for p in problems for _ in range(g.group_size)]

            # 2b. advantages (Sec. 4.1.2 outcome / 4.1.3 process)
            with timer("reward"):
                packed = pack(rollouts.prompt_ids, rollouts.completion_ids, tok.pad_token_id).to(device)
                mask = packed.completion_mask  # (N, T)
                r = torch.tensor(rewards, dtype=torch.float32).view(b, g.group_size)  # (B, G)
                step_rewards = None
                if g.supervision == "outcome":
                    adv_seq, zero_std = outcome_advantages(r, g.advantage_scale)  # (B, G), (B,)
                    adv = adv_seq.reshape(-1, 1).expand_as(mask)  # (N, T): A_it = A_i for every token
                else:
                    s_rewards, s_mask, s_ends = step_scorer(rollouts, expanded)
                    if g.process_outcome_weight > 0:
                        s_rewards = add_outcome_to_last_step(s_rewards, s_mask, r.flatten(), g.process_outcome_weight)
                    group_index = torch.arange(b).repeat_interleave(g.group_size)
                    adv, zero_std = process_advantages(s_rewards, s_mask, s_ends, group_index, mask.shape[1],
                                                       scale=g.advantage_scale, credit=g.process_credit)
                    step_rewards = [s_rewards[i][s_mask[i]].tolist() for i in range(len(rollouts))]
                adv = adv.to(device) * mask
                # DAPO overlong filtering: truncated completions (no EOS) stay out of the loss
                in_loss = torch.tensor(rollouts.finished, device=device) if g.overlong_filter else None  # (N,) bool

            # 3. log-probs of pi_old (the training model, before any update) and pi_ref, once. The first
            # update's forward pass runs at pi_old, so its minibatch's pi_old log-probs are that pass's,
            # detached (_update fills them in): only the other sequences need a forward pass here, and
            # with mu = 1 and one minibatch (exactly on-policy, rho = 1) none does.
            with timer("logprob"), precision():
                chunk = g.minibatch_size
                minibatches = minibatch_order(len(rollouts), g, seed)
                rest = torch.ones(len(rollouts), dtype=torch.bool)
                rest[minibatches[0][backend.rank :: backend.world_size]] = False  # this rank's first update
                entropy = torch.zeros(mask.shape, device=device)  # (N, T) H of pi_old per token, from both passes
                old_logp = _logprobs_in_chunks(backend.module, packed, temperature, chunk, rest.nonzero().flatten(),
                                               entropy=entropy)
                ref_logp = _logprobs_in_chunks(ref, packed, temperature, chunk) if ref is not None else None

            # 4. mu passes of policy updates over minibatches (Eq. 3, k3 KL of Eq. 4)
            with timer("train"):
                stats = _update(backend, packed, minibatches, old_logp, ref_logp, adv, g, temperature, eps_high,
                                max_len=cfg.rollout.max_new_tokens, precision=precision, entropy=entropy,
                                in_loss=in_loss)

            # 4b. pi_old of the next step = the updated policy: push it into the rollout engine
            with timer("sync"):
                engine.sync_weights(model)

            # 5. record: every rollout and the step's metrics, then maybe a checkpoint
            with timer("store"):
                # what goes to the store and the metrics, moved to the CPU once per step
                old_logp, mask, adv, entropy = old_logp.cpu(), mask.cpu(), adv.cpu(), entropy.cpu()
                ref_logp = ref_logp.cpu() if ref_logp is not None else None
                seq_kl = _sequence_kl(old_logp, ref_logp, mask)
                key = RunKey(run_id, trial_id, iteration, step)
                n_tok = mask.sum(1).clamp(min=1)  # (N,)
                rows = rollout_rows(key, "train", "sample", prompts, problems, rollouts, verdicts, rewards,
                                    group_size=g.group_size, advantages=(adv.sum(1) / n_tok).tolist(),
                                    kl=seq_kl, step_rewards=step_rewards, reward_model=reward_model,
                                    entropy=((entropy * mask).sum(1) / n_tok).tolist(),
                                    group_index=[int(offsets[d]) + j for d, j in picks], draw=[d for d, _ in picks])
                left_out = sorted({(d, j) for d in range(len(draws)) for j in range(len(draws[d].problems))}
                                  - set(picks))
                if left_out:  # groups dynamic sampling left out (no signal, or past B): stored, marked
                    out = _take(draws, left_out, g.group_size)
                    rows += rollout_rows(key, "train", "sample", out.prompts, out.problems, out.rollouts,
                                         out.verdicts, out.rewards, group_size=g.group_size,
                                         reward_model=reward_model, filtered=True,
                                         group_index=[int(offsets[d]) + j for d, j in left_out],
                                         draw=[d for d, _ in left_out])
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
                    "rollout/entropy_mean": float((entropy * mask).sum() / mask.sum()),
                    "rollout/frac_low_entropy": float(((entropy < g.entropy_threshold) * mask).sum() / mask.sum()),
                    **stats,
                    "train/lr": backend.lr(),
                }
                if g.dynamic_sampling:  # DAPO: how many groups the step drew, and how many it left out
                    metrics["rollout/draws"] = float(len(draws))
                    metrics["rollout/groups_drawn"] = float(offsets[-1])
                    metrics["rollout/groups_filtered"] = float(len(left_out))
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
            max_len: int, precision: Callable[[], AbstractContextManager] = nullcontext,
            entropy: torch.Tensor | None = None, in_loss: torch.Tensor | None = None) -> dict[str, float]:
    """One update per minibatch, in order; returns metrics averaged over updates.

    The first minibatch is scored at pi_old, before any update: its log-probs,
    detached, are its pi_old log-probs, written into `old_logp`, and its token
    entropies into `entropy` (the other rows must hold theirs already). `in_loss`
    (N,) bool: the sequences the loss sees (None: all; DAPO overlong filtering).
    Each rank of a multi-process backend takes every `world_size`-th sequence of
    a minibatch; the backend averages the ranks' gradients.
    The forward pass runs under `precision` (bf16 autocast or none); the loss is fp32 either way.
    """
    sums: dict[str, float] = {}
    for i, idx in enumerate(minibatches):
        idx = idx[backend.rank :: backend.world_size]  # this rank's share of the minibatch
        mb = packed.select(idx)
        with precision():  # (n_mb, T), fp32 (sampled_logprobs casts)
            if i == 0 and entropy is not None:
                logp, entropy[idx] = token_logprobs(backend.module, mb, temperature, entropy=True)
            else:
                logp = token_logprobs(backend.module, mb, temperature)
        if i == 0:
            old_logp[idx] = logp.detach()  # pi_old = pi_theta before the first update (rho = 1)
        per_tok, tok_stats = per_token_loss(
            logp, old_logp[idx], ref_logp[idx] if ref_logp is not None else None, adv[idx],
            beta=g.beta, epsilon=g.epsilon, epsilon_high=eps_high,
            importance_sampling_level=g.importance_sampling_level, mask=mb.completion_mask,
        )
        rows = in_loss[idx] if in_loss is not None else None  # (n_mb,) bool, None = every sequence
        loss = aggregate(per_tok, mb.completion_mask, g.loss_agg, max_len=max_len, rows=rows)  # dr_grpo: the budget
        grad_norm = backend.step(loss)  # backward, clip, optimizer step, lr step
        seen = mb.completion_mask if rows is None else mb.completion_mask * rows.unsqueeze(1)  # (n_mb, T)
        m = {f"train/{k}": v for k, v in loss_metrics(tok_stats, seen).items()}
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
