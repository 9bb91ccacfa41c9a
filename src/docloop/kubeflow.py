"""The one bridge to the KFP SDK: compile, upload and schedule a docloop checkout's pipelines.

Imported lazily by the CLI (``docloop compile``, ``docloop upload``, ``docloop schedule``), so the
runtime library never needs ``kfp``. Components and pipelines live next to the package in the
project tree (``components/``, ``pipelines/``); the compiled YAML is committed, and tests recompile
and diff it. Uploading and scheduling go through the real ``kfp.Client`` against a KFP v2 API server
and are idempotent: running them again with the same inputs changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import re
import ssl
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import yaml

from docloop import __version__
from docloop.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from kfp import Client

logger = logging.getLogger(__name__)

PIPELINE_NAMES = ("bootstrap", "retrain", "drift_check")
"""Pipelines compiled to ``pipelines/compiled/<name>.yaml``; each module defines ``<name>``."""


def project_root(start: Path | None = None) -> Path:
    """The docloop checkout holding ``components/`` and ``pipelines/`` (cwd or a parent).

    Raises:
        ConfigError: no checkout above ``start``.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "components" / "compile.py").is_file() and (folder / "pipelines").is_dir():
            return folder
    raise ConfigError(
        f"no docloop checkout (components/ and pipelines/) at or above {here}; run from the "
        "repository root or pass --root"
    )


def _importable(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def compile_pipeline(name: str, target: Path, root: Path | None = None) -> Path:
    """Compile the pipeline ``pipelines/<name>.py`` to ``target``.

    Raises:
        ConfigError: ``name`` is not a docloop pipeline.
    """
    if name not in PIPELINE_NAMES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINE_NAMES)}")
    from kfp import compiler

    _importable(root or project_root())
    module = importlib.import_module(f"pipelines.{name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(getattr(module, name), str(target))
    return target


def compile_all(root: Path | None = None) -> list[Path]:
    """Compile every component (YAML + README) and every pipeline; return the written files."""
    root = root or project_root()
    _importable(root)
    components = importlib.import_module("components.compile")
    written: list[Path] = []
    for name in components.COMPONENT_NAMES:
        folder = root / "components" / name
        written.append(components.compile_component(name, folder))
        (folder / "README.md").write_text(components.readme(name), encoding="utf-8")
        written.append(folder / "README.md")
    if components.update_readme(root / "README.md"):
        written.append(root / "README.md")
    for name in PIPELINE_NAMES:
        written.append(
            compile_pipeline(name, root / "pipelines" / "compiled" / f"{name}.yaml", root)
        )
    for path in written:
        logger.info("wrote %s", path.relative_to(root))
    return written


# --- upload and schedule through the KFP API server (kfp.Client) --------------------------------

KFP_HOST_ENV = "KFP_HOST"
"""Environment variable read when no ``--host`` is given."""

KFP_TOKEN_ENV = "KFP_EXISTING_TOKEN"
"""Environment variable with a bearer token, passed as ``kfp.Client(existing_token=...)``."""

DEFAULT_EXPERIMENT = "docloop"
DEFAULT_SERVICE_ACCOUNT = "docloop-pipeline"
CRON_HELP = "KFP cron has 6 fields (seconds first): '0 0 * * * *' runs hourly"

_PAGE_SIZE = 100
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # compiled pipelines are large
_CONNECT_TIMEOUT_S = 10.0
_PIPELINE_ALIASES = {
    "bootstrap": "bootstrap",
    "retrain": "retrain",
    "drift-check": "drift_check",
    "drift_check": "drift_check",
}
_CRON_DESCRIPTORS = (
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("seconds", 0, 59, {}),
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {name: index + 1 for index, name in enumerate(_MONTHS)}),
    ("day-of-week", 0, 6, {name: index for index, name in enumerate(_WEEKDAYS)}),
)

ScheduleAction = Literal["created", "already scheduled", "replaced", "enabled", "paused"]


