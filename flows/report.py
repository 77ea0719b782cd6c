"""Flow `analysis/report` (deployment `report` of the flow named "analysis"): the RL-effects report.

    python -m flows.report default-32decf95 [default-1043a156 ...]   # as a script, no server needed
    prefect deployment run analysis/report --params '{"run_ids": ["default-32decf95"]}'

Writes report.md, report.html and the PNG figures (analysis.report) under
<runs_dir>/<run_id>/report/ (or `out_dir`), and attaches the Markdown to the flow run as a Prefect
artifact (key `rl-report-...`) with the figures embedded (the UI cannot load files beside the
report) and the report's absolute path, so the UI's Artifacts tab shows the whole report.
The flow run is named after the runs it reports (`report-default-4f0cf1e8`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from analysis.render import inline_figures  # noqa: E402
from flows import tasks  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.stages import run_id_for  # noqa: E402


def artifact_key(kind: str, *names: str) -> str:
    """A Prefect artifact key ('{kind}-{names}': lowercase letters, digits and dashes, at most 100)."""
    return (kind + "-" + re.sub(r"[^a-z0-9-]+", "-", "-".join(names).lower()).strip("-"))[:100].rstrip("-")


def publish_markdown(markdown_path: Path, html_path: Path, *, key: str, description: str) -> None:
    """Attach a report's Markdown to the flow run as an artifact, figures embedded, ending with where
    the report's files are (absolute paths: the UI runs elsewhere than the worker)."""
    where = (f"\n\n---\nReport files on the worker: `{Path(html_path).resolve()}` (self-contained HTML) and "
             f"`{Path(markdown_path).resolve()}` with its PNGs.\n")
    create_markdown_artifact(markdown=inline_figures(markdown_path) + where, key=key, description=description)


def publish_report(cfg: ExperimentConfig, run_ids: list[str], out_dir: str | None = None) -> dict[str, str]:
    """Write the report (task write-report) and attach it as an artifact; call inside a flow.
    Returns the report's paths."""
    paths = tasks.write_report(cfg, run_ids, out_dir)
    publish_markdown(Path(paths["markdown"]), Path(paths["html"]), key=artifact_key("rl-report", *run_ids),
                     description=f"RL-effects report of {', '.join(run_ids)}")
    return paths


def _report_run_name() -> str:
    """'report-{run ids joined by +}' from the flow run's parameters."""
    run_ids = flow_run.parameters.get("run_ids") or [run_id_for(tasks.config_of(flow_run.parameters))]
    return "report-" + "+".join(run_ids)


@flow(name="analysis", flow_run_name=_report_run_name, log_prints=True)
def report(run_ids: list[str] | None = None, cfg: ExperimentConfig = ExperimentConfig(),
           out_dir: str | None = None) -> dict[str, str]:
    """The RL-effects report of `run_ids` in the store `cfg.store.root` (default: the run `cfg` defines).
    Returns {'markdown': path, 'html': path}."""
    paths = publish_report(cfg, list(run_ids or [run_id_for(cfg)]), out_dir)
    print(f"report: {paths['html']}")
    return paths


if __name__ == "__main__":
    report(sys.argv[1:] or None)
