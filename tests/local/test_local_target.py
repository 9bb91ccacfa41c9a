"""The local deploy target with real processes: ``docloop serve`` servers and the router.

Everything runs for real on 127.0.0.1: KServe ModelServer processes serving the session's tiny
trained models, the router process in front of them, KServe V1 requests through the router, and
:func:`docloop.deploy.rollout.run_rollout` driving the target as it drives the cluster's. Two
"versions" are the same model files under another folder (hard links) and another registry
version: the label tells the variants apart.

The tests share one deployment (a module fixture) and run in file order: each one starts from
where the previous one left it, so that only four servers load the models (~5-7 s each on two
cores). The fixture's finalizer stops every process, also after a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from docloop.config import CanaryConfig, DeployConfig, DocloopConfig
from docloop.deploy import local_target
from docloop.deploy.analysis import VariantStats
from docloop.deploy.inference_service import PredictorRelease
from docloop.deploy.local_target import (
    ROUTER_MODULE,
    SERVER_MODULE,
    LocalState,
    LocalTarget,
    free_port,
    port_free,
    process_alive,
)
from docloop.deploy.rollout import StatsSource, run_rollout
from docloop.deploy.router import VARIANT_HEADER, bucket
from docloop.errors import DeployFailed, InvalidInput, RolloutNotReady
from docloop.feedback.records import iter_predictions
from docloop.store.db import Store, open_store
from docloop.store.tables import Deployment, utcnow

if TYPE_CHECKING:  # imported for real by pytest_plugins (so that its asserts are rewritten)
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = [pytest.mark.local, pytest.mark.slow]  # real ModelServer processes and a router

NAME = "docloop"
WORDS = ["Invoice", "Statement", "Patient:", "Jane", "Doe", "MRN", "4821937", "the", "report"]
BODY = {
    "instances": [
        {
            "pages": [
                {
                    "page": 0,
                    "words": WORDS,
                    "boxes": [[80 + i * 100, 60, 160 + i * 100, 72] for i in range(len(WORDS))],
                }
            ]
        }
    ]
}


@dataclass
class Deployed:
    """The module's deployment: the target, its releases and the state store."""

    config: DocloopConfig
    target: LocalTarget
    store: Store
    store_url: str
    v1: PredictorRelease
    v2: PredictorRelease
    v3: PredictorRelease
    broken: PredictorRelease
    started: datetime
    models: TinyModels


def release(classify: Path, extract: Path, version: str) -> PredictorRelease:
    return PredictorRelease(
        {"classify": classify.as_uri(), "extract": str(extract)},
        {"classify": version, "extract": "1"},
    )


def linked_copy(source: Path, target: Path) -> Path:
    """The same model files under another folder (hard links: no copying of 90 MB)."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


@pytest.fixture(scope="module")
def deployed(
    tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("local-target")
    copy = root / "models-v2"
    v2_classifier = linked_copy(tiny_models.classifier, copy / "classifier")
    v2_extractor = linked_copy(tiny_models.extractor, copy / "extractor")
    (root / "empty" / "classifier").mkdir(parents=True)
    (root / "empty" / "extractor").mkdir(parents=True)
    store_url = f"sqlite:///{root / 'state.db'}"
    store = open_store(store_url)
    config = DocloopConfig(
        data_root=(root / "data").as_uri(),
        deploy=DeployConfig(target="local", local_port=free_port(), ready_timeout_s=60),
    )
    target = LocalTarget(config, prediction_log=store_url)
    try:
        yield Deployed(
            config=config,
            target=target,
            store=store,
            store_url=store_url,
            v1=release(tiny_models.classifier, tiny_models.extractor, "1"),
            v2=release(v2_classifier, v2_extractor, "2"),
            v3=release(v2_classifier, v2_extractor, "3"),
            broken=release(root / "empty" / "classifier", root / "empty" / "extractor", "9"),
            started=utcnow(),
            models=tiny_models,
        )
    finally:
        try:
            target.stop_all()
        finally:
            for pid in list(local_target._CHILDREN):  # a safety net should the state be lost
                child = local_target._CHILDREN.pop(pid)
                if child.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    child.wait(10)
            store.close()


def predict(
    url: str, count: int, request_ids: list[str | None] | None = None
) -> list[tuple[int, str]]:
    """``count`` V1 predictions through ``url`` (4 at a time): (status, variant) each."""
    ids = request_ids if request_ids is not None else [None] * count

    def one(client: httpx.Client, request_id: str | None) -> tuple[int, str]:
        headers = {"x-request-id": request_id} if request_id else {}
        answer = client.post(f"{url}/v1/models/{NAME}:predict", json=BODY, headers=headers)
        return answer.status_code, answer.headers.get(VARIANT_HEADER, "")

    with httpx.Client(timeout=60, trust_env=False) as client, ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda rid: one(client, rid), ids))


def variants(answers: list[tuple[int, str]]) -> Counter[str]:
    assert {status for status, _ in answers} == {200}, answers
    return Counter(variant for _, variant in answers)


def wait_dead(target: LocalTarget, role: str) -> LocalState:
    """The state once ``role``'s process is gone (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + 10
    while (state := target.state()) is not None and state.alive.get(role):
        assert time.monotonic() < deadline, f"{role} still alive"
        time.sleep(0.05)
    assert state is not None
    return state


