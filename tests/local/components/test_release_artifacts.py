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
