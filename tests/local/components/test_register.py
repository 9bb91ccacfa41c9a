"""register through kfp.local: a blessed model becomes a registered version (and the default)."""

import pytest

from tests.local.components.conftest import Blessed
from tests.loop import World

# slow: the session's `blessed` fixture trains and gates two tiny models (about a minute)
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_a_blessed_first_model_is_registered_and_promoted(world: World, blessed: Blessed) -> None:
    from kfp import dsl
    from mlflow import MlflowClient

    from components.register import register

    @dsl.pipeline(name="register-only")
    def register_only(model_uri: str, gate_uri: str, digest: str) -> str:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
        task = register(
            model=model.output,
            gate=gate.output,
            dataset_digest=digest,
            pipeline_run="run-1",
            promote=True,
        )
        return task.outputs["version"]

    blessed.into(world)
    run = register_only(
        model_uri=str(blessed.models["classify"]),
        gate_uri=str(blessed.gates["classify"]),
        digest=blessed.digest,
    )

    assert run.output == "1"
    client = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    champion = client.get_model_version_by_alias("docloop-classifier", "champion")
    assert str(champion.version) == "1"
    assert blessed.digest in champion.tags.values()  # its lineage: the dataset it was trained on
