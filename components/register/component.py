"""register: a blessed model -> a new MLflow model version (alias challenger) + a store row."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    gate: Input[Artifact],
    release: Output[Model],
    dataset_digest: str,
    pipeline_run: str = "",
    promote: bool = False,
    skip_unblessed: bool = False,
) -> NamedTuple("RegisterOutputs", [("model_name", str), ("version", str), ("model_uri", str)]):
    """Register a blessed model in the MLflow registry and the docloop state store.

    Creates a model version whose source is the model folder, tagged with its lineage (MLflow
    training run, dataset digest, gate result, code version, pipeline run), points the
    ``challenger`` alias at it and adds a ``candidate`` row to the store. Idempotent: a retried
    task finds the version it created (by an idempotency key derived from the model URI and the
    training run) and creates nothing. Refuses a model whose gate did not bless it, unless
    ``skip_unblessed``: then it registers nothing and its release says ``registered: false``
    (the retrain runs register on every candidate, so deploy-kserve always has both). With
    ``promote`` (the bootstrap's first model) the version becomes the default at once: alias
    ``champion``, the one ``default`` row, an audit entry, in one transaction. Compile with
    caching off (``pipelines.platform.side_effect``). Outputs the *release* this version serves
    in (it beside the other models' champions) as a typed ``Model`` for deploy-kserve: its
    metadata names the release bundle (one storage URI holding both models, written under
    ``data_root`` on ``deploy.target: kserve``), the versions and this model; ``release.json``
    in its folder holds the same.

    Args:
        model: The model from train-gpu.
        gate: The ``gate`` output of evaluate for this model.
        release: Output. The release this version serves in, for deploy-kserve.
        dataset_digest: Digest of the dataset it was trained on (build-dataset output).
        pipeline_run: The KFP run that produced it (recorded in tags and the audit log).
        promote: Make this version the default (and ``champion``) right away.
        skip_unblessed: Register nothing for an unblessed model (outputs empty) instead of
            failing.

    Returns:
        model_name: The registered model name (``registry`` section of the config).
        version: The MLflow model version (empty when nothing was registered).
        model_uri: Where the model files are (what KServe's storage initializer downloads).
    """
    from docloop.steps import register as step

    registration = step.run(
        model.path,
        model.uri,
        gate.path,
        dataset_digest,
        pipeline_run,
        promote,
        release.path,
        skip_unblessed,
    )
    release.metadata.update(registration.release)
    outputs = NamedTuple(  # noqa: UP014
        "RegisterOutputs", [("model_name", str), ("version", str), ("model_uri", str)]
    )
    record = registration.record
    if record is None:
        return outputs("", "", "")
    return outputs(record.model_name, record.version, record.model_uri)
