"""preprocess reading from and writing to real S3 and GCS wire protocols on 127.0.0.1.

The S3 side is a moto server process and the GCS side the gcp-storage-emulator process (started by
the fixtures in tests/object_stores.py), not in-process patching.
"""

from __future__ import annotations

import json

import boto3
import pytest

from docloop.config import PreprocessConfig, StorageConfig
from docloop.documents.preprocess import preprocess, read_page_records
from docloop.storage import Storage
from tests import documents
from tests.object_stores import unique_bucket_name

pytestmark = pytest.mark.unit


def test_s3_in_s3_out_with_an_escaping_key(moto_server: str) -> None:
    bucket = unique_bucket_name()
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    pdf = documents.born_digital_pdf([["Insurance claim", "Payer: Aetna"]])
    s3.put_object(Bucket=bucket, Key="inbox/claim.pdf", Body=pdf)
    s3.put_object(Bucket=bucket, Key="inbox/sub/../../escape.pdf", Body=pdf + b"%x\n")
    storage = Storage(StorageConfig(s3_endpoint_url=moto_server, s3_region="us-east-1"))

    result = preprocess(
        f"s3://{bucket}/inbox", f"s3://{bucket}/processed", PreprocessConfig(), storage, workers=1
    )

    assert (result.processed, result.quarantined) == (1, 1)
    assert [e.code for e in result.quarantine] == ["unsafe_name"]
    records = read_page_records(storage, f"s3://{bucket}/processed")
    assert records[0].words[:2] == ["Insurance", "claim"]
    assert records[0].image_uri.startswith(f"s3://{bucket}/processed/images/")
    assert storage.exists(records[0].image_uri)
    quarantine = storage.read_text(f"s3://{bucket}/processed/quarantine.jsonl")
    assert json.loads(quarantine)["code"] == "unsafe_name"
    again = preprocess(
        f"s3://{bucket}/inbox", f"s3://{bucket}/processed", PreprocessConfig(), storage, workers=1
    )
    assert (again.processed, again.skipped) == (0, 1)


def test_gcs_in_local_out(
    gcs_emulator: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    storage = Storage()
    bucket = unique_bucket_name()
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(project="docloop-test", credentials=AnonymousCredentials())
    client.create_bucket(bucket)
    image = documents.text_image(["Lab report", "MRN 4827163"])
    storage.write_bytes(f"gs://{bucket}/scans/lab.png", documents.image_bytes(image, "PNG"))
    out = tmp_path_factory.mktemp("gcs-out")

    result = preprocess(f"gs://{bucket}/scans", str(out), PreprocessConfig(), storage, workers=1)

    assert result.processed == 1
    record = read_page_records(storage, str(out))[0]
    assert record.source == "ocr" and "4827163" in record.words
    assert record.source_uri == f"gs://{bucket}/scans/lab.png"
