"""Bench: rollout throughput of the vLLM and HF engines on the same policy and sampling settings, and one weight push.

    .venv/bin/python bench/bench_engines.py [--repeats N] [--rounds N] [section.field=value ...]

Policy: the embedded default (configs/default.yaml, cached under runs/models).
A round is one GRPO step's rollout: B questions x G samples at the rollout
temperature and length cap, from `make_engine` exactly as the trainer builds
it. Each engine runs in a fresh process of its own, as it would in training:
starting vLLM pins the process's OpenMP threads, which also speeds up HF
`generate` in that process, so sharing one process would flatter HF. The
processes alternate (HF, vLLM, HF, vLLM, ...) `--repeats` times so both see the
same load on the shared cores. In each: one warm-up round (vLLM compiles its
log-prob op on first use), then `--rounds` timed rounds with fresh seeds.
Throughput is generated tokens (EOS included) per wall second of `generate`
(tokenising and decoding included). The weight push is `sync_weights`
(reload in place + prefix-cache reset), median of 5 per vLLM process.
Target: vLLM >= 1.5x HF tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.config import load_config  # noqa: E402
from grpo_core.data.loaders import format_prompt  # noqa: E402
from grpo_core.data.sampling import sample_questions  # noqa: E402
from grpo_core.pipeline.stages import load_data, policy_dir  # noqa: E402
from grpo_core.policy.load import load_policy  # noqa: E402
from grpo_core.rollout import close_engine, make_engine  # noqa: E402
from grpo_core.rollout.base import SamplingParams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("hf", "vllm")


def measure(engine_name: str, rounds: int, overrides: list[str]) -> dict[str, float]:
    """One process's measurement: tokens and seconds over `rounds` timed rounds (+ start and push times)."""
    cfg = load_config(REPO / "configs/default.yaml", ["logging.progress=false", f"rollout.engine={engine_name}",
                                                      *overrides])
    path = policy_dir(cfg)
    train, _ = load_data(cfg)
    g, r = cfg.grpo, cfg.rollout
    model, tok = load_policy(path)
    t0 = time.perf_counter()
    engine = make_engine(r, model, tok, model_path=path)
    out: dict[str, float] = {"start_s": time.perf_counter() - t0, "tokens": 0, "seconds": 0.0}
    for i in range(rounds + 1):  # round 0 warms up
        prompts = [format_prompt(p, cfg.task.prompt_template) for p in sample_questions(train.problems,
                                                                                        g.questions_per_step, i)]
        params = SamplingParams(n=g.group_size, temperature=r.temperature, top_p=r.top_p,
                                max_new_tokens=r.max_new_tokens, seed=i)
        t0 = time.perf_counter()
        batch = engine.generate(prompts, params)
        if i:
            out["seconds"] += time.perf_counter() - t0
            out["tokens"] += sum(len(ids) for ids in batch.completion_ids)
    if engine_name == "vllm":
        pushes = []
        for _ in range(5):
            t0 = time.perf_counter()
            engine.sync_weights(model)
            pushes.append(time.perf_counter() - t0)
        out["push_ms"] = statistics.median(pushes) * 1000
        out["n_params"] = sum(p.numel() for p in model.parameters())
    close_engine(engine)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="processes per engine, alternating")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per process (after one warm-up)")
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)  # child mode: measure, print JSON
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.engine:
        print("RESULT " + json.dumps(measure(args.engine, args.rounds, args.overrides)))
        return
    cfg = load_config(REPO / "configs/default.yaml", args.overrides)
    policy_dir(cfg)  # build the policy once, before the children race for it
    g, r = cfg.grpo, cfg.rollout
    print(f"B={g.questions_per_step} x G={g.group_size}, T={r.temperature}, top_p={r.top_p}, "
          f"max_new_tokens={r.max_new_tokens}; {args.repeats} processes x {args.rounds} timed rounds per engine")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ENGINES}
    for _ in range(args.repeats):
        for name in ENGINES:
            proc = subprocess.run([sys.executable, __file__, "--engine", name, "--rounds", str(args.rounds),
                                   *args.overrides], capture_output=True, text=True, check=True)
            line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
            results[name].append(json.loads(line.removeprefix("RESULT ")))
    rates = {}
    for name, runs in results.items():
        rates[name] = sum(x["tokens"] for x in runs) / sum(x["seconds"] for x in runs)
        per_process = ", ".join(f"{x['tokens'] / x['seconds']:.0f}" for x in runs)
        start = statistics.median(x["start_s"] for x in runs)
        print(f"  {name:<5} {rates[name]:8.1f} tokens/s (per process: {per_process}); "
              f"engine start {start:.1f} s median")
    v = results["vllm"]
    print(f"  weight push (reload in place + prefix-cache reset, {v[0]['n_params'] / 1e6:.2f} M params): "
          f"{statistics.median(x['push_ms'] for x in v):.1f} ms median")
    ratio = rates["vllm"] / rates["hf"]
    print(f"vLLM / HF throughput: {ratio:.2f}x (target >= 1.5x): {'met' if ratio >= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
