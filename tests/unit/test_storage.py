"""docloop.storage against a real directory, a real moto S3 server and a real GCS emulator."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from docloop.config import StorageConfig
from docloop.errors import StorageError, UnsupportedURI
from docloop.storage import ObjectInfo, Storage, is_local, join, local_path, scheme
from tests.object_stores import free_port, unique_bucket_name

pytestmark = pytest.mark.unit


@dataclass
class Backend:
    name: str
    storage: Storage
    base: str  # a writable prefix inside a fresh bucket / directory
    bucket: str | None = None
    endpoint: str | None = None


def _make_backend(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    if name == "file":
        root = tmp_path / "store"
        root.mkdir()
        return Backend("file", Storage(), root.as_uri())
    bucket = unique_bucket_name()
    if name == "s3":
        endpoint = request.getfixturevalue("moto_server")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        config = StorageConfig(s3_endpoint_url=endpoint, s3_region="us-east-1")
        return Backend("s3", Storage(config), f"s3://{bucket}/run", bucket, endpoint)
    host = request.getfixturevalue("gcs_emulator")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    client = gcs.Client(project="docloop-test", credentials=AnonymousCredentials())
    client.create_bucket(bucket)
    return Backend("gs", Storage(), f"gs://{bucket}/run", bucket, host)


@pytest.fixture(params=["file", "s3", "gs"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    return _make_backend(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["s3", "gs"])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    return _make_backend(request.param, request, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------
# All backends
# ------------------------------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(backend: Backend) -> None:
    uri = join(backend.base, "nested", "deeper", "blob.bin")
    payload = bytes(range(256)) * 10
    backend.storage.write_bytes(uri, payload)
    assert backend.storage.read_bytes(uri) == payload
    backend.storage.write_bytes(uri, b"second")
    assert backend.storage.read_bytes(uri) == b"second"


def test_text_round_trip(backend: Backend) -> None:
    uri = join(backend.base, "notes.txt")
    text = "héllo ✓ — ünïcode\nsecond line\n"
    backend.storage.write_text(uri, text)
    assert backend.storage.read_text(uri) == text
    assert backend.storage.read_bytes(uri) == text.encode("utf-8")


def test_read_text_rejects_non_utf8(backend: Backend) -> None:
    uri = join(backend.base, "latin1.txt")
    backend.storage.write_bytes(uri, "café".encode("latin-1"))
    with pytest.raises(StorageError, match="not UTF-8"):
        backend.storage.read_text(uri)


LAYOUT = {
    "a/b/c.bin": b"123",
    "a/d.bin": b"4567",
    "a/e/f/g.bin": b"",
    "ab/x.bin": b"zz",  # shares the string prefix "a" but is not under "a/"
    "a.txt": b"1",
}


def _write_layout(backend: Backend) -> None:
    for key, data in LAYOUT.items():
        backend.storage.write_bytes(join(backend.base, key), data)


def _infos(backend: Backend, *keys: str) -> list[ObjectInfo]:
    return sorted(
        (ObjectInfo(join(backend.base, key), len(LAYOUT[key])) for key in keys),
        key=lambda info: info.uri,
    )


def test_list_recursive_sorted_with_sizes(backend: Backend) -> None:
    _write_layout(backend)
    listed = backend.storage.list(join(backend.base, "a"))
    assert listed == _infos(backend, "a/b/c.bin", "a/d.bin", "a/e/f/g.bin")
    assert [info.uri for info in listed] == sorted(info.uri for info in listed)
    assert backend.storage.list(join(backend.base, "a/")) == listed
    assert backend.storage.list(backend.base) == _infos(backend, *LAYOUT)


def test_list_non_recursive(backend: Backend) -> None:
    _write_layout(backend)
    assert backend.storage.list(join(backend.base, "a"), recursive=False) == _infos(
        backend, "a/d.bin"
    )
    assert backend.storage.list(backend.base, recursive=False) == _infos(backend, "a.txt")


def test_list_single_object_and_missing_prefix(backend: Backend) -> None:
    _write_layout(backend)
    assert backend.storage.list(join(backend.base, "a/d.bin")) == _infos(backend, "a/d.bin")
    assert backend.storage.list(join(backend.base, "missing")) == []
    assert backend.storage.list(join(backend.base, "a/b/c")) == []  # a string prefix only


def test_exists_and_idempotent_delete(backend: Backend) -> None:
    uri = join(backend.base, "doomed.bin")
    assert not backend.storage.exists(uri)
    backend.storage.write_bytes(uri, b"x")
    assert backend.storage.exists(uri)
    backend.storage.delete(uri)
    assert not backend.storage.exists(uri)
    backend.storage.delete(uri)  # deleting again is fine
    backend.storage.delete(join(backend.base, "never", "existed.bin"))
    with pytest.raises(StorageError, match="does not exist"):
        backend.storage.read_bytes(uri)


def test_upload_and_download(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00payload\xff" * 1000)
    uri = join(backend.base, "up", "source.bin")
    backend.storage.upload(source, uri)
    assert backend.storage.read_bytes(uri) == source.read_bytes()
    target = tmp_path / "out" / "deep" / "copy.bin"
    assert backend.storage.download(uri, target) == target
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["copy.bin"]  # no temporary files left


def test_missing_object_errors_name_the_uri(backend: Backend, tmp_path: Path) -> None:
    uri = join(backend.base, "no", "such.bin")
    with pytest.raises(StorageError, match="does not exist") as info:
        backend.storage.read_bytes(uri)
    assert uri in str(info.value)
    target = tmp_path / "dl" / "never.bin"
    with pytest.raises(StorageError, match="does not exist") as info:
        backend.storage.download(uri, target)
    assert uri in str(info.value)
    assert not target.exists()


def test_upload_of_missing_local_file(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not an existing file"):
        backend.storage.upload(tmp_path / "absent.bin", join(backend.base, "x.bin"))


def test_ensure_writable_leaves_nothing_behind(backend: Backend) -> None:
    prefix = join(backend.base, "outputs")
    backend.storage.ensure_writable(prefix)
    assert backend.storage.list(prefix) == []


def test_one_storage_shared_between_threads(backend: Backend) -> None:
    uris = [join(backend.base, "threads", f"{i:02d}.bin") for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda uri: backend.storage.write_bytes(uri, uri.encode()), uris))
    assert [info.uri for info in backend.storage.list(join(backend.base, "threads"))] == uris
    assert all(backend.storage.read_bytes(uri) == uri.encode() for uri in uris)


def test_unsupported_scheme_is_rejected_by_storage(backend: Backend) -> None:
    with pytest.raises(UnsupportedURI, match=r"s3://.*gs://"):
        backend.storage.read_bytes("azure://container/blob")


# ------------------------------------------------------------------------------------------
# Object stores only
# ------------------------------------------------------------------------------------------


def test_missing_bucket_is_named(remote: Backend) -> None:
    bucket = unique_bucket_name("absent")
    uri = f"{remote.name}://{bucket}/some/key.bin"
    for action in (
        lambda: remote.storage.read_bytes(uri),
        lambda: remote.storage.write_bytes(uri, b"x"),
        lambda: remote.storage.list(f"{remote.name}://{bucket}/some"),
        lambda: remote.storage.delete(uri),
    ):
        with pytest.raises(StorageError, match=f"bucket '{bucket}' of .* does not exist") as info:
            action()
        assert remote.endpoint is not None and remote.endpoint in str(info.value)
        assert f"{remote.name}://{bucket}/some" in str(info.value)


def test_ensure_writable_on_missing_bucket(remote: Backend) -> None:
    bucket = unique_bucket_name("absent")
    with pytest.raises(StorageError, match=f"not writable.*bucket '{bucket}' of .* does not exist"):
        remote.storage.ensure_writable(f"{remote.name}://{bucket}/prefix")


def test_content_type_is_stored(remote: Backend) -> None:
    uri = join(remote.base, "doc.json")
    remote.storage.write_bytes(uri, b"{}", content_type="application/json")
    key = uri.split("/", 3)[3]
    if remote.name == "s3":
        client = boto3.client("s3", endpoint_url=remote.endpoint, region_name="us-east-1")
        content_type = client.head_object(Bucket=remote.bucket, Key=key)["ContentType"]
    else:
        client = gcs.Client(project="docloop-test", credentials=AnonymousCredentials())
        content_type = client.bucket(remote.bucket).get_blob(key).content_type
    assert content_type == "application/json"


def test_bucket_uri_without_key_is_not_an_object(remote: Backend) -> None:
    with pytest.raises(StorageError, match="not an object"):
        remote.storage.read_bytes(f"{remote.name}://{remote.bucket}/")
    with pytest.raises(StorageError, match="names no bucket"):
        remote.storage.read_bytes(f"{remote.name}:///key")


def test_s3_endpoint_falls_back_to_aws_endpoint_url(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = unique_bucket_name()
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    storage = Storage()
    storage.write_text(f"s3://{bucket}/k.txt", "via env")
    assert storage.read_text(f"s3://{bucket}/k.txt") == "via env"


def test_s3_without_credentials_says_what_to_set(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage = Storage(StorageConfig(s3_endpoint_url=moto_server, s3_region="us-east-1"))
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID") as info:
        storage.read_bytes("s3://any-bucket/key")
    assert "s3://any-bucket/key" in str(info.value)


def test_s3_unreachable_endpoint(moto_server: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    storage = Storage(StorageConfig(s3_endpoint_url=endpoint, s3_region="us-east-1"))
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach S3 endpoint") as info:
        storage.read_bytes("s3://bucket/key")
    assert endpoint in str(info.value)
    assert time.monotonic() - started < 10


def test_invalid_s3_endpoint_is_reported() -> None:
    storage = Storage(StorageConfig(s3_endpoint_url="not a url"))
    with pytest.raises(StorageError, match="s3_endpoint_url"):
        storage.read_bytes("s3://bucket/key")


# ------------------------------------------------------------------------------------------
# Local files only
# ------------------------------------------------------------------------------------------


def test_ensure_writable_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for prefix in (str(blocker / "sub"), (blocker / "sub" / "deeper").as_uri()):
        with pytest.raises(StorageError, match=r"not writable.*regular file"):
            Storage().ensure_writable(prefix)
    with pytest.raises(StorageError, match="regular file"):
        Storage().write_bytes(str(blocker / "x.bin"), b"x")
    assert blocker.read_text() == "not a directory"


def test_ensure_writable_creates_the_local_directory(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir"
    Storage().ensure_writable(str(target))
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = Storage()
    for i in range(3):
        storage.write_bytes(str(tmp_path / "out.bin"), bytes([i]) * 10)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == bytes([2]) * 10


def test_reading_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(StorageError, match="is a directory"):
        Storage().read_bytes(str(tmp_path / "d"))
    assert not Storage().exists(str(tmp_path / "d"))


def test_relative_file_uris_and_plain_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = Storage()
    storage.write_text("file://./rel/one.txt", "1")
    storage.write_text("rel/two/three.txt", "333")
    assert (tmp_path / "rel" / "one.txt").read_text() == "1"
    assert storage.list("file://./rel") == [
        ObjectInfo("file://./rel/one.txt", 1),
        ObjectInfo("file://./rel/two/three.txt", 3),
    ]
    assert storage.list("rel/two") == [ObjectInfo("rel/two/three.txt", 3)]
    absolute = str(tmp_path / "rel")
    assert storage.list(absolute, recursive=False) == [ObjectInfo(f"{absolute}/one.txt", 1)]


# ------------------------------------------------------------------------------------------
# Pure URI helpers
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b/x/", ("y", "z.parquet"), "s3://b/x/y/z.parquet"),
        ("s3://b/x", ("y/z.parquet",), "s3://b/x/y/z.parquet"),
        ("s3://b", ("k",), "s3://b/k"),
        ("s3://b/", ("/k/",), "s3://b/k/"),
        ("gs://b/p", ("", "q", ""), "gs://b/p/q"),
        ("file:///tmp/a", ("b", "c.txt"), "file:///tmp/a/b/c.txt"),
        ("file:///", ("tmp",), "file:///tmp"),
        ("file://./rel", ("x",), "file://./rel/x"),
        ("/tmp/a/", ("/b",), "/tmp/a/b"),
        ("/", ("etc",), "/etc"),
        ("relative", ("x", "y"), "relative/x/y"),
        ("s3://b/x", (), "s3://b/x"),
    ],
)
def test_join(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert join(base, *parts) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key", "s3"),
        ("S3://bucket/key", "s3"),
        ("gs://bucket", "gs"),
        ("file:///abs", "file"),
        ("/abs/path", "file"),
        ("relative/path", "file"),
    ],
)
def test_scheme(uri: str, expected: str) -> None:
    assert scheme(uri) == expected
    assert is_local(uri) == (expected == "file")


@pytest.mark.parametrize("uri", ["http://host/x", "gcs://bucket/x", "azure://c/b", "s3a://b/k"])
def test_unsupported_scheme(uri: str) -> None:
    with pytest.raises(UnsupportedURI, match=r"file://, s3://, gs://") as info:
        scheme(uri)
    assert uri in str(info.value)
    assert isinstance(info.value, StorageError)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///abs/x", Path("/abs/x")),
        ("file://./rel/x", Path("rel/x")),
        ("file://localhost/abs/x", Path("/abs/x")),
        ("plain/x", Path("plain/x")),
        ("/abs/y", Path("/abs/y")),
    ],
)
def test_local_path(uri: str, expected: Path) -> None:
    assert local_path(uri) == expected


def test_local_path_rejects_remote_uris() -> None:
    with pytest.raises(StorageError, match="not a local path"):
        local_path("s3://bucket/key")
    with pytest.raises(StorageError, match="empty"):
        scheme("")
