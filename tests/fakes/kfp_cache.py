"""KFP v2's step cache, ported: which task executions a KFP backend would serve from its cache.

``kfp.local`` ignores caching, so the only way to see what a cluster would reuse is to compute
the key the KFP driver computes. Ported (not copied) from ``kubeflow/pipelines``:

- ``backend/src/v2/cacheutils/cache.go``, ``GenerateCacheKey``: the key holds the task's resolved
  input parameter values, the *names* of its input artifacts (the MLMD artifacts, one per producing
  execution: a re-executed producer gives new names, a cache hit the old ones), its output
  artifacts' name/type/metadata with the URI wiped, its output parameter types, and the container
  spec (image, command + args as written in the IR, PVC names). ``GenerateFingerPrint``: sha256 of
  the key as protojson, re-marshalled by Go's ``encoding/json`` (sorted map keys, compact, HTML
  characters escaped).
- ``backend/src/v2/driver/cache.go``, ``getFingerPrintsAndID``: the cache is consulted only when
  ``cachingOptions.enableCache`` is set on the task, and looked up by fingerprint within
  ``pipeline/<pipeline name>`` and the namespace.

What is *not* in the key matters as much: environment from ConfigMaps and Secrets, and whatever
the task reads behind a URI string. A task whose output depends on those must be uncached or get
a digest of them as an input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _go_json(value: Any) -> str:
    """``encoding/json.Marshal`` of a decoded JSON value: sorted keys, compact, HTML escaped."""

    def numbers(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer():
            return int(item)  # Go prints float64 200 as 200
        if isinstance(item, dict):
            return {key: numbers(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [numbers(inner) for inner in item]
        return item

    text = json.dumps(numbers(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_HTML_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _protojson_value(value: Any) -> Any:
    """A ``structpb.Value`` as protojson writes it: every number is a double."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {key: _protojson_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_protojson_value(item) for item in value]
    raise TypeError(f"not a pipeline parameter value: {value!r}")


def task_of(spec: dict[str, Any], component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task that runs ``comp-<component>`` (anywhere in the DAGs) and its component."""
    for body in spec["components"].values():
        for task in (body.get("dag") or {}).get("tasks", {}).values():
            if task["componentRef"]["name"] == f"comp-{component}":
                return task, spec["components"][f"comp-{component}"]
    root_tasks = spec["root"]["dag"]["tasks"]
    for task in root_tasks.values():
        if task["componentRef"]["name"] == f"comp-{component}":
            return task, spec["components"][f"comp-{component}"]
    raise KeyError(f"no task runs comp-{component}")


def cache_key(
    spec: dict[str, Any],
    component: str,
    parameters: dict[str, Any],
    artifact_names: dict[str, list[str]],
    pvc_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``GenerateCacheKey`` for one task of the compiled ``spec``, as protojson.

    Args:
        spec: The compiled pipeline (first YAML document).
        component: The component's IR name without ``comp-`` (``preprocess``, ``register-2``).
        parameters: The task's input parameter values as the driver resolved them; component
            inputs missing here take their ``defaultValue``; one with neither raises.
        artifact_names: Input artifact name -> MLMD artifact names.
        pvc_names: PVCs mounted on the task.
    """
    task, body = task_of(spec, component)
    inputs = body.get("inputDefinitions") or {}
    outputs = body.get("outputDefinitions") or {}
    # the driver resolves the task's inputs (the compiler adds some, e.g. resource channels)
    # and fills the component's own inputs that were not given with their defaults
    given = set((task.get("inputs") or {}).get("parameters") or {})
    unknown = set(parameters) - given - set(inputs.get("parameters") or {})
    if unknown:
        raise KeyError(f"{component} has no input parameters {sorted(unknown)}")
    values = {name: _protojson_value(value) for name, value in parameters.items()}
    for name, definition in (inputs.get("parameters") or {}).items():
        if name in values:
            continue
        if "defaultValue" in definition:
            values[name] = _protojson_value(definition["defaultValue"])
        elif not definition.get("isOptional"):
            raise KeyError(f"{component}: input parameter {name!r} has no value")
    executor = spec["deploymentSpec"]["executors"][body["executorLabel"]]["container"]
    key: dict[str, Any] = {
        "inputArtifactNames": {
            name: {"artifactNames": list(artifact_names.get(name, []))}
            for name in (inputs.get("artifacts") or {})
        },
        "inputParameterValues": values,
        "outputArtifactsSpec": {
            name: {"type": {k: v for k, v in definition["artifactType"].items()}}
            for name, definition in (outputs.get("artifacts") or {}).items()
        },
        "outputParametersSpec": {
            name: definition["parameterType"]
            for name, definition in (outputs.get("parameters") or {}).items()
        },
        "containerSpec": {
            "image": executor["image"],
            "cmdArgs": [*executor.get("command", []), *executor.get("args", [])],
            **({"pvcNames": sorted(set(pvc_names))} if pvc_names else {}),
        },
    }
    # protojson leaves out empty maps
    return {name: value for name, value in key.items() if value != {}}


def fingerprint(key: dict[str, Any]) -> str:
    """``GenerateFingerPrint``: sha256 hex of the key re-marshalled by ``encoding/json``."""
    return hashlib.sha256(_go_json(key).encode()).hexdigest()


def caching_enabled(spec: dict[str, Any], component: str) -> bool:
    """``opts.Task.GetCachingOptions().GetEnableCache()`` for the task of ``comp-<component>``."""
    task, _ = task_of(spec, component)
    return bool((task.get("cachingOptions") or {}).get("enableCache", False))


@dataclass
class TaskCache:
    """The backend's cache table: fingerprint -> execution, per pipeline name and namespace."""

    entries: dict[tuple[str, str, str], str] = field(default_factory=dict)
    executions: int = 0

    def run(
        self,
        spec: dict[str, Any],
        component: str,
        parameters: dict[str, Any],
        artifact_names: dict[str, list[str]] | None = None,
        namespace: str = "kubeflow",
    ) -> tuple[bool, str]:
        """Run one task as the driver would: (served from cache?, the execution's id).

        A hit returns the cached execution (whose output artifacts keep their names); a miss
        executes (a new id, hence new output artifact names) and records the fingerprint.
        """
        pipeline = "pipeline/" + spec["pipelineInfo"]["name"]
        if caching_enabled(spec, component):
            print_ = fingerprint(cache_key(spec, component, parameters, artifact_names or {}))
            cached = self.entries.get((print_, pipeline, namespace))
            if cached is not None:
                return True, cached
        self.executions += 1
        execution = f"{component}#{self.executions}"
        if caching_enabled(spec, component):
            self.entries[(print_, pipeline, namespace)] = execution
        return False, execution
