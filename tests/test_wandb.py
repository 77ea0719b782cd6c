"""The W&B mirror: off by default (wandb never imported), offline files in the run dir with every step's metrics."""

import json
import struct
import subprocess
import sys
from pathlib import Path

from grpo_core.store import Store
from grpo_core.training.loggers import NullTracker, make_tracker, mirror
from grpo_core.training.trainer import train_grpo
from tests.test_trainer import train_problems, trainer_config

REPO = Path(__file__).resolve().parents[1]
BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc32c u32, length u16, type u8) records
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> list:
    """Every protobuf Record in an offline run's `.wandb` file (header ':W&B', magic 0xBEE1, version 0)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def logged_history(run_dir: Path) -> list[dict]:
    """The history rows (one per `log` call) of the single offline run under `run_dir/wandb`."""
    files = sorted((run_dir / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    rows = []
    for record in read_wandb_records(files[0]):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in items})
    return rows


def test_off_by_default_without_importing_wandb(tmp_path):
    code = ("import sys; from grpo_core.config import load_config; from grpo_core.training.loggers import make_tracker; "
            f"t = make_tracker(load_config(), __import__('pathlib').Path({str(tmp_path)!r}), name='x'); "
            "assert type(t).__name__ == 'NullTracker' and 'wandb' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    assert isinstance(make_tracker(trainer_config(tmp_path), tmp_path, name="x"), NullTracker)


def test_offline_run_holds_every_step_metric_and_wandb_is_torn_down(tmp_path, tiny_policy_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.delenv(var, raising=False)  # the tracker sets them; monkeypatch restores them afterwards
    cfg = trainer_config(tmp_path, "grpo.steps=2", "grpo.checkpoint_every=0", "logging.wandb=true")
    run_dir = tmp_path / "run"
    result = train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), run_dir, run_id="wb")
    import wandb.sdk.wandb_setup as wandb_setup

    assert wandb_setup._singleton is None  # wandb.teardown() ran: no service process is left
    rows = logged_history(run_dir)
    assert [r["grpo/step"] for r in rows] == [1, 2]
    for row, step in zip(rows, result.history, strict=True):
        for name in ("rollout/reward_mean", "train/loss", "train/kl", "time/generate_s"):
            assert abs(row[name] - step[name]) < 1e-9, name
    assert not list(Path.home().glob(".cache/wandb/offline-run-*"))


def test_readme_wandb_sync_command_finds_the_iteration_run(tmp_path, tiny_policy_dir, monkeypatch):
    """`wandb sync --dry-run runs/<run_id>/it001/wandb` (the README's command) finds the GRPO run."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = trainer_config(tmp_path, "grpo.steps=1", "grpo.checkpoint_every=0", "logging.wandb=true")
    run_dir = cfg.store.runs_dir / "wb" / "it001"  # where flows.stages.grpo points the trainer
    train_grpo(cfg, tiny_policy_dir, train_problems(cfg), Store(cfg.store.root), run_dir, run_id="wb")
    assert len(list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    wandb_cli = Path(sys.executable).with_name("wandb")
    sync = subprocess.run([str(wandb_cli), "sync", "--dry-run", str(run_dir / "wandb")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    said = sync.stdout + sync.stderr
    assert sync.returncode == 0 and "Would sync 1 run(s)" in said and "No runs to sync" not in said, said


def test_mirror_logs_report_figures_as_images(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.delenv("WANDB_MODE", raising=False)
    png = tmp_path / "pass_maj_vs_k.png"
    plt.plot([1, 2, 4], [0.4, 0.5, 0.6])
    plt.savefig(png)
    plt.close("all")
    cfg = trainer_config(tmp_path, "logging.wandb=true")
    mirror(cfg, tmp_path / "report", name="r-report", group="r", figures={"report/pass_maj_vs_k": png},
           metrics={"eval/greedy_accuracy": 0.5})
    rows = logged_history(tmp_path / "report")
    assert rows[0]["eval/greedy_accuracy"] == 0.5
    assert rows[1]["report/pass_maj_vs_k/_type"] == "image-file"  # nested image fields come back flattened
    image = rows[1]["report/pass_maj_vs_k/path"]
    assert len(list((tmp_path / "report" / "wandb").rglob(f"offline-run-*/files/{image}"))) == 1
