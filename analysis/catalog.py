"""The DuckDB catalog over a store root: a view per store table, plus the views and table macros in analysis/sql/.

`{root}/catalog.duckdb` holds only definitions: the data stay in the Parquet files that
`grpo_core.store.Store` writes, read through `read_parquet(glob, union_by_name = true)` with each table's
glob from its spec in `grpo_core.store.tables`. Writers never open the catalog, so analysis runs while
training writes; the globs end in `.parquet` and the writer's temp files do not, so a half-written file
is never read.

Every connect (re)defines, in order:
  _runs_files, _rollouts_files, _step_metrics_files, one-line views over the globs (united by name with
  _prm_labels_files, _prm_metrics_files,             an empty table typed from the spec, so a column that
  _sweeps_files, _trials_files                       older files lack reads as null), or over that empty
                                                     table alone while a glob matches nothing
  runs, rollouts, step_metrics,                      a view per table: sql/{name}.sql where the view
  prm_labels, prm_metrics, sweeps, trials            derives columns, else the files as they are;
                                                     commented from the spec (duckdb_views().comment,
                                                     duckdb_columns().comment)
  step_metrics_wide, evals, curves,                  derived views
  run_info, global_step(...), run_curves, run_evals  (global_step: a scalar macro)
  pass_at_k_per_problem(k), pass_at_k(k),            table macros
  maj_at_k_per_problem(k, partitions := 8),
  maj_at_k(k),
  eval_at_k(k), iteration_gains(k),
  outcome_vs_process(run_ids := null),
  problem_scores(k),
  paired_scores(k, run_a, iteration_a, run_b, iteration_b)

DuckDB lets one process at a time open a database file (see DEPENDENCIES.md). When another process
holds catalog.duckdb, `connect` falls back to an in-memory database with the same views, so queries
always work; only objects a user saved in the catalog file are then out of reach.
With read_only=True the file is opened read-only (several readers may share it) and the definitions are
made as temporary objects, which take precedence over the stored ones.

For the duckdb CLI, `write_cli_script(root)` writes the same definitions as plain SQL,
{root}/catalog.sql, with the Parquet globs relative to the store: `cd runs/store && duckdb -init
catalog.sql` (or `.read catalog.sql`) defines everything in the CLI's own in-memory database. A CLI of
another DuckDB version cannot open catalog.duckdb (its storage version differs), but reads the script
and the Parquet files; the script keeps working when the store is copied or moved.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from grpo_core.store.tables import TABLES, TableSpec

__all__ = ["CATALOG_FILE", "CLI_SCRIPT", "SQL_DIR", "cli_script", "connect", "load_sql", "query",
           "write_cli_script"]

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.duckdb"
CLI_SCRIPT = "catalog.sql"
SQL_DIR = Path(__file__).with_name("sql")

# Defined after the store tables' views, in this order (later ones read earlier ones).
DERIVED = (
    "step_metrics_wide",  # needs the metric names, so it is defined once the tables' views read the files
    "evals",
    "curves",
    "run_info",
    "global_step",
    "run_curves",
    "run_evals",
    "pass_at_k_per_problem",
    "pass_at_k",
    "maj_at_k_per_problem",
    "maj_at_k",
    "eval_at_k",
    "iteration_gains",
    "outcome_vs_process",
    "problem_scores",
    "paired_scores",
)

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_CREATE = re.compile(r"^create or replace (view|macro) ", re.IGNORECASE | re.MULTILINE)


def load_sql(name: str) -> str:
    """The text of analysis/sql/{name}.sql."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a SQL definition name: {name!r}")
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        known = sorted(p.stem for p in SQL_DIR.glob("*.sql"))
        raise FileNotFoundError(f"no SQL definition {name!r} in {SQL_DIR}; known: {known}")
    return path.read_text()


