"""report-health through kfp.local: the exit task records a failed run, not a succeeded one."""

import pytest
from sqlalchemy import select

from tests.loop import World

pytestmark = pytest.mark.local


def test_a_failed_run_is_recorded_with_its_failed_task(world: World) -> None:
    import kfp.local
    from kfp import dsl

    from components.plan_shards import plan_shards
    from components.report_health import report_health
    from docloop.store import open_store
    from docloop.store.tables import RetrainAttempt

    @dsl.pipeline(name="fails")
    def fails() -> None:
        with dsl.ExitHandler(report_health(pipeline_run="run-7")):
            plan_shards(num_shards=0)  # refuses: the run fails in this task

    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(world.root / "pipeline-root"),
        raise_on_error=False,
    )
    fails()

    store = open_store(world.store_url)
    with store.read() as session:
        attempts = list(session.scalars(select(RetrainAttempt)))
    store.close()
    assert [(a.run_id, a.outcome) for a in attempts] == [("run-7", "failed")]
    # kfp.local names the failed group (``exit-handler-1``) as the failed task
    assert attempts[0].reasons is not None
    assert "pipeline failed in task exit-handler" in attempts[0].reasons[0]


def test_a_succeeded_run_records_nothing(world: World) -> None:
    from kfp import dsl

    from components.plan_shards import plan_shards
    from components.report_health import report_health
    from docloop.store import open_store
    from docloop.store.tables import RetrainAttempt

    @dsl.pipeline(name="succeeds")
    def succeeds() -> None:
        with dsl.ExitHandler(report_health(pipeline_run="run-8")):
            plan_shards(num_shards=1)

    succeeds()
    store = open_store(world.store_url)
    with store.read() as session:
        assert list(session.scalars(select(RetrainAttempt))) == []
    store.close()
