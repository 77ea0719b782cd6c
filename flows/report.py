"""Flow `analysis/report` (deployment `report` of the flow named "analysis"): the RL-effects report.

    python -m flows.report default-32decf95 [default-1043a156 ...]   # as a script, no server needed
    prefect deployment run analysis/report --params '{"run_ids": ["default-32decf95"]}'

Writes report.md, report.html and the PNG figures (analysis.report) under
<runs_dir>/<run_id>/report/ (or `out_dir`), and attaches the Markdown to the flow run as a Prefect
artifact (key `rl-report-...`), so the UI's Artifacts tab shows the summary and tables.
"""

from __future__ import annotations

import re
import sys

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from flows import tasks  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.stages import run_id_for  # noqa: E402


def publish_report(cfg: ExperimentConfig, run_ids: list[str], out_dir: str | None = None) -> dict[str, str]:
    """Write the report (task write-report) and attach its Markdown as an artifact; call inside a flow.
    Returns the report's paths."""
    paths = tasks.write_report(cfg, run_ids, out_dir)
    with open(paths["markdown"]) as f:
        markdown = f.read()
    key = "rl-report-" + re.sub(r"[^a-z0-9-]+", "-", "-".join(run_ids).lower()).strip("-")
    create_markdown_artifact(
        markdown=markdown + f"\n\nFigures and the self-contained HTML: `{paths['html']}`\n",
        key=key[:100].rstrip("-"),
        description=f"RL-effects report of {', '.join(run_ids)}",
    )
    return paths


@flow(name="analysis", flow_run_name="report-{cfg.run_name}", log_prints=True)
def report(run_ids: list[str] | None = None, cfg: ExperimentConfig = ExperimentConfig(),
           out_dir: str | None = None) -> dict[str, str]:
    """The RL-effects report of `run_ids` in the store `cfg.store.root` (default: the run `cfg` defines).
    Returns {'markdown': path, 'html': path}."""
    paths = publish_report(cfg, list(run_ids or [run_id_for(cfg)]), out_dir)
    print(f"report: {paths['html']}")
    return paths


if __name__ == "__main__":
    report(sys.argv[1:] or None)
