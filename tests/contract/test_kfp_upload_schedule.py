"""``docloop upload`` / ``docloop schedule`` against the KFP v2beta1 REST API, through kfp.Client.

There is no KFP API server on these machines. ``tests/fakes/kfp_apiserver.py`` is a fake one on
127.0.0.1 that implements exactly the endpoints the real ``kfp.Client`` 2.17.3 calls for these
operations and answers with the client's own request/response models (``kfp_server_api``): the
request bodies asserted on here are the ones the real client produced, parsed back with
``V2beta1RecurringRun`` / ``V2beta1Experiment`` as the server would parse them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docloop import __version__, kubeflow
from docloop.cli import app
from docloop.errors import ConfigError, InvalidInput
from tests.fakes.kfp_apiserver import API, FakeKFP

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
DRIFT_CHECK = ROOT / "pipelines" / "compiled" / "drift_check.yaml"
HOURLY = "0 0 * * * *"
RECURRING = f"{API}/recurringruns"


@pytest.fixture
def kfp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKFP]:
    # kfp.Client reads (and in multi-user mode writes) ~/.config/kfp/context.json: keep it here
    monkeypatch.setattr(
        "kfp.client.client.Client._LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json")
    )
    for name in list(os.environ):
        if name.startswith(("KFP_", "KF_PIPELINES_")):
            monkeypatch.delenv(name)
    with FakeKFP() as server:
        yield server


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the compiled drift-check pipeline that a test may change."""
    path = tmp_path / "drift_check.yaml"
    path.write_bytes(DRIFT_CHECK.read_bytes())
    return path