def connect(root: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open {root}/catalog.duckdb (created if missing, unless read_only) with every view and macro defined.

    Falls back to an in-memory database with the same definitions when the file is held by another
    process (or, with read_only, does not exist yet).
    """
    root = Path(root).resolve()
    con, temporary = _open(root, read_only=read_only)
    try:
        con.execute("begin transaction")  # one commit for all definitions, not one per statement
        _define(con, root, temporary=temporary)
        con.execute("commit")
    except BaseException:
        con.close()
        raise
    return con


def query(root: Path, sql: str, params: dict | None = None) -> pa.Table:
    """Run one statement against a fresh catalog connection of `root` and return its rows as Arrow.

    `params` binds `$name` parameters: query(root, "from pass_at_k($k)", {"k": 8}).
    Opens the catalog read-only, so any number of query() calls and one writer-less reader can share it.
    """
    con = connect(root, read_only=True)
    try:
        rel = con.sql(sql, params=params)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    finally:
        con.close()


def cli_script(root: Path) -> str:
    """Every definition of `connect` as one SQL script for the duckdb CLI, globs relative to `root`
    (run the CLI from the store's directory). Tables whose glob matches no file yet, and metric
    columns of step_metrics_wide, are as they are now: rewrite the script after new data arrive."""
    root = Path(root).resolve()
    con = connect(root, read_only=True)
    try:
        out = [f"-- The store's views and macros for the duckdb CLI (written by `grpo sql --cli-script`).\n"
               f"-- Paths are relative to the store: cd {root} && duckdb -init {CLI_SCRIPT}"]
        for spec in TABLES.values():
            columns = ", ".join(f'"{name}" {kind}' for name, kind, *_ in
                                con.execute(f"describe _{spec.name}_empty").fetchall())
            out.append(f"create or replace table _{spec.name}_empty ({columns})")
            source = f"from _{spec.name}_empty"
            if next(root.glob(spec.glob), None) is not None:
                source = f"from read_parquet({_literal(spec.glob)}, union_by_name = true) union all by name " + source
            out.append(f"create or replace view _{spec.name}_files as {source}")
            out.append(_ddl(spec.name, False) if (SQL_DIR / f"{spec.name}.sql").exists()
                       else f"create or replace view {spec.name} as from _{spec.name}_files")
            out.append(_comments(con, spec))
        out += [_step_metrics_wide(con, False) if name == "step_metrics_wide" else _ddl(name, False)
                for name in DERIVED]
    finally:
        con.close()
    return "\n\n".join(text.strip().rstrip(";") + "\n;" for text in out) + "\n"  # ';' after a trailing comment


def write_cli_script(root: Path) -> Path:
    """Write cli_script(root) to {root}/catalog.sql; returns its path."""
    path = Path(root) / CLI_SCRIPT
    path.write_text(cli_script(root))
    return path


def _open(root: Path, *, read_only: bool) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """(connection, whether definitions must be temporary)."""
    path = root / CATALOG_FILE
    if read_only and not path.exists():
        return duckdb.connect(":memory:"), False
    if not read_only:
        root.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only), read_only
    except duckdb.IOException as e:  # "Could not set lock on file ...": another process holds it
        if "lock" not in str(e).lower():
            raise
        reason = str(e).split("See also")[0].strip()
    except duckdb.ConnectionException as e:  # this process holds it with other settings (read_only)
        reason = str(e)
    log.warning("%s is in use (%s); using an in-memory catalog with the same views", path, reason)
    return duckdb.connect(":memory:"), False


def _define(con: duckdb.DuckDBPyConnection, root: Path, *, temporary: bool) -> None:
    """Create every definition. DuckDB binds a view or macro when it is created, and binding
    read_parquet(..., union_by_name = true) reads the footer of every file; so everything is first
    defined over the empty typed tables (cheap), and only then are the _{name}_files views pointed at
    the files. Views are re-bound when queried, so they then read the files."""
    temp = "temp " if temporary else ""
    for spec in TABLES.values():
        con.register("_empty_arrow", spec.schema.empty_table())
        con.execute(f"create or replace {temp}table _{spec.name}_empty as from _empty_arrow")
        con.unregister("_empty_arrow")
        con.execute(f"create or replace {temp}view _{spec.name}_files as from _{spec.name}_empty")
        if (SQL_DIR / f"{spec.name}.sql").exists():
            con.execute(_ddl(spec.name, temporary))
        else:
            con.execute(f"create or replace {temp}view {spec.name} as from _{spec.name}_files")
        con.execute(_comments(con, spec))
    for name in DERIVED:
        if name != "step_metrics_wide":
            con.execute(_ddl(name, temporary))
    for spec in TABLES.values():
        if next(root.glob(spec.glob), None) is not None:  # read_parquet fails on a glob that matches nothing
            source = f"read_parquet({_literal(root / spec.glob)}, union_by_name = true)"
            con.execute(f"create or replace {temp}view _{spec.name}_files as "
                        f"from {source} union all by name from _{spec.name}_empty")
    con.execute(_step_metrics_wide(con, temporary))


def _step_metrics_wide(con: duckdb.DuckDBPyConnection, temporary: bool) -> str:
    """sql/step_metrics_wide.sql with the metric names now in step_metrics spelled out."""
    metrics = [m for (m,) in con.execute("select distinct metric from step_metrics order by metric").fetchall()]
    return _ddl("step_metrics_wide", temporary).replace("{{ metrics }}", ", ".join(_literal(m) for m in metrics))


def _comments(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> str:
    """The spec's docs as comment statements on its view: the table's on the view, each stored column's
    on the view column of that name. Columns the view derives are commented by its sql/{name}.sql."""
    shown = {column for (column, *_) in con.execute(f"describe {spec.name}").fetchall()}
    statements = [f"comment on view {spec.name} is {_literal(spec.doc)}"]
    statements += [
        f"comment on column {spec.name}.{c.name} is {_literal(c.doc)}" for c in spec.columns if c.name in shown
    ]
    return ";\n".join(statements)


def _ddl(name: str, temporary: bool) -> str:
    """The definition in sql/{name}.sql, made temporary when the catalog file is read-only."""
    sql = load_sql(name)
    if temporary:
        sql = _CREATE.sub(lambda m: f"create or replace temp {m.group(1)} ", sql, count=1)
    return sql


def _literal(value: object) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"
