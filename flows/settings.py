"""Prefect settings for running offline from this checkout (set before Prefect is imported).

Only defaults: anything already in the environment (a real server's
PREFECT_API_URL, a profile) wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "grpo,prm,analysis",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_WAIT_POLICY": "PASSIVE",  # read when torch loads: idle threads sleep, not spin (2 shared cores)
    # read when transformers loads (through huggingface_hub): per-load bars would drown the step progress
    # in Prefect logs. An environment variable, so that a query (`grpo sql`) never imports transformers.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def apply_offline_defaults(work_dir: Path = Path("runs")) -> None:
    """Set offline defaults and keep Prefect's home and cached results under `work_dir`."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str((work_dir / "prefect").resolve()))
    # Prefect creates its home without parents: in a fresh clone (no runs/ yet) its temporary server's
    # database could not be opened, and the first flow would time out waiting for the server.
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str((work_dir / "prefect" / "results").resolve()))
    # Prefect gives the extra loggers its API handler but no level: at root's WARNING, their INFO lines
    # (e.g. the trainer's per-step progress) would never reach the flow run's logs.
    for name in filter(None, (n.strip() for n in os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"].split(","))):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
