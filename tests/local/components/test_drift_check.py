"""drift-check through kfp.local: without reviewed feedback the policy declines, and says why."""

from pathlib import Path

import pytest

from tests.local.components.conftest import Blessed
from tests.loop import World

# slow: the session's `blessed` fixture trains and gates two tiny models (about a minute)
pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_no_feedback_no_retrain_and_the_reason(world: World, blessed: Blessed) -> None:
    from components.drift_check import drift_check

    task = drift_check(
        champion_uri=str(blessed.models["classify"]),
        reference_dataset_uri=str(blessed.dataset),
    )

    assert task.outputs["Output"] is False
    summary = Path(task.outputs["summary"].path).read_text()
    assert "0 newly reviewed documents are fewer than" in summary
    assert "<html" in Path(task.outputs["report"].path).read_text().lower()
