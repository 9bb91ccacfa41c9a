"""snapshot-inputs: digests of what the bootstrap reads behind its URIs (uncached, cheap)."""

from typing import NamedTuple

from kfp import dsl

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def snapshot_inputs(input_uri: str, labels_uri: str) -> NamedTuple(
    "InputDigests", [("documents", str), ("labels", str)]
):
    """Digest the listing under the documents prefix and the labels file, with their settings.

    KFP's cache key holds a task's parameter values, not what a URI points at: preprocess and
    build-dataset keyed only on ``input_uri`` / ``labels_uri`` would be served from the cache
    after new documents or labels arrived under the same URI. This task is never cached; it lists
    both URIs (name, size, ETag / generation / mtime; no bytes are read) and its digests are
    inputs of the cached tasks, so their cache key changes exactly when what they read changes.

    Args:
        input_uri: The documents prefix (or one file) preprocess reads.
        labels_uri: The labels file build-dataset reads.

    Returns:
        documents: Digest of the documents' listing and the preprocess settings (OCR, dpi...).
        labels: Digest of the labels file's listing and the label schema.
    """
    from docloop.steps import snapshot_inputs as step

    digests = step.run(input_uri, labels_uri)
    outputs = NamedTuple("InputDigests", [("documents", str), ("labels", str)])  # noqa: UP014
    return outputs(digests.documents, digests.labels)
