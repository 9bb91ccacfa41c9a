"""evaluate through kfp.local: a candidate no better than its incumbent is not blessed."""

import json
from pathlib import Path

import pytest

from tests.local.components.conftest import Blessed
from tests.loop import World

# slow: the session's `blessed` fixture trains and gates two tiny models (about a minute)
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_a_candidate_equal_to_its_incumbent_is_not_blessed(world: World, blessed: Blessed) -> None:
    from kfp import dsl

    from components.evaluate import evaluate

    @dsl.pipeline(name="evaluate-against-incumbent")
    def against(model_uri: str, dataset_uri: str, incumbent_uri: str) -> dsl.Artifact:
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        holdout = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset)
        task = evaluate(
            task="classify",
            candidate=model.output,
            holdout=holdout.output,
            incumbent_uri=incumbent_uri,
        )
        return task.outputs["gate"]

    classifier = str(blessed.models["classify"])
    run = against(model_uri=classifier, dataset_uri=str(blessed.dataset), incumbent_uri=classifier)

    assert run.output.metadata["blessed"] is False
    gate = json.loads(Path(run.output.path).read_text())
    assert gate["task"] == "classify" and not gate["blessed"] and not gate["first_model"]
    improvement = [check for check in gate["checks"] if check["name"] == "improvement"]
    assert improvement and not improvement[0]["passed"]
    assert improvement[0]["candidate"] == improvement[0]["incumbent"]  # the same model
    assert improvement[0]["reason"] in gate["summary"]  # the failed checks' reasons


def test_first_models_meet_the_floors_only(blessed: Blessed) -> None:
    """The session's gates (evaluate without an incumbent, floors lowered to 0 in the world)."""
    for task, path in blessed.gates.items():
        gate = json.loads(path.read_text())
        assert gate["task"] == task and gate["blessed"] and gate["first_model"]
        assert {check["name"] for check in gate["checks"] if not check["skipped"]} == {"floor"}
