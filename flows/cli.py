"""`grpo`: the command line. Each subcommand runs one stage or pipeline.

    grpo bootstrap [--config F] [key=value ...]   build/reuse the embedded policy, report held-out accuracy
    grpo run       [--config F] [key=value ...]   the iterative pipeline (flow grpo/iterative): the main job
    grpo train     [--config F] [key=value ...]   one GRPO run (flow grpo/single): policy, eval, GRPO, eval
    grpo prm       [--config F] [key=value ...]   label policy samples and train the PRM (flow prm/train)
    grpo report    RUN_ID ... [--out DIR] [--resamples B] [--ci-seed S] [key=value ...]   the RL-effects report
    grpo sweep     [--config F] [key=value ...]   an Optuna sweep over G, beta, epsilon (flow sweep/optuna)
    grpo experiment --config F [key=value ...]    arms x seeds, then their report (flow experiment/replicates)
    grpo sql "SELECT ..." [--csv F | --parquet F] query the store's DuckDB views
    grpo sql                                      an interactive duckdb shell with the views defined
    grpo config    [--config F] [--docs] [...]    print the resolved configuration as YAML

Overrides are dotted YAML values: `grpo.beta=0.0 grpo.group_size=16`, before or after the options.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

from flows.settings import apply_offline_defaults

apply_offline_defaults()  # before torch or Prefect is imported

from rich.table import Table

from grpo_core.config import ConfigError, ExperimentConfig, commented_yaml, load_config
from grpo_core.provenance import CodeChangedError

console = Console()
# Piped output (`grpo sql ... | less -S`, a file) is not squeezed to 80 columns: tables keep their width.
wide = console if console.is_terminal else Console(width=100_000)

DUCKDB_CLI = "duckdb-cli==1.5.6"  # the pinned CLI of the dev extra (pyproject.toml)


class CommandError(Exception):
    """A mistake in what the user asked for: only its message is printed."""

EXAMPLE_SQL = (
    "SELECT step, avg(reward) AS reward, avg(correct::INT) AS accuracy, avg(n_tokens) AS length "
    "FROM rollouts WHERE split = 'train' AND run_id = '{run_id}' GROUP BY step ORDER BY step"
)


def _config(args: argparse.Namespace) -> ExperimentConfig:
    allow = ["store.allow_code_change=true"] if getattr(args, "allow_code_change", False) else []
    return load_config(args.config, [*args.overrides, *allow])


def cmd_config(args: argparse.Namespace) -> None:
    cfg = _config(args)
    text = commented_yaml(cfg) if args.docs else yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    print(text)


def cmd_bootstrap(args: argparse.Namespace) -> None:
    from grpo_core.pipeline.stages import evaluate_policy, load_data, policy_dir, run_id_for
    from grpo_core.store import Store
    from grpo_core.store.records import RunKey

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
    if "report" in result:
        console.print(f"report: {result['report']['html']} (and report.md beside it)")
    if cfg.logging.wandb:
        runs = (cfg.store.runs_dir / result["run_id"]).resolve()
        console.print(f"W&B ({cfg.logging.wandb_mode or os.environ.get('WANDB_MODE') or 'offline'}, group "
                      f"{result['run_id']}): each iteration's training and evaluation runs in {runs}/it00N/wandb "
                      f"(it000: the evaluation before RL); upload offline runs folder by folder: "
                      f"wandb sync {runs}/it001/wandb",
                      soft_wrap=True)


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


def cmd_prm(args: argparse.Namespace) -> None:
    from flows.prm import prm_train

    cfg = _config(args)
    t0 = time.perf_counter()
    result = prm_train(cfg)
    table = Table(title=f"PRM {result['run_id']}: {result['label_steps']} labelled steps, "
                        f"{time.perf_counter() - t0:.0f}s")
    table.add_column("metric (last epoch)")
    table.add_column("value", justify="right")
    for metric, value in sorted(result["metrics"].items()):
        table.add_row(metric, f"{value:.4g}")
    console.print(table)
    console.print(f"reward model: {result['reward_model']}")


def cmd_report(args: argparse.Namespace) -> None:
    """The report straight from analysis.report (seconds; the flow analysis/report adds a Prefect artifact)."""
    from analysis.report import default_report_dir, write_report

    run_ids = [a for a in args.items if "=" not in a]  # run ids never contain '='; overrides always do
    if not run_ids:
        raise ConfigError("grpo report needs at least one run id (see: grpo sql \"select run_id from runs\")")
    flags = [f"report.{name}={value}" for name, value in (("resamples", args.resamples), ("seed", args.ci_seed))
             if value is not None]
    cfg = load_config(args.config, [a for a in args.items if "=" in a] + flags)
    try:
        paths = write_report(cfg.store.root, run_ids, args.out or default_report_dir(cfg.store.runs_dir, run_ids),
                             cfg.report)
    except ValueError as err:  # an unknown run id: the message lists the known ones
        raise ConfigError(str(err)) from err
    console.print(f"report: {paths.markdown}\n        {paths.html} (self-contained, figures embedded)")


def cmd_sweep(args: argparse.Namespace) -> None:
    from analysis.catalog import query
    from flows.sweep import sweep

    cfg = _config(args)
    t0 = time.perf_counter()
    result = sweep(cfg)
    rows = query(cfg.store.root, "SELECT trial_number, state, params, value, wall_s, run_id FROM trials "
                 "WHERE sweep = $sweep ORDER BY trial_number", {"sweep": cfg.sweep.name}).to_pylist()
    table = Table(title=f"sweep {result['study']}: {result['n_trials']} trials, {time.perf_counter() - t0:.0f}s")
    for col in ("trial", "state", "values", "objective", "wall s", "run"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["trial_number"]), r["state"], r["params"], "" if r["value"] is None else f"{r['value']:.4f}",
                      "" if r["wall_s"] is None else f"{r['wall_s']:.0f}", r["run_id"] or "")
    wide.print(table)
    tied = [r["trial_number"] for r in rows if r["state"] == "COMPLETE" and r["value"] == result["best_value"]]
    best = (f"best trial {result['best_trial']} ({result['best_value']})" if len(tied) <= 1 else
            f"{len(tied)} trials tie for the best ({result['best_value']}): " + ", ".join(map(str, tied)))
    console.print(f"{best}; report: {result['report']}", soft_wrap=True)
    console.print(f"dashboard: optuna-dashboard {result['storage']}", soft_wrap=True)


def cmd_experiment(args: argparse.Namespace) -> None:
    from flows.experiment import experiment

    cfg = _config(args)
    t0 = time.perf_counter()
    result = experiment(cfg)
    table = Table(title=f"experiment {result['experiment']}: {len(result['runs'])} runs, "
                        f"{time.perf_counter() - t0:.0f}s")
    for col in ("arm", "seed", "run", "status", "this time"):
        table.add_column(col)
    for r in result["runs"]:
        table.add_row(r["arm"], str(r["seed"]), r["run_id"], r["status"] or "", "ran" if r["ran"] else "done before")
    wide.print(table)
    for sentence in result["summary"]:
        console.print(f"- {sentence}", soft_wrap=True)
    console.print(f"report: {result['report']} (and report.md beside it)", soft_wrap=True)
    if result["failed"]:
        raise CommandError(f"{len(result['failed'])} runs failed: {', '.join(result['failed'])} (logs: "
                           f"{cfg.store.runs_dir / 'experiments' / cfg.experiment.name / 'runs'}/ARM-sSEED/run.log)")


def cmd_sql(args: argparse.Namespace) -> None:
    import duckdb
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from analysis.catalog import query

    if args.query is not None and re.match(r"[A-Za-z_][\w.]*=", args.query):  # `grpo sql store.root=DIR`: no query
        args.overrides, args.query = [args.query, *args.overrides], None
    root = load_config(args.config, args.overrides).store.root
    if args.query is None:
        shell(root)
        return
    try:
        result = query(root, args.query)
    except duckdb.Error as err:  # DuckDB's own message says what is wrong with the SQL
        raise CommandError(str(err)) from None
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
        wide.print(table)
        if result.num_rows > args.limit:
            console.print(f"({result.num_rows} rows, first {args.limit} shown; --limit N for more)")
    if result.num_rows == 0:
        console.print(f"0 rows{unknown_runs(root, args.query)}", highlight=False, soft_wrap=True)


def unknown_runs(root: Path, sql: str) -> str:
    """'; no run 'x' in the store (its runs: a, b)' when `sql` names run ids the store does not hold, else ''."""
    from analysis.catalog import query

    if "run_id" not in sql.lower():
        return ""
    known = [r["run_id"] for r in query(root, "SELECT run_id FROM runs ORDER BY run_id").to_pylist()]
    named = [text.replace("''", "'") for text in re.findall(r"'((?:[^']|'')*)'", sql)]
    missing = [t for t in named if t not in known and re.fullmatch(r"[\w.+-]+-[0-9a-f]{8}", t)]
    if not missing:
        return ""
    return (f"; no run {', '.join(map(repr, missing))} in the store {Path(root).resolve()} "
            f"(its runs: {', '.join(known) or 'none'})")


def shell(root: Path) -> None:
    """The duckdb CLI in the store's directory with the catalog's views and macros defined (catalog.sql)."""
    from analysis.catalog import CLI_SCRIPT, write_cli_script

    script = write_cli_script(root).resolve()
    cli = shutil.which("duckdb") or shutil.which("duckdb", path=str(Path(sys.executable).parent))
    if cli is None:
        raise CommandError(f"wrote {script}; no duckdb CLI on PATH to open it with: `pip install {DUCKDB_CLI}` "
                           f"(in the dev extra), then: cd {Path(root).resolve()} && duckdb -init {CLI_SCRIPT}")
    console.print(f"duckdb shell on {Path(root).resolve()} (views from {script}; .quit to leave)", highlight=False,
                  soft_wrap=True)
    sys.stdout.flush()  # exec replaces the process: nothing buffered may be left behind
    os.chdir(root)
    os.execv(cli, [cli, "-init", CLI_SCRIPT])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. grpo.beta=0.0")
        p.add_argument("--allow-code-change", action="store_true",
                       help="continue a run that other code started (store.allow_code_change=true)")
        return p

    cfg = with_config(sub.add_parser("config", help="print the resolved configuration"))
    cfg.add_argument("--docs", action="store_true", help="annotate every key with its doc and range")
    cfg.set_defaults(fn=cmd_config)
    with_config(sub.add_parser("bootstrap", help="build the embedded policy")).set_defaults(fn=cmd_bootstrap)
    with_config(sub.add_parser("run", help="the iterative pipeline (flow grpo/iterative): the main job")).set_defaults(
        fn=cmd_run)
    with_config(sub.add_parser("train", help="one GRPO run (flow grpo/single)")).set_defaults(fn=cmd_train)
    with_config(sub.add_parser("prm", help="label policy samples and train the PRM (flow prm/train)")).set_defaults(
        fn=cmd_prm)
    rep = sub.add_parser("report", help="the RL-effects report of runs (flow analysis/report)")
    rep.add_argument("items", nargs="+", metavar="RUN_ID|key=value", help="run ids, then optional config overrides")
    rep.add_argument("--out", type=Path, help="output dir (default: <runs_dir>/<run_id>/report)")
    rep.add_argument("--config", type=Path, default=None, help="YAML config giving store.root and runs_dir")
    rep.add_argument("--resamples", type=int, help="bootstrap resamples of every interval (report.resamples)")
    rep.add_argument("--ci-seed", type=int, help="seed of the bootstrap draws (report.seed)")
    rep.set_defaults(fn=cmd_report)
    with_config(sub.add_parser("sweep", help="an Optuna sweep over GRPO knobs (flow sweep/optuna)")).set_defaults(
        fn=cmd_sweep)
    with_config(sub.add_parser("experiment", help="arms x seeds and their report (flow experiment/replicates)")
                ).set_defaults(fn=cmd_experiment)
    sql = sub.add_parser("sql", help="run SQL over the store (no query: a duckdb shell with the views)")
    sql.add_argument("query", nargs="?", help="SQL over the views runs, rollouts, step_metrics, evals, ... "
                     "(none: the duckdb CLI in the store's directory, views from catalog.sql)")
    sql.add_argument("--csv", type=Path, help="write the result as CSV")
    sql.add_argument("--parquet", type=Path, help="write the result as Parquet")
    sql.add_argument("--limit", type=int, default=50, help="rows to print")
    with_config(sql).set_defaults(fn=cmd_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes positionals in one run: key=value overrides after an option arrive here
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) < len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except (ConfigError, CodeChangedError, CommandError) as err:
        console.print(str(err), style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
