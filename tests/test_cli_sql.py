"""`grpo sql` as a person uses it: overrides anywhere, DuckDB's own error message, a word on an unknown
run id, full-width tables when piped, and with no query the real duckdb CLI with the views defined."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from grpo_core.store import Store
from tests.test_analysis_sql import DUCKDB_CLI, eval_samples

GRPO = Path(sys.executable).with_name("grpo")
LONG = "x" * 150  # wider than the 80 columns a console assumes when it is not a terminal


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """One run, 'r1-0123abcd', with a 150-character name and one evaluation."""
    s = Store(tmp_path / "store")
    s.write_run("r1-0123abcd", trial_id=None, name=LONG, config={"grpo": {"steps": 3}})
    s.write_rollouts(eval_samples("p", ["4", "5"]), run_id="r1-0123abcd", iteration=0, step=0, split="eval")
    return tmp_path / "store"


def test_overrides_may_follow_the_options(store, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["sql", "SELECT run_id FROM runs", "--csv", str(out), f"store.root={store}"]) == 0
    assert out.read_text().splitlines() == ['"run_id"', '"r1-0123abcd"']
    assert "1 rows -> " in capsys.readouterr().out


def test_an_sql_error_prints_duckdbs_message_not_a_traceback(store, capsys):
    assert main(["sql", "SELEC run_id FROM runs", f"store.root={store}"]) == 2
    said = capsys.readouterr().out
    assert said.startswith("Parser Error: syntax error at or near \"SELEC\"") and "Traceback" not in said
    assert len(said.splitlines()) <= 5


def test_an_unknown_run_id_is_named_with_the_known_ones(store, capsys):
    assert main(["sql", "SELECT * FROM evals WHERE run_id = 'r2-0123abcd'", f"store.root={store}"]) == 0
    assert f"0 rows; no run 'r2-0123abcd' in the store {store} (its runs: r1-0123abcd)" in capsys.readouterr().out


def test_piped_tables_keep_their_width(store):
    piped = subprocess.run([str(GRPO), "sql", "SELECT run_id, name FROM runs", f"store.root={store}"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert any("r1-0123abcd" in line and LONG in line for line in piped.splitlines()), piped


def test_no_query_opens_the_duckdb_cli_with_the_views(store, tmp_path):
    assert DUCKDB_CLI.exists()
    shell = subprocess.run([str(GRPO), "sql", f"store.root={store}"], input="SELECT count(*) AS n FROM evals;\n",
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr
    assert f"duckdb shell on {store} (views from {store / 'catalog.sql'}" in shell.stdout, shell.stdout
    assert "│     1 │" in shell.stdout.splitlines()  # the CLI's own table: one evaluation
    assert (store / "catalog.sql").exists()