@dataclass(frozen=True)
class PipelinePackage:
    """A compiled pipeline YAML as the KFP API server will see it.

    Attributes:
        path: The YAML file.
        name: ``pipelineInfo.name``: the KFP pipeline's name (e.g. ``docloop-drift-check``).
        description: ``pipelineInfo.description``.
        sha256: Hex digest of the file's bytes (what the default version name is made of).
        parameters: Root input parameters: name -> ``parameterType`` (``STRING``, ...).
        required: Root input parameters without a default.
        never_cached: Components (IR names) whose tasks have caching off, sorted.
        cached: Components whose tasks KFP may serve from its cache, sorted.
    """

    path: Path
    name: str
    description: str
    sha256: str
    parameters: dict[str, str]
    required: frozenset[str]
    never_cached: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()

    @property
    def default_version_name(self) -> str:
        """``<docloop version>-<12 hex of sha256>``: identical YAML, identical name."""
        return f"{__version__}-{self.sha256[:12]}"


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload_pipeline` found or created on the KFP API server.

    Attributes:
        pipeline_name: The KFP pipeline's name.
        pipeline_id: Its id.
        version_name: The pipeline version's name.
        version_id: Its id.
        sha256: Digest of the uploaded YAML.
        pipeline_created: The pipeline did not exist before this call.
        version_created: This call added the version (False: it was already uploaded).
    """

    pipeline_name: str
    pipeline_id: str
    version_name: str
    version_id: str
    sha256: str
    pipeline_created: bool
    version_created: bool

    @property
    def action(self) -> str:
        """``created`` (new pipeline), ``new version`` or ``already uploaded``."""
        if self.pipeline_created:
            return "created"
        return "new version" if self.version_created else "already uploaded"


@dataclass(frozen=True)
class ScheduleResult:
    """What :func:`schedule_pipeline` left on the KFP API server.

    Attributes:
        name: The recurring run's display name.
        recurring_run_id: Its id.
        experiment_id: The experiment it runs in.
        experiment_created: This call created the experiment.
        cron: The 6-field cron expression.
        enabled: Whether the recurring run is enabled (False with ``paused``).
        parameters: The runtime parameters, typed as the pipeline declares them.
        upload: The pipeline version it runs (uploaded first when needed).
        action: ``created``, ``already scheduled``, ``replaced`` (the old recurring run was
            deleted), ``enabled`` or ``paused`` (same schedule, mode switched in place).
        removed: Ids of recurring runs with the same name that were deleted.
        caching: ``as compiled`` (per task: :attr:`never_cached` never, the others on their
            inputs) or ``off`` (a version with caching off on every task).
        never_cached: The components whose tasks are never served from KFP's cache.
    """

    name: str
    recurring_run_id: str
    experiment_id: str
    experiment_created: bool
    cron: str
    enabled: bool
    parameters: dict[str, Any]
    upload: UploadResult
    action: ScheduleAction
    removed: tuple[str, ...] = ()
    caching: Literal["as compiled", "off"] = "as compiled"
    never_cached: tuple[str, ...] = ()


def validate_cron(expression: str) -> str:
    """Check a KFP cron expression (robfig/cron, seconds first); return it with single spaces.

    KFP's scheduler reads 6 fields: seconds, minutes, hours, day of month, month, day of week
    (0-6 or SUN-SAT), each ``*``, ``?``, ``N``, ``N-M`` or a list of those, with an optional
    ``/step``; or one of ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. A
    standard 5-field cron is rejected: KFP would read it shifted by one field (``0 * * * *``
    would run every minute).

    Raises:
        InvalidInput: the expression is not one KFP runs as intended; the message names the fix.
    """
    text = " ".join(expression.split())
    if not text:
        raise InvalidInput(f"empty cron expression; {CRON_HELP}")
    if text.startswith("@"):
        if text.lower() in _CRON_DESCRIPTORS:
            return text.lower()
        raise InvalidInput(
            f"unsupported cron descriptor {text!r}; use one of {', '.join(_CRON_DESCRIPTORS)} "
            f"or a 6-field expression ({CRON_HELP})"
        )
    fields = text.split(" ")
    if len(fields) == 5:
        raise InvalidInput(
            f"{text!r} is a 5-field (standard) cron, which KFP would read shifted by one field; "
            f"{CRON_HELP}: did you mean '0 {text}'?"
        )
    if len(fields) != 6:
        raise InvalidInput(f"{text!r} has {len(fields)} fields; {CRON_HELP}")
    for value, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(value, low, high, names)
        if problem:
            raise InvalidInput(
                f"invalid cron {text!r}: {field} field {value!r} {problem}; {CRON_HELP}"
            )
    return text


def _cron_field_problem(value: str, low: int, high: int, names: dict[str, int]) -> str | None:
    def number(token: str) -> int | None:
        if token.isdigit():
            return int(token)
        return names.get(token.upper())

    allowed = f"{low}-{high}" + (
        f" or {min(names, key=names.__getitem__)}-{max(names, key=names.__getitem__)}"
        if names
        else ""
    )
    for term in value.split(","):
        span, slash, step = term.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            return f"has step {step!r}; a step is a whole number above 0"
        if span in ("*", "?"):
            continue
        start, dash, end = span.partition("-")
        bounds = [number(start), number(end) if dash else number(start)]
        if None in bounds:
            return f"has {span!r}; use *, ?, N, N-M, lists (N,M) and /step with N in {allowed}"
        first, last = (int(bound) for bound in bounds if bound is not None)
        if not (low <= first <= high and low <= last <= high):
            return f"is out of range; values are {allowed}"
        if first > last:
            return f"has the range {span!r} backwards"
    return None


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` (the CLI's ``--param``) -> a dict.

    Raises:
        InvalidInput: an item without ``=`` or a key given twice.
    """
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--param expects key=value, got {pair!r}")
        if key in params:
            raise InvalidInput(f"--param {key} given twice")
        params[key] = value
    return params


def load_package(pipeline: str | Path, root: Path | None = None) -> PipelinePackage:
    """Resolve ``bootstrap`` / ``retrain`` / ``drift-check`` or a YAML path and read it.

    A name resolves to ``pipelines/compiled/<name>.yaml`` of the checkout (``root``, else the
    working directory or a parent).

    Raises:
        InvalidInput: not a known pipeline name, a missing file, or not a compiled KFP pipeline.
        ConfigError: a name was given outside a docloop checkout.
    """
    text = str(pipeline)
    if text in _PIPELINE_ALIASES:
        path = project_root(root) / "pipelines" / "compiled" / f"{_PIPELINE_ALIASES[text]}.yaml"
    else:
        path = Path(text)
        if path.suffix not in (".yaml", ".yml"):
            raise InvalidInput(
                f"unknown pipeline {text!r}; choose bootstrap, retrain, drift-check or give the "
                "path of a compiled pipeline YAML"
            )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}; run `docloop compile`") from exc
    try:
        spec = next(iter(yaml.load_all(data, Loader=_YAML_LOADER)), None)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not YAML: {exc}") from exc
    info = spec.get("pipelineInfo") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(info, dict) or not info.get("name"):
        raise InvalidInput(f"{path} is not a compiled KFP pipeline (no pipelineInfo.name)")
    root_spec = spec.get("root") or {}
    inputs = root_spec.get("inputDefinitions") or {} if isinstance(root_spec, dict) else {}
    declared = inputs.get("parameters") or {} if isinstance(inputs, dict) else {}
    declared = {key: value for key, value in declared.items() if isinstance(value, dict)}
    return PipelinePackage(
        path=path,
        name=str(info["name"]),
        description=str(info.get("description") or ""),
        sha256=hashlib.sha256(data).hexdigest(),
        parameters={
            key: str(value.get("parameterType", "STRING")) for key, value in declared.items()
        },
        required=frozenset(
            key
            for key, value in declared.items()
            if not value.get("isOptional") and "defaultValue" not in value
        ),
        **_caching_of(spec),
    )


def _container_tasks(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component IR name without ``comp-`` and ``-N``, task) for each container task."""
    components = spec.get("components") or {}
    for body in [spec.get("root") or {}, *components.values()]:
        for task in ((body.get("dag") or {}).get("tasks") or {}).values():
            ref = str((task.get("componentRef") or {}).get("name", ""))
            if "executorLabel" in (components.get(ref) or {}):
                yield re.sub(r"-\d+$", "", ref.removeprefix("comp-")), task


def _caching_of(spec: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    on: set[str] = set()
    off: set[str] = set()
    for component, task in _container_tasks(spec):
        enabled = bool((task.get("cachingOptions") or {}).get("enableCache", False))
        (on if enabled else off).add(component)
    return {"never_cached": tuple(sorted(off)), "cached": tuple(sorted(on - off))}


def without_cache(package: PipelinePackage, folder: Path) -> PipelinePackage:
    """A copy of ``package`` in ``folder`` with caching off on every task.

    ``kfp.Client``'s ``enable_caching`` only rewrites a pipeline *package* it submits; a run or
    recurring run of an uploaded version (what docloop schedules) runs that version's compiled
    settings. Turning the cache off for a schedule therefore means uploading a version compiled
    that way.
    """
    documents = list(yaml.load_all(package.path.read_bytes(), Loader=_YAML_LOADER))
    spec = documents[0]
    for body in [spec.get("root") or {}, *(spec.get("components") or {}).values()]:
        for task in ((body.get("dag") or {}).get("tasks") or {}).values():
            task["cachingOptions"] = {}  # nested pipelines' tasks too
    path = folder / f"{package.path.stem}-nocache.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return load_package(path)


def typed_params(package: PipelinePackage, params: Mapping[str, object]) -> dict[str, Any]:
    """Check names against the pipeline's root parameters and convert strings to their types.

    Raises:
        InvalidInput: an unknown name, a value of the wrong type, or a required one missing.
    """
    typed: dict[str, Any] = {}
    for key, value in params.items():
        if key not in package.parameters:
            known = ", ".join(sorted(package.parameters)) or "none"
            raise InvalidInput(
                f"pipeline {package.name} has no parameter {key!r} (it has: {known})"
            )
        typed[key] = _typed(key, value, package.parameters[key])
    missing = sorted(package.required - set(typed))
    if missing:
        raise InvalidInput(
            f"pipeline {package.name} needs {', '.join(missing)}: pass "
            + " ".join(f"--param {key}=..." for key in missing)
        )
    return typed


def _typed(key: str, value: object, kind: str) -> object:
    if not isinstance(value, str) or kind == "STRING":
        return value
    try:
        if kind == "NUMBER_INTEGER":
            return int(value)
        if kind == "NUMBER_DOUBLE":
            return float(value)
        if kind == "BOOLEAN":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        if kind in ("LIST", "STRUCT"):
            loaded = json.loads(value)
            if not isinstance(loaded, list if kind == "LIST" else dict):
                raise ValueError(value)
            return loaded
    except ValueError as exc:
        raise InvalidInput(f"parameter {key}={value!r} is not a {kind}") from exc
    return value


def resolve_host(host: str | None = None) -> str:
    """``host``, else ``$KFP_HOST``; without a trailing slash.

    Raises:
        InvalidInput: neither is set, or the URL has no http(s) scheme.
    """
    value = (host or os.environ.get(KFP_HOST_ENV) or "").strip().rstrip("/")
    if not value:
        raise InvalidInput(
            f"no KFP API server: pass --host URL or set {KFP_HOST_ENV} (e.g. http://localhost:8080 "
            "after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)"
        )
    scheme = value.partition("://")[0] if "://" in value else ""
    if scheme not in ("http", "https"):
        raise InvalidInput(
            f"KFP host {value!r} needs an http:// or https:// URL, e.g. http://{value.split('://')[-1]}"
        )
    return value


def connect(
    host: str | None = None, *, token: str | None = None, namespace: str | None = None
) -> Client:
    """A ``kfp.Client`` for ``host`` (or ``$KFP_HOST``), checked to be reachable.

    Authentication is what ``kfp.Client(host=...)`` does by default (``~/.config/kfp/context.json``
    cookies/headers), plus ``token`` or ``$KFP_EXISTING_TOKEN`` as a bearer token
    (``existing_token``). ``namespace`` selects a multi-user profile namespace.

    Raises:
        InvalidInput: no host, or not an http(s) URL.
        ConfigError: the host cannot be reached or refuses the client.
    """
    url = resolve_host(host)
    token = token or os.environ.get(KFP_TOKEN_ENV) or None
    _check_reachable(url, token)
    from kfp import Client as KFPClient

    with warnings.catch_warnings(), _kfp_errors(url, "connecting"), _quiet():
        # kfp warns on every construction that it needs a v2 backend; that is what docloop targets
        warnings.simplefilter("ignore", FutureWarning)
        client = KFPClient(host=url, existing_token=token, namespace=namespace or "kubeflow")
    logger.debug("connected to the KFP API server at %s", url)
    return client


def upload_pipeline(
    client: Client | str | None,
    pipeline: str | Path,
    *,
    version_name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    root: Path | None = None,
) -> UploadResult:
    """Upload a compiled pipeline: create it if missing, else add a version; idempotent.

    The version is named ``version_name`` or ``<docloop version>-<sha256[:12]>`` of the YAML, so
    uploading identical YAML again finds that version and changes nothing, and changed YAML gets a
    new version. A new pipeline is created with ``upload_pipeline`` (KFP names its first version
    after the pipeline) and then gets the named version too, so every schedule docloop makes runs a
    version whose name says which YAML it is. A concurrent upload of the same pipeline or version
    (HTTP 409) is resolved by looking it up again, so retrying is always safe.

    Args:
        client: A ``kfp.Client``, or a host URL / None (``$KFP_HOST``) for :func:`connect`.
        pipeline: ``bootstrap``, ``retrain``, ``drift-check`` or a path to a compiled YAML.
        version_name: The version's name; default: ``<docloop version>-<sha256[:12]>``. An
            existing version of that name counts as uploaded (KFP versions are immutable).
        namespace: Multi-user KFP: the namespace that owns the pipeline; None: shared.
        description: For the pipeline (when created) and the version.
        root: The checkout that holds ``pipelines/compiled`` (for a pipeline name).

    Returns:
        The pipeline and version ids and what was done.

    Raises:
        InvalidInput: an unknown pipeline / unreadable YAML, or the server rejected the upload.
        ConfigError: the server cannot be reached or refuses the credentials.
    """
    package = load_package(pipeline, root)
    kfp_client = _client(client, namespace)
    name = version_name or package.default_version_name
    host = _host_of(kfp_client)
    with _kfp_errors(host, f"uploading {package.name}"):
        pipeline_id = _find_pipeline(kfp_client, package.name, namespace)
        created = pipeline_id is None
        if pipeline_id is None:
            pipeline_id = _create_pipeline(kfp_client, package, description, namespace)
        version_id = _find_version(kfp_client, pipeline_id, name)
        added = version_id is None
        if version_id is None:
            version_id = _create_version(kfp_client, package, pipeline_id, name, description)
    result = UploadResult(
        pipeline_name=package.name,
        pipeline_id=pipeline_id,
        version_name=name,
        version_id=version_id,
        sha256=package.sha256,
        pipeline_created=created,
        version_created=added,
    )
    logger.info(
        "%s: pipeline %s (%s) version %s (%s)",
        result.action,
        package.name,
        pipeline_id,
        name,
        version_id,
    )
    return result


def schedule_pipeline(
    client: Client | str | None,
    pipeline: str | Path,
    cron: str,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    name: str | None = None,
    params: Mapping[str, object] | None = None,
    service_account: str | None = DEFAULT_SERVICE_ACCOUNT,
    paused: bool = False,
    version_name: str | None = None,
    namespace: str | None = None,
    root: Path | None = None,
    cache: bool = True,
) -> ScheduleResult:
    """Run a pipeline on a cron schedule as a KFP recurring run; idempotent.

    Uploads the pipeline first (:func:`upload_pipeline`), creates the experiment if missing, and
    creates a recurring run of that exact pipeline version with ``no_catchup=True`` and
    ``max_concurrency=1``. Recurring runs are found by display name in the experiment:

    - one with the same cron, version, parameters, service account, catch-up and concurrency is
      left alone (``already scheduled``); if only enabled/paused differs it is switched in place
      (``enable_recurring_run`` / ``disable_recurring_run``);
    - one that differs is **replaced**: KFP v2 recurring runs cannot be updated (the API has
      create, get, list, enable, disable and delete only), so the old one is disabled, the new one
      created, and then the old one deleted. Disabling first means the two never fire side by
      side; if creating fails, the old one is enabled again, so the previous schedule stays in
      force; deleting (rather than leaving it disabled) keeps one recurring run per name (KFP does
      not enforce unique names) so the next call finds exactly one. Runs already started by the
      old recurring run stay in the experiment. An interrupted replacement converges on retry.

    Args:
        client: A ``kfp.Client``, or a host URL / None (``$KFP_HOST``) for :func:`connect`.
        pipeline: ``bootstrap``, ``retrain``, ``drift-check`` or a path to a compiled YAML.
        cron: 6-field KFP cron, seconds first (``0 0 * * * *``: hourly); see :func:`validate_cron`.
        experiment: The experiment's name (created if missing).
        name: The recurring run's display name; default: the pipeline's name.
        params: Runtime parameters; strings are converted to the types the pipeline declares.
        service_account: The Kubernetes ServiceAccount the runs use; None: KFP's default.
        paused: Create (or switch) the recurring run disabled.
        version_name: Passed to :func:`upload_pipeline`.
        namespace: Multi-user KFP: the namespace of the pipeline and experiment.
        root: The checkout that holds ``pipelines/compiled`` (for a pipeline name).
        cache: True: each task caches as compiled (tasks that read live state or change the
            world never do). False: run a version with caching off on every task
            (:func:`without_cache`, named ``<version>-nocache``), e.g. after data changed behind
            a URI that no digest covers.

    Returns:
        The recurring run and what was done.

    Raises:
        InvalidInput: a bad cron or parameter, an unknown pipeline, or the server rejected a call.
        ConfigError: the server cannot be reached or refuses the credentials.
    """
    expression = validate_cron(cron)
    package = load_package(pipeline, root)
    values = typed_params(package, params or {})
    kfp_client = _client(client, namespace)
    job_name = name or package.name
    if cache:
        upload = upload_pipeline(
            kfp_client, package.path, version_name=version_name, namespace=namespace
        )
    else:
        with tempfile.TemporaryDirectory() as folder:
            upload = upload_pipeline(
                kfp_client,
                without_cache(package, Path(folder)).path,
                version_name=f"{version_name or package.default_version_name}-nocache",
                namespace=namespace,
            )
    desired = _RecurringSpec(
        cron=expression,
        pipeline_id=upload.pipeline_id,
        version_id=upload.version_id,
        parameters=_canonical(values),
        service_account=service_account or None,
        max_concurrency=1,
        no_catchup=True,
    )
    host = _host_of(kfp_client)
    with _kfp_errors(host, f"scheduling {job_name}"):
        experiment_id, experiment_created = _ensure_experiment(kfp_client, experiment, namespace)
        existing = _find_recurring_runs(kfp_client, experiment_id, job_name)
        same: list[Any] = []
        stale: list[Any] = []
        for run in existing:
            (same if _spec_of(run, desired.service_account) == desired else stale).append(run)
        action: ScheduleAction
        if same:
            kept = same[0]
            stale += same[1:]
            recurring_run_id = str(kept.recurring_run_id)
            action = "already scheduled"
            if _is_enabled(kept) == paused:
                if paused:
                    kfp_client.disable_recurring_run(recurring_run_id)
                else:
                    kfp_client.enable_recurring_run(recurring_run_id)
                action = "paused" if paused else "enabled"
            _retire(kfp_client, stale)
        else:
            recurring_run_id = _replace(
                kfp_client,
                stale,
                lambda: kfp_client.create_recurring_run(
                    experiment_id=experiment_id,
                    job_name=job_name,
                    description=f"docloop: {package.name} {upload.version_name} on '{expression}'",
                    cron_expression=expression,
                    max_concurrency=desired.max_concurrency,
                    no_catchup=desired.no_catchup,
                    params=values,
                    pipeline_id=upload.pipeline_id,
                    version_id=upload.version_id,
                    enabled=not paused,
                    service_account=desired.service_account,
                ),
            )
            action = "replaced" if stale else "created"
    result = ScheduleResult(
        name=job_name,
        recurring_run_id=recurring_run_id,
        experiment_id=experiment_id,
        experiment_created=experiment_created,
        cron=expression,
        enabled=not paused,
        parameters=values,
        upload=upload,
        action=action,
        removed=tuple(str(run.recurring_run_id) for run in stale),
        caching="as compiled" if cache else "off",
        never_cached=package.never_cached if cache else package.never_cached + package.cached,
    )
    logger.info(
        "%s: recurring run %s (%s) of %s %s, cron '%s'%s",
        action,
        job_name,
        recurring_run_id,
        package.name,
        upload.version_name,
        expression,
        f", removed {', '.join(result.removed)}" if result.removed else "",
    )
    return result


def _client(client: Client | str | None, namespace: str | None) -> Any:
    return (
        connect(client, namespace=namespace)
        if client is None or isinstance(client, str)
        else client
    )


@dataclass(frozen=True)
class _RecurringSpec:
    cron: str | None
    pipeline_id: str | None
    version_id: str | None
    parameters: str
    service_account: str | None
    max_concurrency: int | None
    no_catchup: bool


def _spec_of(run: Any, service_account: str | None) -> _RecurringSpec:
    trigger = run.trigger
    cron = getattr(getattr(trigger, "cron_schedule", None), "cron", None)
    reference = run.pipeline_version_reference
    config = run.runtime_config
    try:
        concurrency = int(run.max_concurrency) if run.max_concurrency is not None else None
    except (TypeError, ValueError):
        concurrency = None
    return _RecurringSpec(
        cron=" ".join(str(cron).split()) if cron else None,
        pipeline_id=getattr(reference, "pipeline_id", None),
        version_id=getattr(reference, "pipeline_version_id", None) or run.pipeline_version_id,
        parameters=_canonical(getattr(config, "parameters", None) or {}),
        # without a requested account the server's default counts as the same
        service_account=run.service_account if service_account else None,
        max_concurrency=concurrency,
        no_catchup=bool(run.no_catchup),
    )


def _canonical(values: Mapping[str, Any]) -> str:
    """Parameters as JSON where 3 and 3.0 are equal (the server returns protobuf numbers)."""

    def number(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | dict | list):
            return value
        if isinstance(value, dict):
            return {key: number(item) for key, item in value.items()}
        if isinstance(value, list):
            return [number(item) for item in value]
        return float(value)

    return json.dumps(number(dict(values)), sort_keys=True)


def _is_enabled(run: Any) -> bool:
    if str(run.mode) in ("ENABLE", "DISABLE"):
        return str(run.mode) == "ENABLE"
    return str(run.status) == "ENABLED"


def _replace(client: Any, stale: list[Any], create: Callable[[], Any]) -> str:
    """Disable ``stale``, create the new recurring run, then delete ``stale``."""
    disabled: list[str] = []
    for run in stale:
        if _is_enabled(run):
            client.disable_recurring_run(str(run.recurring_run_id))
            disabled.append(str(run.recurring_run_id))
    import urllib3
    from kfp_server_api.exceptions import ApiException  # type: ignore[import-untyped]

    try:
        created = create()
    except BaseException:
        for run_id in disabled:  # keep the previous schedule in force
            try:
                client.enable_recurring_run(run_id)
            except (ApiException, urllib3.exceptions.HTTPError, OSError):
                # the create's error is the one to report; this one is only logged
                logger.exception("could not re-enable recurring run %s", run_id)
        raise
    _retire(client, stale)
    return str(created.recurring_run_id)


def _retire(client: Any, runs: list[Any]) -> None:
    for run in runs:
        client.delete_recurring_run(str(run.recurring_run_id))
        logger.info("deleted recurring run %s (%s)", run.display_name, run.recurring_run_id)


def _name_filter(name: str) -> str:
    # the same predicate kfp.Client.get_pipeline_id sends (1 == EQUALS)
    return json.dumps(
        {"predicates": [{"operation": 1, "key": "display_name", "stringValue": name}]}
    )


def _pages(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    token, seen = "", set()
    while True:
        response = fetch(token)
        yield from getattr(response, field, None) or []
        token = getattr(response, "next_page_token", None) or ""
        if not token or token in seen:  # the last page, or a server that repeats itself
            return
        seen.add(token)


def _named(item: Any, name: str) -> bool:
    return name in (getattr(item, "display_name", None), getattr(item, "name", None))


def _find_pipeline(client: Any, name: str, namespace: str | None) -> str | None:
    found = [
        pipeline
        for pipeline in _pages(
            lambda token: client.list_pipelines(
                page_token=token,
                page_size=_PAGE_SIZE,
                filter=_name_filter(name),
                namespace=namespace,
            ),
            "pipelines",
        )
        if _named(pipeline, name)
    ]
    if len(found) > 1:
        raise InvalidInput(
            f"{len(found)} pipelines are named {name!r} on the KFP server; delete the extra ones"
        )
    return str(found[0].pipeline_id) if found else None


def _find_version(client: Any, pipeline_id: str, name: str) -> str | None:
    for version in _pages(
        lambda token: client.list_pipeline_versions(
            pipeline_id, page_token=token, page_size=_PAGE_SIZE, filter=_name_filter(name)
        ),
        "pipeline_versions",
    ):
        if _named(version, name):
            return str(version.pipeline_version_id)
    return None


def _create_pipeline(
    client: Any, package: PipelinePackage, description: str | None, namespace: str | None
) -> str:
    from kfp_server_api.exceptions import ApiException

    try:
        with _quiet():
            response = client.upload_pipeline(
                str(package.path),
                pipeline_name=package.name,
                description=description or package.description or None,
                namespace=namespace,
            )
    except ApiException as exc:
        found = _find_pipeline(client, package.name, namespace) if exc.status == 409 else None
        if found is None:
            raise
        logger.info("pipeline %s was created concurrently; using it", package.name)
        return found
    logger.info("created pipeline %s (%s)", package.name, response.pipeline_id)
    return str(response.pipeline_id)


def _create_version(
    client: Any, package: PipelinePackage, pipeline_id: str, name: str, description: str | None
) -> str:
    from kfp_server_api.exceptions import ApiException

    try:
        with _quiet():
            response = client.upload_pipeline_version(
                str(package.path),
                pipeline_version_name=name,
                pipeline_id=pipeline_id,
                description=description or f"docloop {__version__}, sha256 {package.sha256}",
            )
    except ApiException as exc:
        found = _find_version(client, pipeline_id, name) if exc.status == 409 else None
        if found is None:
            raise
        return found
    return str(response.pipeline_version_id)


def _ensure_experiment(client: Any, name: str, namespace: str | None) -> tuple[str, bool]:
    from kfp_server_api.exceptions import ApiException

    try:
        return str(
            client.get_experiment(experiment_name=name, namespace=namespace).experiment_id
        ), False
    except ValueError as exc:
        if not str(exc).startswith("No experiment is found"):
            raise InvalidInput(f"experiment {name!r}: {exc}") from exc
    try:
        with _quiet():
            created = client.create_experiment(
                name, description="docloop recurring runs", namespace=namespace
            )
    except ApiException as exc:
        if exc.status != 409:
            raise
        created = client.get_experiment(experiment_name=name, namespace=namespace)
        return str(created.experiment_id), False
    logger.info("created experiment %s (%s)", name, created.experiment_id)
    return str(created.experiment_id), True


def _find_recurring_runs(client: Any, experiment_id: str, name: str) -> list[Any]:
    return [
        run
        for run in _pages(
            lambda token: client.list_recurring_runs(
                page_token=token,
                page_size=_PAGE_SIZE,
                experiment_id=experiment_id,
                filter=_name_filter(name),
            ),
            "recurring_runs",
        )
        if run.display_name == name
    ]


def _host_of(client: Any) -> str:
    config = getattr(client, "_existing_config", None)
    return str(getattr(config, "host", None) or "the KFP API server")


def _check_reachable(url: str, token: str | None) -> None:
    """Fail fast, naming the host, when nothing answers (kfp.Client has no connect timeout)."""
    request = urllib.request.Request(f"{url}/apis/v2beta1/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as kfp: no env proxy
    try:
        with opener.open(request, timeout=_CONNECT_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # something answers; kfp.Client reports what it thinks of the status
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return  # kfp.Client verifies TLS with its own CA bundle and settings
        reason: object = exc.reason
    except (OSError, ValueError) as exc:
        reason = exc
    raise ConfigError(_unreachable(url, reason))


def _unreachable(url: str, reason: object) -> str:
    return (
        f"cannot reach the KFP API server at {url} ({reason}); check --host / {KFP_HOST_ENV} and "
        "that the server, or your `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`, "
        "is running"
    )


@contextlib.contextmanager
def _kfp_errors(host: str, action: str) -> Iterator[None]:
    """Turn kfp/urllib3 exceptions into docloop errors that name the host and a fix."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        detail = _api_message(exc)
        if status == 0:  # no HTTP answer: TLS failed or the request could not be sent
            raise ConfigError(_unreachable(host, detail)) from exc
        if status in (401, 403):
            raise ConfigError(
                f"the KFP API server at {host} refused {action} (HTTP {status}: {detail}); "
                f"log in (~/.config/kfp/context.json) or set {KFP_TOKEN_ENV}"
            ) from exc
        if status in (400, 404, 409, 422):
            raise InvalidInput(
                f"the KFP API server at {host} rejected {action}: HTTP {status}: {detail}"
            ) from exc
        raise ConfigError(
            f"the KFP API server at {host} failed {action}: HTTP {status or '-'}: {detail}"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ConfigError(_unreachable(host, exc)) from exc
    except ValueError as exc:  # kfp.Client's own checks (e.g. duplicate names)
        raise InvalidInput(f"{action} on {host}: {exc}") from exc


def _api_message(exc: Any) -> str:
    body = exc.body
    try:
        payload = json.loads(body) if body else {}
    except (TypeError, ValueError):
        payload = {}
    if isinstance(payload, dict):
        for key in ("message", "error_message", "error"):
            if payload.get(key):
                return str(payload[key])
    return str(body or exc.reason or "no details")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kfp.Client prints links ("Pipeline details: ...") to stdout: log them instead."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        yield
    for line in captured.getvalue().splitlines():
        if line.strip():
            logger.debug("kfp: %s", line)


_TASK_STARTS = re.compile(r"Executing task '([^']+)'")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TaskLogs(io.TextIOBase):
    """Where ``kfp.local``'s output goes while a pipeline runs: one file per task.

    ``kfp.local`` (2.17) prints each task's subprocess output line by line with ``print`` and
    logs its own lines through a handler on ``sys.stdout``, from the thread that runs the task
    (``ParallelFor`` iterations run side by side). Put in place of ``sys.stdout``, this stream
    opens ``<folder>/<NN>-<task>.log`` when a thread announces ``Executing task '<task>'`` and
    sends that thread's later writes there; writes before any task go to ``pipeline.log``.
    """

    def __init__(self, folder: Path, echo: TextIO | None = None) -> None:
        """Write under ``folder``; with ``echo``, also pass everything through to it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.echo = echo
        self.files: list[Path] = []
        self._lock = threading.Lock()
        self._current = threading.local()
        self._pipeline = (folder / "pipeline.log").open("a", encoding="utf-8")
        self._open: list[TextIO] = [self._pipeline]

    def writable(self) -> bool:
        """A text sink."""
        return True

    def write(self, text: str) -> int:
        """Send ``text`` to the writing thread's task file (and to ``echo``)."""
        started = _TASK_STARTS.search(_ANSI.sub("", text))
        with self._lock:
            if started is not None:
                path = self.folder / f"{len(self.files) + 1:02d}-{started.group(1)}.log"
                self.files.append(path)
                handle = path.open("w", encoding="utf-8")
                self._open.append(handle)
                self._current.file = handle
            target: TextIO = getattr(self._current, "file", self._pipeline)
            target.write(_ANSI.sub("", text))
            target.flush()
            if self.echo is not None:
                self.echo.write(text)
        return len(text)

    def close(self) -> None:
        """Close every file."""
        with self._lock:
            for handle in self._open:
                handle.close()
        super().close()


def run_locally(
    name: str,
    pipeline_root: Path,
    root: Path | None = None,
    *,
    task_logs: Path | None = None,
    echo: bool = True,
    **arguments: Any,
) -> list[Path]:
    """Run the pipeline ``pipelines/<name>.py`` through ``kfp.local`` in this interpreter's venv.

    Each task is a subprocess of the current Python (``SubprocessRunner(use_venv=False)``), so
    docloop must be installed here; a failed task raises (``kfp.local``'s ``raise_on_error``).
    With ``task_logs``, each task's output (``kfp.local``'s lines and the subprocess's stdout and
    stderr) goes to its own file in that folder (:class:`TaskLogs`), and to this process's stdout
    too only with ``echo``.

    Returns:
        The task log files written (none without ``task_logs``).

    Raises:
        ConfigError: ``name`` is not a docloop pipeline.
        RuntimeError: a task failed (the message names it; its log is the last file written).
    """
    if name not in PIPELINE_NAMES:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINE_NAMES)}")
    import kfp.local

    _importable(root or project_root())
    pipeline_root.mkdir(parents=True, exist_ok=True)
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root)
    )
    module = importlib.import_module(f"pipelines.{name}")
    if task_logs is None:
        getattr(module, name)(**arguments)
        return []
    logs = TaskLogs(task_logs, echo=sys.stdout if echo else None)
    try:
        with contextlib.redirect_stdout(logs), warnings.catch_warnings():
            if not echo:
                # kfp.local's own warnings, expected for every local run of our pipelines: the
                # image name lacks "python" (it is the docloop image; the task runs in this venv
                # anyway), and the training task's accelerator request means nothing locally
                warnings.filterwarnings(
                    "ignore", "You may be attemping to run a task", RuntimeWarning, "kfp"
                )
                warnings.filterwarnings(
                    "ignore", r"Task '.*': settings \[.*\] have no effect in the current local",
                    UserWarning, "kfp",
                )  # fmt: skip
            getattr(module, name)(**arguments)
    finally:
        logs.close()
    return logs.files
