"""rollback through kfp.local: with nothing deployed it changes nothing and says so."""

from pathlib import Path

import pytest

from tests.loop import World

pytestmark = pytest.mark.local


def test_nothing_deployed_nothing_rolled_back(world: World) -> None:
    from kfp import dsl

    from components.rollback import rollback

    task = rollback(reason="test", pipeline_run="run-1")
    assert task.outputs["Output"] is False
    record = task.outputs["record"]
    assert isinstance(record, dsl.Artifact)
    assert record.metadata == {"rolled_back": False, "deployment_id": None, "versions": None}
    assert Path(world.store_url.removeprefix("sqlite:///")).is_file()
