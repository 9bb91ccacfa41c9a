"""deploy-kserve through kfp.local: with the champions already serving there is nothing to roll out.

A rollout with a canary starts KServe ModelServer processes and is tested with the local target in
``tests/local/test_local_target.py`` and in the loop's pipeline tests; here the component's wiring
(registry → plan → outputs) runs for real, without a server.
"""

from pathlib import Path

import pytest

from tests.local.components.conftest import Blessed
from tests.loop import World

pytestmark = [pytest.mark.local, pytest.mark.slow]  # the local target starts real servers


def test_champions_and_no_challenger_leave_the_service_unchanged(
    world: World, blessed: Blessed
) -> None:
    from kfp import dsl

    from components.deploy_kserve import deploy_kserve
    from components.register import register

    @dsl.pipeline(name="register-then-deploy")
    def register_then_deploy(
        classifier: str, classifier_gate: str, extractor: str, extractor_gate: str, digest: str
    ) -> dsl.Markdown:
        registered = []
        for model_uri, gate_uri in ((classifier, classifier_gate), (extractor, extractor_gate)):
            model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
            gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
            registered.append(
                register(model=model.output, gate=gate.output, dataset_digest=digest, promote=True)
            )
        deploy = deploy_kserve(pipeline_run="run-4").after(*registered)
        return deploy.outputs["analysis"]

    blessed.into(world)
    run = register_then_deploy(
        classifier=str(blessed.models["classify"]),
        classifier_gate=str(blessed.gates["classify"]),
        extractor=str(blessed.models["extract"]),
        extractor_gate=str(blessed.gates["extract"]),
        digest=blessed.digest,
    )

    analysis = Path(run.output.path).read_text()
    assert analysis.startswith("# Deploy: **UNCHANGED**")
    assert "no new version to deploy" in analysis
