"""promote through kfp.local: a registered candidate becomes champion; the attempt says so."""

import pytest
from sqlalchemy import select

from tests.local.components.conftest import Blessed
from tests.loop import World

# slow: the session's `blessed` fixture trains and gates two tiny models (about a minute)
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_a_registered_candidate_becomes_the_champion(world: World, blessed: Blessed) -> None:
    from kfp import dsl
    from mlflow import MlflowClient

    from components.promote import promote
    from components.register import register
    from docloop.store import open_store
    from docloop.store.tables import RetrainAttempt

    @dsl.pipeline(name="register-then-promote")
    def register_then_promote(model_uri: str, gate_uri: str, digest: str) -> None:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
        registered = register(
            model=model.output, gate=gate.output, dataset_digest=digest, pipeline_run="run-2"
        )
        promote(
            task="extract",
            model_name=registered.outputs["model_name"],
            version=registered.outputs["version"],
            gate=gate.output,
            pipeline_run="run-2",
        )

    blessed.into(world)
    register_then_promote(
        model_uri=str(blessed.models["extract"]),
        gate_uri=str(blessed.gates["extract"]),
        digest=blessed.digest,
    )

    client = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    assert str(client.get_model_version_by_alias("docloop-extractor", "champion").version) == "1"
    store = open_store(world.store_url)
    with store.read() as session:
        attempts = list(session.scalars(select(RetrainAttempt)))
    store.close()
    assert [(a.run_id, a.outcome) for a in attempts] == [("run-2", "promoted")]
