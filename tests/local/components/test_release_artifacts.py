"""register -> deploy-kserve through typed release artifacts (kfp.local), not by run name."""

import json
from pathlib import Path

import pytest

from tests.local.components.conftest import Blessed
from tests.loop import World

pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_register_outputs_the_release_that_deploy_consumes(world: World, blessed: Blessed) -> None:
    from kfp import dsl

    from components.deploy_kserve import deploy_kserve
    from components.register import register

    @dsl.pipeline(name="register-release-deploy")
    def register_release_deploy(
        classifier: str, classifier_gate: str, extractor: str, extractor_gate: str, digest: str
    ) -> dsl.Model:
        releases = []
        for model_uri, gate_uri in ((classifier, classifier_gate), (extractor, extractor_gate)):
            model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
            gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
            releases.append(
                register(
                    model=model.output,
                    gate=gate.output,
                    dataset_digest=digest,
                    pipeline_run="bootstrap-run",
                    promote=True,
                )
            )
        # another run's name: a lookup of "this run's challengers" would find nothing to deploy
        deploy_kserve(
            pipeline_run="another-run",
            classifier_release=releases[0].outputs["release"],
            extractor_release=releases[1].outputs["release"],
        )
        return releases[1].outputs["release"]

    blessed.into(world)
    run = register_release_deploy(
        classifier=str(blessed.models["classify"]),
        classifier_gate=str(blessed.gates["classify"]),
        extractor=str(blessed.models["extract"]),
        extractor_gate=str(blessed.gates["extract"]),
        digest=blessed.digest,
    )
    release = run.output
    assert release.metadata["task"] == "extract" and release.metadata["version"] == "1"
    # beside the classifier's champion when the classifier was registered first (kfp.local may
    # run the two registers in either order)
    assert release.metadata["versions"] in ({"extract": "1"}, {"classify": "1", "extract": "1"})
    assert release.metadata["predictor_name"].startswith("release-")
    assert release.metadata["bundle_uri"] == ""  # bundles are written for deploy.target: kserve
    written = json.loads((Path(release.path) / "release.json").read_text())
    assert written == release.metadata


def test_an_unblessed_candidate_registers_nothing_and_deploy_keeps_the_champions(
    world: World, blessed: Blessed, tmp_path: Path
) -> None:
    """The retrain's register runs on every candidate: unblessed, it outputs a release saying so,
    and deploy-kserve, given only such releases, deploys nothing (no registry lookup by run)."""
    from kfp import dsl
    from mlflow import MlflowClient

    from components.deploy_kserve import deploy_kserve
    from components.register import register

    @dsl.pipeline(name="register-unblessed-deploy")
    def register_unblessed_deploy(
        model_uri: str, gate_uri: str, champion_uri: str, champion_gate_uri: str, digest: str
    ) -> str:
        champion = register(  # the extractor's champion: something serves
            model=dsl.importer(artifact_uri=champion_uri, artifact_class=dsl.Model).output,
            gate=dsl.importer(artifact_uri=champion_gate_uri, artifact_class=dsl.Artifact).output,
            dataset_digest=digest,
            promote=True,
        )
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
        release = register(
            model=model.output,
            gate=gate.output,
            dataset_digest=digest,
            pipeline_run="retrain-run",
            skip_unblessed=True,
        ).outputs["release"]
        return (
            deploy_kserve(pipeline_run="retrain-run", classifier_release=release)
            .after(champion)
            .outputs["Output"]
        )

    blessed.into(world)
    rejected = tmp_path / "rejected-gate.json"
    gate = json.loads(Path(blessed.gates["classify"]).read_text())
    rejected.write_text(json.dumps({**gate, "blessed": False, "summary": "no gain"}))
    run = register_unblessed_deploy(
        model_uri=str(blessed.models["classify"]),
        gate_uri=str(rejected),
        champion_uri=str(blessed.models["extract"]),
        champion_gate_uri=str(blessed.gates["extract"]),
        digest=blessed.digest,
    )
    assert run.output == "unchanged"
    client = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    assert client.search_model_versions("name='docloop-classifier'") == []