def test_refusals_start_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"deploy\.target: kserve"):
        LocalTarget(DocloopConfig(data_root="s3://bucket/docloop"))
    with socket.socket() as taken:  # something that is not our router holds deploy.local_port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = DocloopConfig(
            data_root=str(tmp_path), deploy=DeployConfig(service_name="other", local_port=port)
        )
        target = LocalTarget(config)
        on_s3 = PredictorRelease({"classify": "s3://models/c/1"}, {"classify": "1"})
        with pytest.raises(InvalidInput, match=r"deploy\.target: kserve"):
            target.first_deploy(on_s3)
        somewhere = PredictorRelease({"classify": str(tmp_path)}, {"classify": "1"})
        with pytest.raises(DeployFailed, match=rf"port {port} .*\(deploy\.local_port"):
            target.first_deploy(somewhere)
        with pytest.raises(DeployFailed, match="nothing is deployed"):
            target.start_canary(somewhere, 10)
    assert target.state() is None and not target.state_path.exists()


def test_first_deploy_serves_all_traffic_from_stable(deployed: Deployed) -> None:
    target, v1 = deployed.target, deployed.v1
    assert target.state() is None

    state = target.first_deploy(v1)

    assert (state.stable_label, state.canary_label, state.canary_percent) == (v1.label, None, 0)
    assert state.alive == {"stable": True, "router": True}
    saved = json.loads(target.state_path.read_text())
    assert saved["generation"] == 1 and saved["canary"] is None
    assert saved["stable"]["label"] == v1.label
    assert saved["stable"]["folders"] == {
        "classify": str(deployed.models.classifier.resolve()),
        "extract": str(deployed.models.extractor.resolve()),
    }
    assert saved["router"]["port"] == deployed.config.deploy.local_port
    assert Path(saved["stable"]["log"]).is_file()
    assert target.url == f"http://127.0.0.1:{deployed.config.deploy.local_port}"

    assert variants(predict(target.url, 12)) == {v1.label: 12}
    health = httpx.get(f"{target.url}/router/healthz", trust_env=False).json()
    assert (health["generation"], health["stable"], health["canary"]) == (1, v1.label, None)
    assert target.variant_errors(v1.label) == (12, 0)
    # repeating it changes nothing: same process, same generation
    again = target.first_deploy(v1)
    assert (again.generation, again.stable) == (1, state.stable)


def test_canary_gets_its_share_deterministically_per_request_id(deployed: Deployed) -> None:
    target, v1, v2 = deployed.target, deployed.v1, deployed.v2

    previous = target.start_canary(v2, 20)
    assert previous["label"] == v1.label and previous["generation"] == 2
    assert set(previous["folders"]) == {"classify", "extract"}
    started = target.state()
    assert started is not None and (started.canary_label, started.canary_percent) == (v2.label, 20)
    ready = target.wait_canary(previous)
    assert ready.alive == {"stable": True, "canary": True, "router": True}

    ids: list[str | None] = [f"split-{i}" for i in range(200)]
    seen = variants(predict(target.url, 200, ids))
    expected = sum(bucket(str(rid)) < 20 for rid in ids)
    assert seen == {v2.label: expected, v1.label: 200 - expected}
    assert 20 <= seen[v2.label] <= 60  # 10-30 %: within a binomial tolerance of 20 %
    for rid in ("same-a", "same-b", "same-c"):
        assert len(variants(predict(target.url, 4, [rid] * 4))) == 1

    requests, errors = target.variant_errors(v2.label)
    assert requests >= seen[v2.label] and errors == 0
    stats = target.router_stats()
    assert stats["variants"][v2.label]["role"] == "canary"
    assert stats["variants"][v2.label]["latency_ms"]["p95"] > 0


