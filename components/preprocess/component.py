"""preprocess: raw PDFs and images -> page records (words, boxes, confidences) + quarantine."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def preprocess(
    input_uri: str,
    pages: Output[Dataset],
    quarantine: Output[Artifact],
    dpi: int = 200,
    workers: int = 0,
    force_ocr: bool = False,
    shard_index: int = 0,
    num_shards: int = 1,
    input_digest: str = "",
) -> NamedTuple("PreprocessOutputs", [("processed", int), ("quarantined", int)]):
    """Render, OCR and quarantine raw documents into page records.

    PDFs are rendered to JPG pages with poppler; pages with a text layer take their words and boxes
    from the PDF itself, image-only pages are OCR'd with tesseract in parallel processes. Documents
    are identified by the sha256 of their bytes; corrupt, encrypted, empty, oversized or unsafely
    named inputs are quarantined with a reason instead of failing the run. Settings come from
    ``docloop.yaml`` (``$DOCLOOP_CONFIG``) with the parameters below taking precedence.

    Args:
        input_uri: Prefix (``file://``, ``s3://``, ``gs://``) or single file with PDF/PNG/JPEG/TIFF
            documents. Object-store credentials come from the environment (Kubernetes Secrets).
        pages: Output. Page records as Parquet under ``pages/`` (one file per document), page JPGs
            under ``images/``, per-document manifests, ``quarantine.jsonl`` and ``summary.json``.
        quarantine: Output. Every input (or page) set aside, one JSON object per line with
            ``source_uri``, ``code``, ``reason``, ``doc_id`` and ``page``.
        dpi: Render resolution for PDF pages.
        workers: OCR processes; 0 means one per CPU of the pod's limit (the cgroup quota).
        force_ocr: OCR every page even when the PDF has a text layer.
        shard_index: Which shard of the inputs this task processes (0-based); documents are
            assigned by a hash of their id, so shards never overlap and re-runs keep them.
        num_shards: How many shards the inputs are split into (fan out with ``dsl.ParallelFor``
            over plan-shards, then merge with merge-pages).
        input_digest: Digest of the listing under ``input_uri`` (snapshot-inputs), recorded in
            the artifact's metadata; as an input it changes KFP's cache key when new documents
            arrive under the same prefix.

    Returns:
        processed: Documents turned into page records in this run.
        quarantined: Inputs set aside (see the quarantine artifact for reasons).
    """
    from docloop.steps import preprocess as step

    result = step.run(
        input_uri, pages.path, quarantine.path, dpi, workers, force_ocr, shard_index, num_shards
    )
    pages.metadata.update(result.to_dict())
    pages.metadata["input_digest"] = input_digest
    outputs = NamedTuple("PreprocessOutputs", [("processed", int), ("quarantined", int)])  # noqa: UP014
    return outputs(result.processed, result.quarantined)
