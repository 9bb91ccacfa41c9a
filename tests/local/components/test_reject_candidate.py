"""reject-candidate through kfp.local: the rejection and its reasons land in the attempt."""

import json

import pytest
from sqlalchemy import select

from tests.local.components.conftest import Blessed
from tests.loop import World

# slow: the session's `blessed` fixture trains and gates two tiny models (about a minute)
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_the_rejection_is_recorded_with_the_gate_headline(world: World, blessed: Blessed) -> None:
    from kfp import dsl

    from components.reject_candidate import reject_candidate
    from docloop.evaluation.gate import GateResult
    from docloop.store import open_store
    from docloop.store.tables import RetrainAttempt

    @dsl.pipeline(name="reject-only")
    def reject_only(gate_uri: str) -> None:
        gate = dsl.importer(artifact_uri=gate_uri, artifact_class=dsl.Artifact)
        reject_candidate(task="classify", gate=gate.output, pipeline_run="run-3")

    reject_only(gate_uri=str(blessed.gates["classify"]))

    store = open_store(world.store_url)
    with store.read() as session:
        attempts = list(session.scalars(select(RetrainAttempt)))
    store.close()
    gate = GateResult.model_validate(json.loads(blessed.gates["classify"].read_text()))
    assert [(a.run_id, a.outcome) for a in attempts] == [("run-3", "rejected")]
    assert attempts[0].reasons is not None
    assert gate.headline in attempts[0].reasons[0]  # no failed check: the headline is the reason