def router_stats_source(
    target: LocalTarget, accuracy: dict[str, float], canaries: list[tuple[int, int]]
) -> StatsSource:
    """Requests and errors from the router; latency and reviewed accuracy fixed per variant."""

    def collect(since: datetime, release: PredictorRelease, variant: str) -> VariantStats:
        state = target.state()
        if state is not None and state.canary is not None:
            canaries.append((state.canary.pid, state.canary.port))
        requests, errors = target.variant_errors(variant)
        return VariantStats(
            variant=variant,
            requests=requests,
            errors=errors,
            latencies_ms=[30.0] * requests,
            reviewed=20,
            correct=round(20 * accuracy.get(variant, 0.9)),
        )

    return collect


def test_run_rollout_promotes_then_rolls_back_a_worse_canary(deployed: Deployed) -> None:
    target, v1, v2, v3 = deployed.target, deployed.v1, deployed.v2, deployed.v3
    before = target.state()
    assert before is not None and before.stable is not None and before.canary is not None
    old_stable, canary_pid = before.stable, before.canary.pid
    policy = CanaryConfig(traffic_percent=30, min_requests=20, min_feedback=10, poll_s=0.01,
                          max_duration_s=120)  # fmt: skip
    config = deployed.config.deploy.model_copy(update={"canary": policy})
    promoted: list[int] = []
    rolled_back: list[list[str]] = []

    def traffic(_: float) -> None:  # the analysis waits while live traffic comes in
        predict(target.url, 24)

    pids: list[tuple[int, int]] = []
    result = run_rollout(
        target, deployed.store, config, v2, v1.label,
        router_stats_source(target, {}, pids),
        on_promote=lambda: promoted.append(1), on_rollback=rolled_back.append, sleep=traffic,
    )  # fmt: skip
    assert result.status == "promoted" and promoted == [1] and not rolled_back
    assert result.verdict is not None and result.verdict.decision == "promote"
    assert {c.name: c.passed for c in result.verdict.checks} == {
        "error_rate": True, "p95_latency": True, "live_accuracy": True
    }  # fmt: skip
    state = target.state()
    assert state is not None and (state.stable_label, state.canary_label) == (v2.label, None)
    assert state.stable is not None and state.stable.pid == canary_pid  # the running canary
    assert not process_alive(old_stable.pid, SERVER_MODULE, old_stable.port)
    assert variants(predict(target.url, 12)) == {v2.label: 12}

    # a canary with worse live accuracy is rolled back: traffic back on v2, canary stopped
    pids.clear()
    result = run_rollout(
        target, deployed.store, config, v3, v2.label,
        router_stats_source(target, {v3.label: 0.5}, pids),
        on_promote=lambda: promoted.append(2), on_rollback=rolled_back.append, sleep=traffic,
    )  # fmt: skip
    assert result.status == "rolled_back" and promoted == [1]
    assert rolled_back[0][0].startswith("canary is worse than the champion: live accuracy 0.500")
    state = target.state()
    assert state is not None and (state.stable_label, state.canary_label) == (v2.label, None)
    assert pids and not any(process_alive(pid, SERVER_MODULE, port) for pid, port in set(pids))
    assert variants(predict(target.url, 12)) == {v2.label: 12}
    with deployed.store.read() as session:
        rows = session.query(Deployment).order_by(Deployment.id).all()
        assert [(r.versions["classify"], r.status, r.target) for r in rows] == [
            ("2", "promoted", "local"), ("3", "rolled_back", "local")
        ]  # fmt: skip
    # the servers wrote the prediction log (--prediction-log = the state store)
    deadline = time.monotonic() + 15
    while not any(True for _ in iter_predictions(deployed.store, deployed.started, None)):
        assert time.monotonic() < deadline, "no prediction reached the state store"
        time.sleep(0.2)


