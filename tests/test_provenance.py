"""Runs know their code: the fingerprint, the refusal to continue a run or checkpoint of other code,
and Prefect cache keys that change with the code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grpo_core import provenance
from grpo_core.config import load_config
from grpo_core.provenance import PACKAGES, CodeChangedError, check_same_code, code_fingerprint, source_digest

REPO = Path(__file__).resolve().parents[1]


def test_digest_covers_every_source_file_and_nothing_else(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "q.sql").write_text("select 1;\n")
    base = source_digest([pkg])
    assert source_digest([pkg]) == base  # deterministic
    (pkg / "README.md").write_text("docs do not change results\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert source_digest([pkg]) == base
    (pkg / "a.py").write_text("x = 1  # a comment is an edit too\n")
    edited = source_digest([pkg])
    assert edited != base
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "q.sql").rename(pkg / "q.sql")  # the same bytes under another path
    assert source_digest([pkg]) not in (base, edited)


def test_fingerprint_is_of_the_imported_packages():
    assert code_fingerprint().startswith("src-") and len(code_fingerprint()) == 16
    assert code_fingerprint()[4:] == source_digest(provenance.package_dirs())[:12]
    assert {d.name for d in provenance.package_dirs()} == set(PACKAGES)


def test_check_same_code_refuses_other_or_unrecorded_code_unless_allowed():
    check_same_code(code_fingerprint(), "run r", allow=False)  # same code: nothing to say
    for recorded in ("src-000000000000", None):
        with pytest.raises(CodeChangedError, match="store.allow_code_change=true") as err:
            check_same_code(recorded, "run r", allow=False)
        assert code_fingerprint() in str(err.value) and "run_name=" in str(err.value)
        check_same_code(recorded, "run r", allow=True)


SCRIPT = textwrap.dedent("""
    import sys
    import grpo_core
    from grpo_core.config import load_config
    from grpo_core.pipeline.stages import start_run
    from grpo_core.provenance import CodeChangedError, code_fingerprint
    from grpo_core.store import Store
    assert grpo_core.__file__.startswith(sys.argv[1]), grpo_core.__file__  # the copy, not the checkout
    cfg = load_config(None, [f"store.root={sys.argv[2]}", *sys.argv[3:]])
    try:
        run_id = start_run(cfg)
    except CodeChangedError as err:
        print("REFUSED", err)
        sys.exit(3)
    print("STARTED", run_id, code_fingerprint(), Store(cfg.store.root).read_run(run_id)["code_fingerprint"])
""")


def test_an_edited_copy_of_the_code_is_refused_the_run_it_did_not_start(tmp_path):
    src = tmp_path / "src"
    for name in PACKAGES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(src)}

    def start(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(store), *overrides], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    first = start()
    assert first.returncode == 0, first.stderr
    _, run_id, fingerprint, recorded = first.stdout.split()
    assert recorded == fingerprint
    again = start()  # unchanged code resumes its own run
    assert again.returncode == 0 and again.stdout.split()[2] == fingerprint, again.stderr
    loss = src / "grpo_core" / "maths" / "loss.py"
    loss.write_text(loss.read_text() + "\n# an uncommitted edit\n")
    refused = start()
    assert refused.returncode == 3, refused.stderr
    assert f"run {run_id} was produced by code {fingerprint}" in refused.stdout
    assert "store.allow_code_change=true" in refused.stdout
    allowed = start("store.allow_code_change=true")
    assert allowed.returncode == 0, allowed.stderr
    _, same_run, new_fingerprint, recorded = allowed.stdout.split()
    assert same_run == run_id and new_fingerprint != fingerprint and recorded == new_fingerprint


def test_resuming_a_checkpoint_of_other_code_is_refused(tmp_path, monkeypatch, tiny_policy_dir):
    from grpo_core.store import Store
    from grpo_core.training import checkpoint
    from grpo_core.training.trainer import train_grpo

    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "step-000001"
    ckpt.mkdir(parents=True)
    (ckpt / checkpoint.STATE_FILE).write_bytes(b"")
    (ckpt / checkpoint.CODE_FILE).write_text("src-0123456789ab\n")
    assert checkpoint.recorded_code(checkpoint.latest(run_dir)) == "src-0123456789ab"
    cfg = load_config(None, [f"store.root={tmp_path / 'store'}", "grpo.steps=2"])
    with pytest.raises(CodeChangedError, match=f"checkpoint {ckpt} was produced by code src-0123456789ab"):
        train_grpo(cfg, tiny_policy_dir, [], Store(cfg.store.root), run_dir, run_id="r")


def test_prefect_cache_keys_change_with_the_code(monkeypatch):
    from flows import tasks

    policy = tasks.CACHED["cache_policy"]
    inputs = {"cfg": {"grpo": {"beta": 0.04}}, "policy": "p", "run_id": "r", "iteration": 1}
    key = policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={})
    assert policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={}) == key
    assert policy.compute_key(task_ctx=None, inputs={**inputs, "iteration": 2}, flow_parameters={}) != key
    monkeypatch.setattr(tasks, "code_fingerprint", lambda: "src-edited000000")
    assert policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={}) != key


def test_sql_and_config_do_not_import_the_model_libraries(tmp_path):
    code = ("import sys; from flows.cli import main; "
            f"rc = main(['sql', 'select 1 as one', 'store.root={tmp_path}']) + main(['config']); "
            "print(rc, 'transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["0", "False", "False"]


def test_the_embedded_policy_cache_is_keyed_on_the_code_that_builds_it(monkeypatch):
    from grpo_core.policy import bootstrap

    assert provenance.modules_digest(bootstrap.BUILT_BY) == provenance.modules_digest(bootstrap.BUILT_BY[::-1])
    assert provenance.modules_digest(bootstrap.BUILT_BY) != provenance.modules_digest(bootstrap.BUILT_BY[:-1])
    cfg = load_config(None, [])
    built = bootstrap.policy_hash(cfg.model, cfg.task)
    monkeypatch.setattr(bootstrap, "modules_digest", lambda modules: "an edited bootstrap")
    assert bootstrap.policy_hash(cfg.model, cfg.task) != built


def test_an_end_state_written_after_a_refusal_keeps_the_recorded_code(tmp_path):
    from grpo_core.pipeline.stages import run_id_for, start_run
    from grpo_core.store import Store

    cfg = load_config(None, [f"store.root={tmp_path}"])
    store = Store(cfg.store.root)
    store.write_run(run_id_for(cfg), trial_id=None, name=cfg.run_name, config=cfg.model_dump(mode="json"),
                    status="running", code_fingerprint="src-0123456789ab")
    with pytest.raises(CodeChangedError):
        start_run(cfg)
    start_run(cfg, status="failed")  # what a flow's failure hook records
    record = store.read_run(run_id_for(cfg))
    assert (record["status"], record["code_fingerprint"]) == ("failed", "src-0123456789ab")
    with pytest.raises(CodeChangedError):  # still refused on the next start
        start_run(cfg)
    start_run(cfg.model_copy(update={"store": cfg.store.model_copy(update={"allow_code_change": True})}))
    assert store.read_run(run_id_for(cfg))["code_fingerprint"] == code_fingerprint()
