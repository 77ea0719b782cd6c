"""prefect.yaml on a real Prefect server: work pool, `prefect deploy --all`, a process worker, and
`prefect deployment run grpo/iterative` with a partial config from the command line; then what the UI
shows of it (flow-run and task-run names, the evaluation log lines, the report artifact with its
figures embedded, the evaluations table) and a cancelled run's end state in the store.

Everything listens on 127.0.0.1; every process the test starts is stopped at the end (its
whole process group is killed if it does not stop when asked).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.catalog import query
from grpo_core.config import ExperimentConfig
from grpo_core.pipeline.stages import run_id_for

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]  # the CLI of the interpreter running the tests
POOL = "grpo-process"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, port: int) -> dict[str, str]:
    """This test's environment: no inherited Prefect profile or API, offline, the repo as $PWD
    (prefect.yaml's pull step is `set_working_directory: {{ $PWD }}`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_LOCAL_STORAGE_PATH=str(home / "results"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_WORKER_QUERY_SECONDS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",  # tiny models: one thread each (see conftest.one_thread)
        PWD=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a process in its own group, with SIGINT at its default (a background parent may ignore it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop(proc: subprocess.Popen, sig: int, grace: float = 20) -> None:
    """Ask `proc` to stop with `sig`, wait up to `grace` seconds, then SIGKILL whatever is left of its group."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children (flow runs, uvicorn) go too
    except ProcessLookupError:
        pass
    proc.wait(10)


def _tail(log: Path, n: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""


def _api(env: dict[str, str], path: str, body: dict | None = None) -> object:
    """POST `body` to the server's REST API (what the UI reads) and return the decoded answer."""
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as r:
        return json.loads(r.read())


def _wait(what: str, check, log: Path, timeout: float = 120) -> object:
    """Poll `check()` every 0.5 s until it returns something truthy; after `timeout`, fail naming `what`
    with the end of `log`."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s; worker log:\n{_tail(log, 80)}"
        time.sleep(0.5)
    return value


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([*PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server on a free loopback port with its home in a temp dir; yields the client env."""
    home = tmp_path_factory.mktemp("prefect_server")
    port = _free_port()
    env = _env(home, port)
    log = home / "server.log"
    proc = _start([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 120
        while True:
            try:
                with no_proxy.open(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"prefect server exited:\n{_tail(log)}"
            assert time.monotonic() < deadline, f"prefect server not healthy after 120 s:\n{_tail(log)}"
            time.sleep(0.5)
        yield env
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.fixture(scope="module")
def worker(server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A process work pool and one worker polling it every second; yields the worker's log."""
    _cli(server, "work-pool", "create", POOL, "--type", "process")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = _start([*PREFECT, "worker", "start", "--pool", POOL, "--name", "test-worker"], server, log)
    try:
        yield log
    finally:
        _stop(proc, signal.SIGINT)


def test_deployment_runs_from_the_cli_with_a_partial_config(server, worker, tmp_path, tiny_policy_dir):
    deployed = _cli(server, "--no-prompt", "deploy", "--all", timeout=180).stdout
    assert all(d in deployed for d in ("grpo/iterative", "grpo/single", "prm/train", "analysis/report")), deployed
    deployment = json.loads(_cli(server, "deployment", "inspect", "grpo/iterative", "--output", "json").stdout)
    assert [s["active"] for s in deployment["schedules"]] == [False]  # the example schedule makes no runs
    pull = deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert pull["directory"] == str(REPO)  # $PWD resolved at deploy time
    assert deployment["job_variables"]["env"]["HF_HUB_OFFLINE"] == "1"
    assert list(deployment["parameter_openapi_schema"]["properties"]) == ["cfg"]  # no internal parameters

    # Only the keys that differ from the defaults: the flow fills in the rest.
    cfg = {
        "run_name": "server",
        "model": {"path": str(tiny_policy_dir)},
        "task": {"synthetic": {"n_train": 256, "n_test": 32}},
        "rollout": {"max_new_tokens": 24},
        "grpo": {"supervision": "outcome", "steps": 2, "group_size": 4, "questions_per_step": 4,
                 "minibatch_size": 16},
        "eval": {"n_problems": 8, "n_samples": 4, "k_max": 4},
        "iterative": {"iterations": 1},
        "store": {"root": str(tmp_path / "store"), "runs_dir": str(tmp_path / "runs")},
        "logging": {"progress": False},
    }
    run = subprocess.run(
        [*PREFECT, "deployment", "run", "grpo/iterative", "--params", json.dumps({"cfg": cfg}),
         "--watch", "--watch-timeout", "300"],
        cwd=REPO, env=server, capture_output=True, text=True, timeout=360,
    )
    assert run.returncode == 0 and "Completed" in run.stdout, (
        f"{run.stdout}\n{run.stderr}\nworker log:\n{_tail(worker, 80)}")

    # A config the schema rejects never reaches the worker.
    bad = subprocess.run([*PREFECT, "deployment", "run", "grpo/single", "--param", 'cfg={"grpo": {"steps": -1}}'],
                         cwd=REPO, env=server, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "cfg.grpo.steps" in bad.stdout + bad.stderr

    run_id = run_id_for(ExperimentConfig.model_validate(cfg))  # the id the flow derived from the filled-in config
    counts = query(cfg["store"]["root"],
                   "SELECT split, decoding, iteration, step, count(*) AS n FROM rollouts WHERE run_id = $run_id "
                   "GROUP BY ALL ORDER BY ALL", {"run_id": run_id}).to_pylist()
    assert [(c["split"], c["decoding"], c["iteration"], c["step"], c["n"]) for c in counts] == [
        ("eval", "greedy", 0, 0, 8), ("eval", "greedy", 1, 2, 8),
        ("eval", "sample", 0, 0, 8 * 4), ("eval", "sample", 1, 2, 8 * 4),
        ("train", "sample", 1, 1, 4 * 4), ("train", "sample", 1, 2, 4 * 4),
    ]
    status = query(cfg["store"]["root"], "SELECT status FROM runs WHERE run_id = $run_id", {"run_id": run_id})
    assert status.to_pylist() == [{"status": "finished"}]
    assert not (REPO / "runs" / "store" / "rollouts" / run_id).exists()  # nothing leaked into the checkout

    # What the UI shows: the flow run and its stages by name, readable evaluations, the report's figures.
    flow_runs = _api(server, "/flow_runs/filter", {"flow_runs": {"name": {"any_": [f"iterative-{run_id}"]}}})
    assert [r["state_type"] for r in flow_runs] == ["COMPLETED"], [r["name"] for r in flow_runs]
    flow_run = {"flow_runs": {"id": {"any_": [flow_runs[0]["id"]]}}}
    task_runs = sorted(_api(server, "/task_runs/filter", flow_run), key=lambda t: t["expected_start_time"])
    assert [t["name"] for t in task_runs] == [
        "start-run", "bootstrap-policy", "evaluate-it0-step0", "grpo-it1", "evaluate-it1-step2",
        "finish-run-finished", "write-report"]
    logs = [entry["message"] for entry in _api(server, "/logs/filter", {"logs": {
        "flow_run_id": {"any_": [flow_runs[0]["id"]]}}})]
    for when in ("before RL", "iteration 1 (step 2)"):
        assert any(m.startswith(f"{when}: greedy_accuracy ") and "maj@4 " in m and "%" in m for m in logs), logs
    assert any(m.startswith("it1 step 2/2 (100%, ETA 0s") for m in logs), logs
    latest = _api(server, "/artifacts/latest/filter", {"artifacts": {"flow_run_id": {"any_": [flow_runs[0]["id"]]}}})
    artifacts = {a["key"]: a for a in latest}  # each key's latest version, as the UI's Artifacts tab shows it
    report = artifacts[f"rl-report-{run_id}"]
    html = Path(cfg["store"]["runs_dir"]) / run_id / "report" / "report.html"
    assert report["type"] == "markdown" and "](data:image/png;base64," in report["data"]
    assert ".png)" not in report["data"] and f"`{html}`" in report["data"]  # no link the UI cannot load
    table = artifacts[f"evals-{run_id}"]
    assert table["type"] == "table" and [row["iteration"] for row in json.loads(table["data"])] == [0, 1]
    assert artifacts[f"progress-{run_id}"]["data"] == 100.0


def test_a_cancelled_flow_run_is_recorded_cancelled(server, worker, tmp_path, tiny_policy_dir):
    """Cancel a running grpo/single from the CLI: the store's run ends 'cancelled', not 'running'."""
    _cli(server, "--no-prompt", "deploy", "--name", "single", timeout=180)
    cfg = {"run_name": "cancel", "model": {"path": str(tiny_policy_dir)},
           "task": {"synthetic": {"n_train": 64, "n_test": 8}}, "rollout": {"max_new_tokens": 8},
           "grpo": {"supervision": "outcome", "steps": 10000, "group_size": 2, "questions_per_step": 2,
                    "minibatch_size": 4},
           "eval": {"n_problems": 2, "n_samples": 2, "k_max": 2},
           "store": {"root": str(tmp_path / "store"), "runs_dir": str(tmp_path / "runs")}, "logging": {"progress": False}}
    run_id = run_id_for(ExperimentConfig.model_validate(cfg))
    started = _cli(server, "deployment", "run", "grpo/single", "--params", json.dumps({"cfg": cfg})).stdout
    flow_run_id = next(line.split()[-1] for line in started.splitlines() if "UUID" in line)
    first_step = Path(cfg["store"]["root"]) / "step_metrics" / run_id / "it001-step000001.parquet"
    _wait("GRPO step of the run to cancel", first_step.exists, worker, timeout=180)
    _cli(server, "flow-run", "cancel", flow_run_id)

    def status() -> str | None:
        rows = query(cfg["store"]["root"], "SELECT status FROM runs WHERE run_id = $r", {"r": run_id}).to_pylist()
        return rows[0]["status"] if rows and rows[0]["status"] != "running" else None

    assert _wait("end state of the cancelled run in the store", status, worker, timeout=60) == "cancelled"
    def cancelled() -> dict | None:
        flow_run = _api(server, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})[0]
        return flow_run if flow_run["state_type"] == "CANCELLED" else None

    assert _wait("Cancelled state of the flow run", cancelled, worker, timeout=60)["name"] == f"single-{run_id}"