def test_broken_canary_is_not_ready_and_rollback_keeps_stable(deployed: Deployed) -> None:
    quick = deployed.config.deploy.model_copy(update={"ready_timeout_s": 20})
    target = LocalTarget(
        deployed.config.model_copy(update={"deploy": quick}), prediction_log=deployed.store_url
    )
    stable = deployed.v2.label

    previous = target.start_canary(deployed.broken, 50)
    began = time.monotonic()
    with pytest.raises(RolloutNotReady) as raised:
        target.wait_canary(previous)
    assert time.monotonic() - began < 20  # the server exited: no need to wait for the timeout
    assert "exited before it was ready" in str(raised.value)
    assert str(target.folder / f"server-{deployed.broken.label}.log") in str(raised.value)
    assert "is not a docloop model" in " ".join(str(raised.value).split())  # the log's tail
    after = target.rollback(previous)
    assert (after.stable_label, after.canary_label) == (stable, None)
    assert variants(predict(target.url, 8)) == {stable: 8}

    # a canary that is not ready within ready_timeout_s: rolled back, its process stopped
    impatient = LocalTarget(
        deployed.config.model_copy(
            update={"deploy": quick.model_copy(update={"ready_timeout_s": 0.5})}
        )
    )
    previous = impatient.start_canary(deployed.v3, 50)
    waiting = impatient.state()
    assert waiting is not None and waiting.canary is not None
    with pytest.raises(RolloutNotReady, match=r"within 0\.5 s \(deploy\.ready_timeout_s\)"):
        impatient.wait_canary(previous)
    after = impatient.rollback(previous)
    assert not process_alive(waiting.canary.pid, SERVER_MODULE, waiting.canary.port)
    assert (after.stable_label, after.canary_label) == (stable, None)
    # rollback and promote without a canary are no-ops
    assert impatient.rollback(previous).generation == after.generation
    assert impatient.promote().generation == after.generation
    assert variants(predict(target.url, 4)) == {stable: 4}


def test_another_process_finds_heals_and_the_servers_outlive_it(deployed: Deployed) -> None:
    target = deployed.target
    before = target.state()
    assert before is not None and before.stable is not None and before.router is not None
    assert LocalTarget(deployed.config).state() == before  # a new object sees the same state
    requests, errors = target.variant_errors(deployed.v2.label)
    # "a reboot": the stable server dies (the router answers 502 and counts it), then the router
    os.killpg(before.stable.pid, signal.SIGKILL)
    wait_dead(target, "stable")
    failed = httpx.post(f"{target.url}/v1/models/{NAME}:predict", json=BODY, trust_env=False)
    assert failed.status_code == 502 and failed.headers[VARIANT_HEADER] == deployed.v2.label
    assert f"the stable variant {deployed.v2.label}" in failed.json()["error"]
    assert target.variant_errors(deployed.v2.label) == (requests + 1, errors + 1)
    os.killpg(before.router.pid, signal.SIGKILL)
    dead = wait_dead(target, "router")
    assert dead.alive == {"stable": False, "router": False}

    script = (
        "import json, sys\n"
        "from docloop.config import load_config\n"
        "from docloop.deploy.local_target import LocalTarget\n"
        "target = LocalTarget(load_config(), prediction_log=sys.argv[1])\n"
        "seen = target.state().as_json()\n"
        "healed = target.heal().as_json()\n"
        "print(json.dumps({'seen': seen, 'healed': healed}))\n"
    )
    env = {
        **os.environ,
        "DOCLOOP_CONFIG_YAML": yaml.safe_dump(deployed.config.model_dump(mode="json")),
    }
    env.pop("DOCLOOP_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", script, deployed.store_url],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["seen"]["stable"] == deployed.v2.label
    assert report["seen"]["processes"]["stable"]["alive"] is False
    healed = report["healed"]
    assert healed["generation"] > before.generation and healed["stable"] == deployed.v2.label

    # the healer has exited; what it started keeps serving
    now = target.state()
    assert now is not None and now.stable is not None and now.router is not None
    assert now.alive == {"stable": True, "router": True}
    assert now.stable.pid not in local_target._CHILDREN
    assert now.stable.pid == healed["processes"]["stable"]["pid"]
    assert variants(predict(target.url, 4)) == {deployed.v2.label: 4}

    target.stop_all()
    assert target.state() is None
    assert not process_alive(now.stable.pid, SERVER_MODULE, now.stable.port)
    assert not process_alive(now.router.pid, ROUTER_MODULE, now.router.port)
    assert port_free(deployed.config.deploy.local_port)
    target.stop_all()  # safe to repeat