def change(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "description: Quality and drift" in text
    path.write_text(text.replace("description: Quality and drift", "description: New drift"))


def writes(server: FakeKFP) -> list[str]:
    """Every request that changes state, in order."""
    return [f"{r.method} {r.path}" for r in server.requests if r.method in ("POST", "DELETE")]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


# -- upload ---------------------------------------------------------------------------------------


def test_first_upload_creates_the_pipeline_and_a_version_named_by_content(
    kfp_server: FakeKFP, package: Path
) -> None:
    result = kubeflow.upload_pipeline(kfp_server.url, package)

    sha = kubeflow.load_package(package).sha256
    assert result.action == "created"
    assert (result.pipeline_name, result.version_name) == (
        "docloop-drift-check",
        f"{__version__}-{sha[:12]}",
    )
    (upload,) = kfp_server.calls("POST", f"{API}/pipelines/upload")
    assert upload.param("name") == "docloop-drift-check"
    field, filename, content = upload.upload()
    assert (field, filename, content) == ("uploadfile", "drift_check.yaml", package.read_bytes())
    (version,) = kfp_server.calls("POST", f"{API}/pipelines/upload_version")
    assert version.param("pipelineid") == result.pipeline_id
    assert version.param("name") == result.version_name
    assert sha in (version.param("description") or "")
    assert version.upload()[2] == package.read_bytes()
    # KFP names the first version after the pipeline; the content-named one is ours
    names = [v.name for v in kfp_server.versions[result.pipeline_id]]
    assert names == ["docloop-drift-check", result.version_name]
    assert result.version_id == kfp_server.versions[result.pipeline_id][1].pipeline_version_id


def test_identical_upload_again_changes_nothing(kfp_server: FakeKFP, package: Path) -> None:
    first = kubeflow.upload_pipeline(kfp_server.url, package)
    kfp_server.forget_requests()

    again = kubeflow.upload_pipeline(kfp_server.url, package)

    assert again.action == "already uploaded"
    assert (again.pipeline_id, again.version_id) == (first.pipeline_id, first.version_id)
    assert writes(kfp_server) == []
    (lookup,) = kfp_server.calls("GET", f"{API}/pipelines/[^/]+/versions")
    assert first.version_name in (lookup.param("filter") or "")


def test_changed_yaml_becomes_a_new_version(kfp_server: FakeKFP, package: Path) -> None:
    first = kubeflow.upload_pipeline(kfp_server.url, package)
    change(package)
    kfp_server.forget_requests()

    second = kubeflow.upload_pipeline(kfp_server.url, package)

    assert second.action == "new version"
    assert second.pipeline_id == first.pipeline_id
    assert second.version_name != first.version_name
    assert second.version_name == f"{__version__}-{kubeflow.load_package(package).sha256[:12]}"
    assert writes(kfp_server) == [f"POST {API}/pipelines/upload_version"]
    assert len(kfp_server.versions[first.pipeline_id]) == 3


def test_explicit_version_name_and_namespace(kfp_server: FakeKFP) -> None:
    result = kubeflow.upload_pipeline(
        kfp_server.url, "drift-check", version_name="v1", namespace="team-a"
    )

    assert (result.action, result.version_name) == ("created", "v1")
    assert kfp_server.calls("POST", f"{API}/pipelines/upload")[0].param("namespace") == "team-a"
    assert all(
        r.param("namespace") == "team-a" for r in kfp_server.calls("GET", f"{API}/pipelines")
    )
    assert (
        kubeflow.upload_pipeline(
            kfp_server.url, "drift-check", version_name="v1", namespace="team-a"
        ).action
        == "already uploaded"
    )


# -- schedule -------------------------------------------------------------------------------------


def test_schedule_creates_the_experiment_and_a_recurring_run(
    kfp_server: FakeKFP, package: Path
) -> None:
    result = kubeflow.schedule_pipeline(
        kfp_server.url,
        package,
        HOURLY,
        params={"seed": "7", "classifier_champion": "models:/docloop-classifier@champion"},
    )

    assert (result.action, result.experiment_created, result.enabled) == ("created", True, True)
    (experiment_call,) = kfp_server.calls("POST", f"{API}/experiments")
    assert experiment_call.model("V2beta1Experiment").display_name == "docloop"
    (create,) = kfp_server.calls("POST", RECURRING)
    run = create.model("V2beta1RecurringRun")
    assert run.display_name == "docloop-drift-check"
    assert run.experiment_id == result.experiment_id
    assert run.trigger.cron_schedule.cron == HOURLY
    assert run.trigger.periodic_schedule is None
    assert run.no_catchup is True
    assert run.max_concurrency == "1"  # int64: a JSON string on the wire
    assert run.pipeline_version_reference.pipeline_id == result.upload.pipeline_id
    assert run.pipeline_version_reference.pipeline_version_id == result.upload.version_id
    assert run.pipeline_spec is None  # runs the uploaded version, not an inline spec
    assert run.runtime_config.parameters == {
        "seed": 7,  # typed as the pipeline declares it (NUMBER_INTEGER)
        "classifier_champion": "models:/docloop-classifier@champion",
    }
    assert run.service_account == "docloop-pipeline"
    assert run.mode == "ENABLE"
    assert list(kfp_server.recurring_runs) == [result.recurring_run_id]


def test_schedule_again_unchanged_is_a_no_op(kfp_server: FakeKFP, package: Path) -> None:
    first = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY, params={"seed": "7"})
    kfp_server.forget_requests()

    again = kubeflow.schedule_pipeline(
        kfp_server.url, package, " 0  0 * * * * ", params={"seed": 7}
    )

    assert again.action == "already scheduled"
    assert (again.recurring_run_id, again.removed) == (first.recurring_run_id, ())
    assert not again.experiment_created and again.upload.action == "already uploaded"
    assert writes(kfp_server) == []
    (listing,) = kfp_server.calls("GET", RECURRING)
    assert listing.param("experiment_id") == first.experiment_id
    assert "docloop-drift-check" in (listing.param("filter") or "")


