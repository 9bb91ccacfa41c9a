"""The deploy-kserve component's step: new versions -> canary -> analysis -> promote | rollback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from docloop.config import load_config
from docloop.deploy.run import ANALYSIS_FILE, STATUS_FILE, run_deploy, write_outputs
from docloop.storage import Storage
from docloop.store.registry import Registry

__all__ = ["ANALYSIS_FILE", "STATUS_FILE", "DeployOutcome", "chosen_versions", "run"]


@dataclass(frozen=True)
class DeployOutcome:
    """What the component writes: the status JSON and the service's metadata."""

    status: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``service`` artifact's metadata (what kubectl users look for)."""
        state = self.status.get("service") or {}
        return {
            "status": self.status["status"],
            "versions": self.status["versions"],
            "name": state.get("name"),
            "namespace": state.get("namespace"),
            "url": state.get("url"),
            "latest_rolledout_revision": state.get("latest_rolledout_revision"),
            "previous_rolledout_revision": state.get("previous_rolledout_revision"),
            "traffic": state.get("traffic"),
            "file": STATUS_FILE,
        }


def chosen_versions(
    releases: Sequence[Mapping[str, Any]], classifier_version: str = "", extractor_version: str = ""
) -> dict[str, str]:
    """Task → version to deploy: what register's release artifacts name, explicit ones winning."""
    versions = {str(r["task"]): str(r["version"]) for r in releases if r.get("version")}
    explicit = {"classify": classifier_version, "extract": extractor_version}
    versions.update({task: version for task, version in explicit.items() if version})
    return versions


def run(
    output_dir: str,
    pipeline_run: str = "",
    classifier_version: str = "",
    extractor_version: str = "",
    ensure_serving: bool = False,
    releases: Sequence[Mapping[str, Any]] = (),
) -> DeployOutcome:
    """Plan the release, roll it out, write ``deployment.json`` and ``analysis.md``.

    Args:
        output_dir: the component's ``service`` folder.
        pipeline_run: the KFP run (recorded with the deployment).
        classifier_version: the registered classifier version to roll out; empty: the champion.
        extractor_version: the registered extractor version to roll out; empty: the champion.
        ensure_serving: deploy the champions when nothing is serving yet.
        releases: register's ``release`` artifacts (their metadata): the version each names for
            its task is deployed (one that registered nothing keeps the task's champion); given
            any, there is no lookup of "this run's challengers". An explicit version above
            still wins.

    Returns:
        The status JSON (also written to ``output_dir``).
    """
    config = load_config()
    versions = chosen_versions(releases, classifier_version, extractor_version)
    registry = Registry.from_config(config)
    try:
        plan, result = run_deploy(
            config,
            registry,
            versions=versions,
            pipeline_run=pipeline_run,
            ensure_serving=ensure_serving,
            find_challengers=not releases,
        )
        return DeployOutcome(write_outputs(Storage(config.storage), output_dir, plan, result))
    finally:
        registry.close()
