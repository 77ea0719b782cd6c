"""`grpo`: the command line. Each subcommand runs one stage or pipeline.

    grpo bootstrap [--config F] [key=value ...]   build/reuse the embedded policy, report held-out accuracy
    grpo run       [--config F] [key=value ...]   the iterative pipeline (flow grpo/iterative): the main job
    grpo train     [--config F] [key=value ...]   one GRPO run (flow grpo/single): policy, eval, GRPO, eval
    grpo sql "SELECT ..." [--csv F | --parquet F] query the store's DuckDB views
    grpo config    [--config F] [--docs] [...]    print the resolved configuration as YAML

Overrides are dotted YAML values: `grpo.beta=0.0 grpo.group_size=16`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

from flows.settings import apply_offline_defaults

apply_offline_defaults()  # before torch or Prefect is imported

from rich.table import Table

from grpo_core.config import ConfigError, ExperimentConfig, commented_yaml, load_config

console = Console()

EXAMPLE_SQL = (
    "SELECT step, avg(reward) AS reward, avg(correct::INT) AS accuracy, avg(n_tokens) AS length "
    "FROM rollouts WHERE split = 'train' AND run_id = '{run_id}' GROUP BY step ORDER BY step"
)


def _config(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, args.overrides)


def cmd_config(args: argparse.Namespace) -> None:
    cfg = _config(args)
    text = commented_yaml(cfg) if args.docs else yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    print(text)


def cmd_bootstrap(args: argparse.Namespace) -> None:
    from grpo_core.pipeline import evaluate_policy, load_data, policy_dir, run_id_for
    from grpo_core.records import RunKey
    from grpo_core.store import Store

    cfg = _config(args)
    t0 = time.perf_counter()
    path = policy_dir(cfg)
    built = time.perf_counter() - t0
    _, test = load_data(cfg)
    key = RunKey(f"bootstrap-{run_id_for(cfg)}", None, 0, 0)
    result = evaluate_policy(cfg, path, test, Store(cfg.store.root), key, with_samples=False)
    console.print(f"policy: {path} (ready in {built:.1f}s)")
    console.print(
        f"held-out greedy accuracy {result.greedy_accuracy:.1%}, well-formed {result.wellformed_rate:.1%} "
        f"on {result.n_problems} problems"
    )


def _print_evals(result: dict, cfg: ExperimentConfig, wall: float) -> None:
    k = cfg.eval.k_max
    table = Table(title=f"run {result['run_id']}")
    for col in ("iteration", "greedy acc", "pass@1", f"pass@{k}", "maj@1", f"maj@{k}", "well-formed"):
        table.add_column(col)
    for it, e in sorted(result["evals"].items()):
        cells = [e["greedy_accuracy"], e.get("pass@1"), e.get(f"pass@{k}"), e.get("maj@1"), e.get(f"maj@{k}"),
                 e["wellformed_rate"]]
        table.add_row("before RL" if it == 0 else str(it), *("-" if c is None else f"{c:.1%}" for c in cells))
    console.print(table)
    console.print(f"wall time {wall:.0f}s; store: {cfg.store.root.resolve()}")
    console.print("query it, e.g.:")
    console.print(f'  .venv/bin/grpo sql "{EXAMPLE_SQL.format(run_id=result["run_id"])}"', soft_wrap=True)


def cmd_train(args: argparse.Namespace) -> None:
    from flows.grpo import grpo_single

    cfg = _config(args)
    t0 = time.perf_counter()
    result = grpo_single(cfg)
    _print_evals(result, cfg, time.perf_counter() - t0)


def cmd_run(args: argparse.Namespace) -> None:
    from flows.grpo import grpo_iterative

    cfg = _config(args)
    t0 = time.perf_counter()
    result = grpo_iterative(cfg)
    _print_evals(result, cfg, time.perf_counter() - t0)


def cmd_sql(args: argparse.Namespace) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from analysis.catalog import query

    root = load_config(args.config, args.overrides).store.root
    result = query(root, args.query)
    if args.csv:
        pacsv.write_csv(result, args.csv)
        console.print(f"{result.num_rows} rows -> {args.csv}")
    elif args.parquet:
        pq.write_table(result, args.parquet)
        console.print(f"{result.num_rows} rows -> {args.parquet}")
    else:
        table = Table()
        for name in result.column_names:
            table.add_column(name, overflow="fold")
        for row in result.to_pylist()[: args.limit]:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)
        if result.num_rows > args.limit:
            console.print(f"({result.num_rows} rows, first {args.limit} shown; --limit N for more)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.beta=0.0")
        return p

    cfg = with_config(sub.add_parser("config", help="print the resolved configuration"))
    cfg.add_argument("--docs", action="store_true", help="annotate every key with its doc and range")
    cfg.set_defaults(fn=cmd_config)
    with_config(sub.add_parser("bootstrap", help="build the embedded policy")).set_defaults(fn=cmd_bootstrap)
    with_config(sub.add_parser("run", help="the iterative pipeline (flow grpo/iterative): the main job")).set_defaults(
        fn=cmd_run)
    with_config(sub.add_parser("train", help="one GRPO run (flow grpo/single)")).set_defaults(fn=cmd_train)
    sql = sub.add_parser("sql", help="run SQL over the store")
    sql.add_argument("query", help="SQL over the views runs, rollouts, step_metrics, evals, ...")
    sql.add_argument("--csv", type=Path, help="write the result as CSV")
    sql.add_argument("--parquet", type=Path, help="write the result as Parquet")
    sql.add_argument("--limit", type=int, default=50, help="rows to print")
    with_config(sql).set_defaults(fn=cmd_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except ConfigError as err:
        console.print(f"[red]{err}[/red]")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