@pytest.mark.parametrize(
    ("what", "cron", "params"),
    [("cron", "0 30 * * * *", {"seed": "7"}), ("parameters", HOURLY, {"seed": "8"})],
)
def test_a_changed_schedule_replaces_the_old_recurring_run(
    kfp_server: FakeKFP, package: Path, what: str, cron: str, params: dict[str, object]
) -> None:
    old = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY, params={"seed": "7"})
    kfp_server.forget_requests()

    new = kubeflow.schedule_pipeline(kfp_server.url, package, cron, params=params)

    assert new.action == "replaced", what
    assert new.removed == (old.recurring_run_id,)
    # disable first (never two firing), create, then delete (one recurring run per name)
    assert writes(kfp_server) == [
        f"POST {RECURRING}/{old.recurring_run_id}:disable",
        f"POST {RECURRING}",
        f"DELETE {RECURRING}/{old.recurring_run_id}",
    ]
    assert list(kfp_server.recurring_runs) == [new.recurring_run_id]
    run = kfp_server.calls("POST", RECURRING)[0].model("V2beta1RecurringRun")
    assert run.trigger.cron_schedule.cron == cron
    assert run.runtime_config.parameters == {"seed": int(str(params["seed"]))}


def test_changed_yaml_moves_the_schedule_to_the_new_version(
    kfp_server: FakeKFP, package: Path
) -> None:
    old = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)
    change(package)

    new = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)

    assert (new.action, new.upload.action) == ("replaced", "new version")
    stored = kfp_server.recurring_runs[new.recurring_run_id]
    assert stored.pipeline_version_reference.pipeline_version_id == new.upload.version_id
    assert new.upload.version_id != old.upload.version_id


def test_paused_and_resumed_in_place(kfp_server: FakeKFP, package: Path) -> None:
    first = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY, paused=True)
    assert kfp_server.calls("POST", RECURRING)[0].model("V2beta1RecurringRun").mode == "DISABLE"
    kfp_server.forget_requests()

    resumed = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)

    assert (resumed.action, resumed.recurring_run_id) == ("enabled", first.recurring_run_id)
    assert writes(kfp_server) == [f"POST {RECURRING}/{first.recurring_run_id}:enable"]
    assert kfp_server.recurring_runs[first.recurring_run_id].status == "ENABLED"


def test_a_failed_replacement_keeps_the_old_schedule(kfp_server: FakeKFP, package: Path) -> None:
    old = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)
    kfp_server.fail_next("POST", RECURRING, 500)
    kfp_server.forget_requests()

    with pytest.raises(ConfigError, match=r"HTTP 500"):
        kubeflow.schedule_pipeline(kfp_server.url, package, "0 30 * * * *")

    assert writes(kfp_server) == [
        f"POST {RECURRING}/{old.recurring_run_id}:disable",
        f"POST {RECURRING}",
        f"POST {RECURRING}/{old.recurring_run_id}:enable",
    ]
    assert list(kfp_server.recurring_runs) == [old.recurring_run_id]
    assert kfp_server.recurring_runs[old.recurring_run_id].mode == "ENABLE"
    # a retry converges
    assert kubeflow.schedule_pipeline(kfp_server.url, package, "0 30 * * * *").action == "replaced"


