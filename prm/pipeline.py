"""The reward-model steps of iterative RL (Algorithm 1), as plain functions the flows call.

    rows = label_policy_samples(cfg, policy_dir, train_problems, store, run_id, iteration)
    rm_dir, metrics = train_reward_model(cfg, init_dir, rows, replay_rows, out_dir)
    for epoch, m in metrics.items(): store.write_prm_metrics(m, run_id=..., iteration=..., epoch=epoch)

Iteration 0 starts the RM from the policy dir (the paper initialises it from
the base model); later iterations continue from the previous RM dir, on the new
labels plus a replay of `prm.replay_fraction` of all earlier ones.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo_core.config import ExperimentConfig
from grpo_core.data.loaders import format_prompt
from grpo_core.data.problem import Problem
from grpo_core.data.sampling import derive_seed
from grpo_core.device import autocast, resolve_device
from grpo_core.policy.load import load_policy, load_tokenizer
from grpo_core.rollout import close_engine, make_engine
from grpo_core.rollout.base import SamplingParams
from grpo_core.store import Store
from prm.batch import Kind
from prm.data import LabelledSolution, solutions_from_rows
from prm.label import LabelRow, label_agreement, label_solutions
from prm.model import RM_INFO, RewardModel
from prm.train import mix_replay, train

log = logging.getLogger("prm")


def label_policy_samples(
    cfg: ExperimentConfig,
    policy_dir: Path,
    problems: Sequence[Problem],
    store: Store | None,
    run_id: str,
    iteration: int,
) -> list[LabelRow]:
    """Sample solutions of the policy in `policy_dir` and label their steps (Math-Shepherd).

    Draws min(iterative.label_problems, len(problems)) problems (seeded by prm.seed
    and the iteration), prm.samples_per_problem solutions each at the rollout
    temperature, then prm.n_completions continuations per step prefix. Writes
    the rows (store.write_prm_labels) and the labelling metrics at epoch 0
    (store.write_prm_metrics): agreement with exact labels, throughput.
    """
    p = cfg.prm
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    model, tok = load_policy(policy_dir, device=device)
    engine = make_engine(cfg.rollout, model, tok)
    chosen = random.Random(derive_seed(p.seed, iteration, 1)).sample(list(problems), min(cfg.iterative.label_problems,
                                                                                   len(problems)))
    prompts = [format_prompt(q, cfg.task.prompt_template) for q in chosen]
    params = SamplingParams(n=p.samples_per_problem, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                            max_new_tokens=cfg.rollout.max_new_tokens, seed=derive_seed(p.seed, iteration, 2))
    try:
        with autocast(device, cfg.precision):  # the forward passes of sampling and labelling
            samples = engine.generate(prompts, params)
            expanded = [q for q in chosen for _ in range(p.samples_per_problem)]
            t1 = time.perf_counter()
            rows = label_solutions(engine, expanded, samples, n_completions=p.n_completions,
                                   prompt_template=cfg.task.prompt_template, delimiter=p.step_tag,
                                   max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                                   top_p=cfg.rollout.top_p, seed=derive_seed(p.seed, iteration, 3))
    finally:
        close_engine(engine)  # a vLLM engine holds its KV cache and process group until closed
    t2 = time.perf_counter()
    metrics = label_metrics(rows, sample_s=t1 - t0, label_s=t2 - t1)
    log.info("labelled %d steps of %d solutions in %.1fs", len(rows), len(samples), t2 - t0)
    if store is not None:
        store.write_prm_labels(rows, run_id=run_id, iteration=iteration)
        store.write_prm_metrics(metrics, run_id=run_id, iteration=iteration, epoch=0)
    return rows


def label_metrics(rows: Sequence[LabelRow], *, sample_s: float, label_s: float) -> dict[str, float]:
    """'prm/label_*' metrics of one labelling: agreement with exact labels (finite ones), rates, speed."""
    n = len(rows)
    out = {
        "prm/label_steps": float(n),
        "prm/label_solutions": float(len({r["solution_index"] for r in rows})),
        "prm/label_hard_rate": sum(bool(r["hard"]) for r in rows) / n if n else 0.0,
        "prm/label_soft_mean": sum(float(r["soft"]) for r in rows) / n if n else 0.0,
        "prm/label_steps_per_s": n / label_s if label_s > 0 else 0.0,
        "prm/label_sample_s": sample_s,
        "prm/label_s": label_s,
    }
    for k, v in label_agreement(rows).items():
        if v == v:  # NaN (no exact labels) is left out
            out[f"prm/label_{k}"] = v
    return out


def split_holdout(solutions: Sequence[LabelledSolution], fraction: float, seed: int
                  ) -> tuple[list[LabelledSolution], list[LabelledSolution]]:
    """(train, held-out): round(fraction * #problems) whole problems held out (seeded)."""
    problems = sorted({s.problem_id for s in solutions})
    k = int(fraction * len(problems) + 0.5)
    if fraction > 0 and len(problems) > 1:
        k = min(max(k, 1), len(problems) - 1)  # keep at least one problem on each side
    held = set(random.Random(seed).sample(problems, k)) if k else set()
    return [s for s in solutions if s.problem_id not in held], [s for s in solutions if s.problem_id in held]


def init_reward_model(init_dir: Path, kind: Kind, version: str, surprise: bool) -> tuple[RewardModel, Any]:
    """Continue a saved RM (a dir with reward_model.json) or start one on a model dir's backbone;
    `surprise` is prm.surprise_features, which a continued RM must match."""
    init_dir = Path(init_dir)
    if (init_dir / RM_INFO).is_file():
        model = RewardModel.load(init_dir)
        if model.kind != kind:
            raise ValueError(f"{init_dir} holds a {model.kind!r} reward model, asked to train a {kind!r} one")
        if bool(model.features) != surprise:
            raise ValueError(
                f"prm.surprise_features={surprise} but the reward model in {init_dir} was trained "
                f"{'with' if model.features else 'without'} them: set prm.surprise_features={bool(model.features)} "
                "or start from a model dir"
            )
        model.version = version
    else:
        model = RewardModel.from_pretrained(init_dir, kind=kind, version=version, surprise=surprise)
    return model, load_tokenizer(init_dir)


def train_reward_model(
    cfg: ExperimentConfig,
    init_dir: Path,
    labels: Sequence[Mapping[str, Any]],
    replay_labels: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    kind: Kind = "process",
    eval_labels: Sequence[Mapping[str, Any]] | None = None,
    version: str | None = None,
) -> tuple[Path, dict[int, dict[str, float]]]:
    """Train (or continue) a reward model and save it with its tokenizer in `out_dir`.

    labels: this iteration's rows; replay_labels: all earlier rows, of which a
    prm.replay_fraction share of solutions is mixed in. Held-out solutions are
    `eval_labels` if given, else prm.eval_fraction of the new problems.
    Returns (out_dir, {epoch: metrics}), metrics namespaced 'prm/' or 'orm/'.
    """
    p = cfg.prm
    torch.manual_seed(p.seed)
    new = solutions_from_rows(labels, p.step_tag)
    old = solutions_from_rows(replay_labels, p.step_tag)
    if eval_labels is None:
        new, held = split_holdout(new, p.eval_fraction, p.seed)
    else:
        held = solutions_from_rows(eval_labels, p.step_tag)
    mixed = mix_replay(new, old, p.replay_fraction, p.seed)
    out_dir = Path(out_dir)
    model, tok = init_reward_model(Path(init_dir), kind, version or f"{kind}:{out_dir.name}", p.surprise_features)
    model.to(resolve_device(cfg.device))  # with its frozen surprise reference; batches follow (prm.train)
    log.info("training %s RM on %d solutions (%d new, %d replayed), %d held out", kind, len(mixed), len(new),
             len(mixed) - len(new), len(held))
    metrics = train(model, tok, mixed, held, p, delimiter=p.step_tag)
    prefix = "prm" if kind == "process" else "orm"
    for m in metrics.values():
        m[f"{prefix}/replayed_solutions"] = float(len(mixed) - len(new))
    model.save(out_dir, tokenizer=tok)
    return out_dir, metrics