def test_duplicates_left_by_an_interrupted_run_are_removed_across_pages(
    kfp_server: FakeKFP, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)
    client = kubeflow.connect(kfp_server.url)
    duplicate = client.create_recurring_run(
        experiment_id=first.experiment_id,
        job_name=first.name,
        cron_expression="0 15 * * * *",
        pipeline_id=first.upload.pipeline_id,
        version_id=first.upload.version_id,
    )
    monkeypatch.setattr(kubeflow, "_PAGE_SIZE", 1)
    kfp_server.forget_requests()

    again = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)

    assert again.action == "already scheduled"
    assert again.removed == (duplicate.recurring_run_id,)
    assert list(kfp_server.recurring_runs) == [first.recurring_run_id]
    pages = kfp_server.calls("GET", RECURRING)
    assert [p.param("page_token") for p in pages] == ["", "1"]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "0 * * * *",
            r"5-field .*KFP cron has 6 fields \(seconds first\): '0 0 \* \* \* \*' runs "
            r"hourly: did you mean '0 0 \* \* \* \*'\?",
        ),
        ("0 0 * * *  * *", r"has 7 fields; KFP cron has 6 fields"),
        ("60 0 * * * *", r"seconds field '60' is out of range; values are 0-59"),
        ("0 0 24 * * *", r"hours field '24' is out of range"),
        ("0 0 0 0 * *", r"day-of-month field '0' is out of range; values are 1-31"),
        ("0 0 0 * 13 *", r"month field '13' is out of range; values are 1-12 or JAN-DEC"),
        ("0 0 0 * * 7", r"day-of-week field '7' is out of range; values are 0-6 or SUN-SAT"),
        ("0 */0 * * * *", r"minutes field '\*/0' has step '0'"),
        ("0 0 5-1 * * *", r"range '5-1' backwards"),
        ("0 0 0 L * *", r"day-of-month field 'L' has 'L'"),
        ("@every 1h", r"unsupported cron descriptor"),
        ("", r"empty cron expression"),
    ],
)
def test_bad_cron_is_rejected_before_any_request(
    kfp_server: FakeKFP, cron: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        kubeflow.schedule_pipeline(kfp_server.url, "drift-check", cron)
    assert kfp_server.requests == []


@pytest.mark.parametrize(
    "cron",
    ["0 0 9 ? * 2-6", "0 */15 * * * *", "0 0 3 * * MON-FRI", "0 0 0 1,15 jan-jun *", "@daily"],
)
def test_valid_crons_pass(cron: str) -> None:
    assert kubeflow.validate_cron(cron) == cron


@pytest.mark.parametrize(
    ("pipeline", "params", "message"),
    [
        ("drift-check", {"sed": "1"}, r"has no parameter 'sed' \(it has: classifier_champion"),
        ("drift-check", {"seed": "one"}, r"seed='one' is not a NUMBER_INTEGER"),
        ("bootstrap", {}, r"needs input_uri, labels_uri: pass --param input_uri=\.\.\."),
        ("nope", {}, r"unknown pipeline 'nope'; choose bootstrap, retrain, drift-check"),
    ],
)
def test_bad_pipeline_or_parameters(
    kfp_server: FakeKFP, pipeline: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        kubeflow.schedule_pipeline(kfp_server.url, pipeline, HOURLY, params=params)
    assert kfp_server.requests == []


def test_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach the KFP API server at {host} .*KFP_HOST"):
        kubeflow.upload_pipeline(host, "drift-check")
    assert time.monotonic() - started < 5


def test_host_comes_from_kfp_host_or_is_asked_for(
    kfp_server: FakeKFP, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match=r"pass --host URL or set KFP_HOST"):
        kubeflow.upload_pipeline(None, "drift-check")
    with pytest.raises(InvalidInput, match=r"needs an http:// or https:// URL"):
        kubeflow.upload_pipeline("localhost:8080", "drift-check")
    monkeypatch.setenv("KFP_HOST", kfp_server.url)
    monkeypatch.setenv("KFP_EXISTING_TOKEN", "s3cret")

    assert kubeflow.upload_pipeline(None, "drift-check").action == "created"
    assert {r.headers.get("authorization") for r in kfp_server.requests} == {"Bearer s3cret"}


def test_server_rejection_names_the_host(kfp_server: FakeKFP) -> None:
    kfp_server.fail_next("POST", f"{API}/pipelines/upload", 403)
    with pytest.raises(ConfigError, match=rf"{kfp_server.url} refused .*KFP_EXISTING_TOKEN"):
        kubeflow.upload_pipeline(kfp_server.url, "drift-check")


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_upload_and_schedule(kfp_server: FakeKFP, package: Path) -> None:
    code, output = cli("upload", str(package), "--host", kfp_server.url)
    assert code == 0, output
    assert "(created)" in output and "pipeline_id=" in output and "version_id=" in output
    code, output = cli("upload", str(package), "--host", kfp_server.url)
    assert code == 0 and "already uploaded" in output, output

    schedule = ["schedule", str(package), "--host", kfp_server.url, "--cron", HOURLY]
    code, output = cli(
        *schedule, "--param", "seed=3", "--name", "nightly", "--experiment", "loop", "--paused"
    )
    assert code == 0, output
    assert "(created)" in output and "recurring_run_id=" in output
    run = kfp_server.calls("POST", RECURRING)[0].model("V2beta1RecurringRun")
    assert (run.display_name, run.mode, run.runtime_config.parameters) == (
        "nightly",
        "DISABLE",
        {"seed": 3},
    )
    assert [e.display_name for e in kfp_server.experiments.values()] == ["loop"]
    code, output = cli(
        *schedule, "--param", "seed=3", "--name", "nightly", "--experiment", "loop", "--paused"
    )
    assert code == 0 and "(already scheduled)" in output, output


def test_cli_errors_exit_two(kfp_server: FakeKFP) -> None:
    code, output = cli("schedule", "drift-check", "--host", kfp_server.url, "--cron", "0 * * * *")
    assert code == 2
    assert "KFP cron has 6 fields (seconds first): '0 0 * * * *' runs hourly" in output
    code, output = cli("schedule", "drift-check", "--cron", HOURLY, "--param", "seed")
    assert code == 2 and "--param expects key=value" in output, output
    code, output = cli("upload", "drift-check")
    assert code == 2 and "KFP_HOST" in output, output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, output = cli("upload", "drift-check", "--host", f"http://127.0.0.1:{port}")
    assert code == 2 and f"cannot reach the KFP API server at http://127.0.0.1:{port}" in output
    assert kfp_server.requests == []


# -- caching --------------------------------------------------------------------------------------


def _cache_flags(spec: dict[str, object]) -> dict[str, bool]:
    """task name -> enableCache over every DAG of a pipeline spec (as the server stored it)."""
    pipeline = spec.get("pipeline_spec", spec)
    assert isinstance(pipeline, dict)
    flags: dict[str, bool] = {}
    for body in [pipeline["root"], *pipeline["components"].values()]:
        for name, task in (body.get("dag") or {}).get("tasks", {}).items():
            flags[name] = bool(task.get("cachingOptions", {}).get("enableCache", False))
    return flags


def test_schedule_states_its_caching_choice(kfp_server: FakeKFP, package: Path) -> None:
    """The recurring run keeps the compiled per-task caching, and says which tasks never cache."""
    code, output = cli("schedule", str(package), "--host", kfp_server.url, "--cron", HOURLY)
    assert code == 0, output
    assert "caching: as compiled" in output, output
    for uncached in ("drift-check", "build-retrain-dataset", "register", "deploy-kserve"):
        assert uncached in output.split("never cached:")[1], output
    run = kfp_server.calls("POST", RECURRING)[0].json()
    assert "enable_caching" not in str(run)  # a version reference ignores it in kfp.Client


def test_schedule_no_cache_runs_a_version_with_caching_off_everywhere(
    kfp_server: FakeKFP, package: Path
) -> None:
    cached = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY)
    versions = kfp_server.versions[cached.upload.pipeline_id]
    assert any(_cache_flags(versions[-1].pipeline_spec).values())  # as compiled: some tasks cache

    result = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY, cache=False)
    assert result.action == "replaced" and result.caching == "off"
    version = next(v for v in versions if v.pipeline_version_id == result.upload.version_id)
    flags = _cache_flags(version.pipeline_spec)
    assert flags and not any(flags.values())
    assert result.upload.version_name.endswith("-nocache")
    again = kubeflow.schedule_pipeline(kfp_server.url, package, HOURLY, cache=False)
    assert again.action == "already scheduled"
    code, output = cli(
        "schedule", str(package), "--host", kfp_server.url, "--cron", HOURLY, "--no-cache"
    )
    assert code == 0 and "caching: off for every task" in output, output
