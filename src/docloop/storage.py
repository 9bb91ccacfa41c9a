"""A small object-store layer addressed by URIs: ``file://`` (or a bare path), ``s3://`` and ``gs://``.

Every docloop component reads and writes through :class:`Storage`, so the same code runs against a
local directory, AWS S3 or any S3-compatible store (Cloudflare R2, MinIO) and Google Cloud Storage.

Credentials never come from configuration: boto3 and google-cloud-storage find them the way they
always do (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``, workload identity). ``STORAGE_EMULATOR_HOST`` points the GCS
client at an emulator (with anonymous credentials) and ``AWS_ENDPOINT_URL`` points the S3 client at
another endpoint when ``storage.s3_endpoint_url`` is unset.

URIs are used as given: nothing is percent-encoded or decoded, and ``file://./rel`` is a path
relative to the working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from docloop.config import StorageConfig
from docloop.errors import StorageError, UnsupportedURI

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("file", "s3", "gs")
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
GCS_EMULATOR_DEFAULT_PROJECT = "docloop-test"
GCS_PUBLIC_ENDPOINT = "https://storage.googleapis.com"
AWS_ENDPOINT_ENV = "AWS_ENDPOINT_URL"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_TMP_SUFFIX = ".docloop-tmp"
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{32}" + re.escape(_TMP_SUFFIX) + r"$")
_PROBE_PREFIX = ".docloop-write-probe-"
_S3_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_S3_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "InvalidToken",
        "ExpiredToken",
    }
)


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object.

    Attributes:
        uri: the full URI of the object, in the same style as the prefix it was listed under.
        size: its size in bytes.
        stamp: what changes when the object is rewritten: the S3 ETag, the GCS generation, a
            local file's mtime in nanoseconds ("" when unknown); not part of equality.
    """

    uri: str
    size: int
    stamp: str = field(default="", compare=False)


# --------------------------------------------------------------------------------------------
# URI helpers
# --------------------------------------------------------------------------------------------


def _split_scheme(uri: str) -> tuple[str, str]:
    """Split ``uri`` into its lower-cased scheme (``""`` for a bare path) and the rest."""
    match = _SCHEME_RE.match(uri)
    if match is None:
        return "", uri
    return match.group(1).lower(), uri[match.end() :]


def scheme(uri: str) -> str:
    """Return the backend a URI addresses.

    Args:
        uri: ``file://...``, a bare local path, ``s3://bucket/key`` or ``gs://bucket/key``.

    Returns:
        ``"file"``, ``"s3"`` or ``"gs"``.

    Raises:
        StorageError: the URI is empty.
        UnsupportedURI: the URI has any other scheme.
    """
    if not uri:
        raise StorageError("empty storage URI: pass a path, file://, s3:// or gs:// URI")
    found, _ = _split_scheme(uri)
    if found == "":
        return "file"
    if found not in SUPPORTED_SCHEMES:
        raise UnsupportedURI(
            f"unsupported URI scheme '{found}://' in {uri!r}: use one of "
            + ", ".join(f"{name}://" for name in SUPPORTED_SCHEMES)
            + " (or a plain local path)"
        )
    return found


def is_local(uri: str) -> bool:
    """Tell whether a URI names the local file system.

    Args:
        uri: any URI accepted by :func:`scheme`.

    Returns:
        True for ``file://`` URIs and bare paths.

    Raises:
        UnsupportedURI: the scheme is not supported.
    """
    return scheme(uri) == "file"


def local_path(uri: str) -> Path:
    """Turn a ``file://`` URI or a bare path into a :class:`~pathlib.Path`.

    ``file:///abs/x`` gives ``/abs/x``, ``file://./rel`` gives ``rel`` (relative to the current
    directory) and ``file://localhost/abs/x`` gives ``/abs/x``.

    Args:
        uri: a ``file://`` URI or a plain path.

    Returns:
        The path (relative paths stay relative).

    Raises:
        StorageError: the URI is not local.
    """
    if scheme(uri) != "file":
        raise StorageError(f"{uri} is not a local path or file:// URI")
    _, rest = _split_scheme(uri)
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest:
        raise StorageError(f"{uri!r} names no path: use file:///absolute/path or file://./relative")
    return Path(rest)


def join(base: str, *parts: str) -> str:
    """Join URI segments with ``/``, keeping the scheme intact.

    ``join("s3://b/x/", "y", "z.parquet") == "s3://b/x/y/z.parquet"``. Unlike
    :func:`os.path.join`, a part with a leading slash does not reset to the root; empty parts are
    skipped and a trailing slash on the last part is kept (useful for prefixes).

    Args:
        base: a URI or path.
        *parts: segments to append; each may itself contain ``/``.

    Returns:
        The joined URI.
    """
    match = _SCHEME_RE.match(base)
    head = base[: match.end()] if match else ""
    rest = base[len(head) :]
    segments = [part.strip("/") for part in parts]
    segments = [segment for segment in segments if segment]
    if not segments:
        return base
    tail = "/".join(segments)
    if parts[-1].endswith("/"):
        tail += "/"
    if rest and not rest.strip("/"):  # the root: "/" or "file:///"
        return f"{head}/{tail}"
    stem = rest.rstrip("/")
    return f"{head}{stem}/{tail}" if stem else f"{head}{tail}"


def _bucket_and_key(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` or ``gs://bucket/key`` into bucket and key."""
    _, rest = _split_scheme(uri)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket: use {scheme(uri)}://<bucket>/<key>")
    return bucket, key


def _require_key(uri: str, key: str) -> None:
    if not key or key.endswith("/"):
        raise StorageError(f"{uri} names a bucket or a prefix, not an object: add an object key")


def _dir_prefix(key: str) -> str:
    """The key prefix under which objects of a "directory" ``key`` live."""
    return key if not key or key.endswith("/") else key + "/"


# --------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------


def _raise_oserror(error: OSError) -> NoReturn:
    raise error


def _local_error(exc: OSError, uri: str, action: str) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{uri} does not exist (could not {action} it)")
    if isinstance(exc, IsADirectoryError):
        return StorageError(f"{uri} is a directory, not a file: could not {action} it")
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return StorageError(
            f"could not {action} {uri}: a parent of {exc.filename or uri} is a regular file, not "
            "a directory; choose another location"
        )
    if isinstance(exc, PermissionError):
        return StorageError(
            f"permission denied to {action} {uri}: check the directory's owner and mode"
        )
    return StorageError(f"could not {action} {uri}: {exc}")


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Create ``path`` through a temporary sibling and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_file(tmp: Path, data: bytes) -> None:
    # os.open with 0o666 lets the umask decide the final mode (mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class _Backend(Protocol):
    """What every store implements; URIs passed in are already known to be of its scheme."""

    def list(self, prefix: str, recursive: bool) -> list[ObjectInfo]: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def write_bytes(self, uri: str, data: bytes, content_type: str | None) -> None: ...
    def exists(self, uri: str) -> bool: ...
    def delete(self, uri: str) -> None: ...
    def download(self, uri: str, path: Path) -> None: ...
    def upload(self, path: Path, uri: str) -> None: ...


class _LocalBackend:
    """``file://`` URIs and bare paths."""

    def list(self, prefix: str, recursive: bool) -> list[ObjectInfo]:
        root = local_path(prefix)
        try:
            if root.is_file():
                stat = root.stat()
                return [ObjectInfo(prefix, stat.st_size, str(stat.st_mtime_ns))]
            if not root.is_dir():
                return []
            found: list[ObjectInfo] = []
            for directory, dirnames, filenames in os.walk(root, onerror=_raise_oserror):
                if not recursive:
                    dirnames.clear()
                for name in filenames:
                    if _TMP_RE.match(name):
                        continue
                    file = Path(directory, name)
                    if not file.is_file():  # a dangling link, a socket, ...
                        continue
                    rel = file.relative_to(root).as_posix()
                    stat = file.stat()
                    found.append(ObjectInfo(join(prefix, rel), stat.st_size, str(stat.st_mtime_ns)))
        except OSError as exc:
            raise _local_error(exc, prefix, "list") from exc
        return found

    def read_bytes(self, uri: str) -> bytes:
        try:
            return local_path(uri).read_bytes()
        except OSError as exc:
            raise _local_error(exc, uri, "read") from exc

    def write_bytes(self, uri: str, data: bytes, content_type: str | None) -> None:
        del content_type  # the file system has no content types
        try:
            _atomic_write(local_path(uri), lambda tmp: _write_file(tmp, data))
        except OSError as exc:
            raise _local_error(exc, uri, "write") from exc

    def exists(self, uri: str) -> bool:
        try:
            return local_path(uri).is_file()
        except OSError as exc:
            raise _local_error(exc, uri, "check") from exc

    def delete(self, uri: str) -> None:
        try:
            local_path(uri).unlink(missing_ok=True)
        except OSError as exc:
            raise _local_error(exc, uri, "delete") from exc

    def download(self, uri: str, path: Path) -> None:
        source = local_path(uri)
        try:
            if not source.is_file():
                raise FileNotFoundError(2, "No such file", str(source))
            _atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
        except OSError as exc:
            raise _local_error(exc, uri, f"copy to {path}") from exc

    def upload(self, path: Path, uri: str) -> None:
        if not path.is_file():
            raise StorageError(f"cannot upload {path} to {uri}: {path} is not an existing file")
        target = local_path(uri)
        try:
            _atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
        except OSError as exc:
            raise _local_error(exc, uri, f"copy {path} to") from exc


# --------------------------------------------------------------------------------------------
# S3 and S3-compatible stores
# --------------------------------------------------------------------------------------------


class _S3Backend:
    """``s3://`` URIs through one thread-safe boto3 client."""

    def __init__(self, config: StorageConfig) -> None:
        self._config = config
        endpoint = config.s3_endpoint_url or os.environ.get(AWS_ENDPOINT_ENV) or None
        self._endpoint_url = endpoint
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The endpoint in use, for messages."""
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self._endpoint_url or "the default AWS S3 endpoint"

    def client(self) -> Any:
        """Create the boto3 client on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        options: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 3}}
        if self._endpoint_url:
            # S3-compatible stores (R2, MinIO, moto) want path-style addressing and choke on the
            # default CRC checksums newer botocore adds to every request.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        try:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self._endpoint_url,
                region_name=self._config.s3_region,
                config=Config(**options),
            )
        except ValueError as exc:
            raise StorageError(
                f"invalid S3 endpoint {self._endpoint_url!r}: fix storage.s3_endpoint_url or "
                f"{AWS_ENDPOINT_ENV} ({exc})"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"could not create an S3 client for {self.endpoint}: {exc}; check "
                "storage.s3_region / AWS_DEFAULT_REGION and storage.s3_endpoint_url"
            ) from exc
        logger.debug("created S3 client for %s", client.meta.endpoint_url)
        return client

    def _bucket_missing(self, bucket: str, uri: str) -> StorageError:
        return StorageError(
            f"bucket '{bucket}' of {uri} does not exist at endpoint {self.endpoint}: create it or "
            f"fix storage.s3_endpoint_url / {AWS_ENDPOINT_ENV} and the bucket name"
        )

    def _bucket_exists(self, bucket: str) -> bool | None:
        """True or False when S3 says so, None when it cannot tell (e.g. no permission)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return False if code in {"404", "NoSuchBucket", "NotFound"} else None
        except BotoCoreError:
            return None
        return True

    def _translate_client_error(self, exc: Any, uri: str, action: str) -> StorageError:
        bucket, _ = _bucket_and_key(uri)
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        if code == "NoSuchBucket":
            return self._bucket_missing(bucket, uri)
        if code in _S3_MISSING_CODES:
            if self._bucket_exists(bucket) is False:
                return self._bucket_missing(bucket, uri)
            return StorageError(f"{uri} does not exist (could not {action} it)")
        if code in _S3_DENIED_CODES:
            return StorageError(
                f"access denied to {action} {uri} at {self.endpoint} ({code}): check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's "
                "permissions"
            )
        return StorageError(f"could not {action} {uri} at {self.endpoint}: {code}: {message}")

    def _translate(self, exc: BaseException, uri: str, action: str) -> StorageError:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__
        if isinstance(exc, ClientError):
            return self._translate_client_error(exc, uri, action)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"no usable S3 credentials to {action} {uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
            )
        if isinstance(exc, BotoConnectionError):
            return StorageError(
                f"cannot reach S3 endpoint {self.endpoint} to {action} {uri}: check "
                f"storage.s3_endpoint_url / {AWS_ENDPOINT_ENV} and the network ({exc})"
            )
        return StorageError(f"could not {action} {uri} at {self.endpoint}: {exc}")

    @contextlib.contextmanager
    def _errors(self, uri: str, action: str) -> Iterator[None]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            raise self._translate(exc, uri, action) from exc

    def list(self, prefix: str, recursive: bool) -> list[ObjectInfo]:
        bucket, key = _bucket_and_key(prefix)
        found: list[ObjectInfo] = []
        with self._errors(prefix, "list"):
            params: dict[str, str] = {"Bucket": bucket, "Prefix": _dir_prefix(key)}
            if not recursive:
                params["Delimiter"] = "/"
            for page in self.client().get_paginator("list_objects_v2").paginate(**params):
                for item in page.get("Contents", []):
                    name = str(item["Key"])
                    if not name.endswith("/"):  # skip "directory" marker objects
                        uri = f"s3://{bucket}/{name}"
                        found.append(ObjectInfo(uri, int(item["Size"]), str(item.get("ETag", ""))))
            if key and not key.endswith("/"):
                single = self._head(bucket, key)
                if single is not None:
                    found.append(ObjectInfo(f"s3://{bucket}/{key}", *single))
        return found

    def _head(self, bucket: str, key: str) -> tuple[int, str] | None:
        """The object's size and ETag, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            head = self.client().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _S3_MISSING_CODES:
                return None
            raise
        return int(head["ContentLength"]), str(head.get("ETag", ""))

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        with self._errors(uri, "read"):
            response = self.client().get_object(Bucket=bucket, Key=key)
            data: bytes = response["Body"].read()
        return data

    def write_bytes(self, uri: str, data: bytes, content_type: str | None) -> None:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(uri, "write"):
            self.client().put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def exists(self, uri: str) -> bool:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        with self._errors(uri, "check"):
            found = self._head(bucket, key)
        return found is not None

    def delete(self, uri: str) -> None:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        with self._errors(uri, "delete"):
            self.client().delete_object(Bucket=bucket, Key=key)

    def download(self, uri: str, path: Path) -> None:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        with self._errors(uri, "download"):
            try:
                self.client().download_file(bucket, key, str(path))
            except OSError as exc:
                raise _local_error(exc, str(path), "write") from exc

    def upload(self, path: Path, uri: str) -> None:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        with self._errors(uri, "upload"):
            try:
                self.client().upload_file(str(path), bucket, key)
            except OSError as exc:
                raise _local_error(exc, str(path), "read") from exc


# --------------------------------------------------------------------------------------------
# Google Cloud Storage
# --------------------------------------------------------------------------------------------


def _requests_error() -> type[OSError]:
    """The base of the network errors ``requests`` raises under google-cloud-storage."""
    from requests.exceptions import RequestException  # type: ignore[import-untyped,unused-ignore]

    error: type[OSError] = RequestException
    return error


class _GCSBackend:
    """``gs://`` URIs through one google-cloud-storage client."""

    def __init__(self, config: StorageConfig) -> None:
        self._config = config
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The endpoint in use, for messages."""
        if self._client is not None:
            return str(self._client.api_endpoint)
        return os.environ.get(GCS_EMULATOR_ENV) or GCS_PUBLIC_ENDPOINT

    def client(self) -> Any:
        """Create the google-cloud-storage client on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import storage as gcs

        emulator = os.environ.get(GCS_EMULATOR_ENV)
        try:
            if emulator:
                from google.auth.credentials import AnonymousCredentials

                client = gcs.Client(
                    project=self._config.gcs_project or GCS_EMULATOR_DEFAULT_PROJECT,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
            else:
                client = gcs.Client(project=self._config.gcs_project)
        except GoogleAuthError as exc:
            raise StorageError(
                "no usable Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS (or run "
                f"with workload identity), or {GCS_EMULATOR_ENV} for an emulator ({exc})"
            ) from exc
        logger.debug("created GCS client for %s", client.api_endpoint)
        return client

    def _bucket_missing(self, bucket: str, uri: str) -> StorageError:
        return StorageError(
            f"bucket '{bucket}' of {uri} does not exist at endpoint {self.endpoint}: create it or "
            f"fix the bucket name (and {GCS_EMULATOR_ENV} when using an emulator)"
        )

    def _bucket_exists(self, bucket: str) -> bool | None:
        """True or False when GCS says so, None when it cannot tell (e.g. no permission)."""
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        try:
            return bool(self.client().bucket(bucket).exists())
        except (GoogleAPIError, GoogleAuthError, OSError):
            return None

    def _translate(self, exc: BaseException, uri: str, action: str) -> StorageError:
        from google.api_core.exceptions import Forbidden, NotFound, Unauthorized
        from google.auth.exceptions import GoogleAuthError

        request_error = _requests_error()

        bucket, _ = _bucket_and_key(uri)
        if isinstance(exc, NotFound):
            if self._bucket_exists(bucket) is False:
                return self._bucket_missing(bucket, uri)
            return StorageError(f"{uri} does not exist (could not {action} it)")
        if isinstance(exc, Forbidden | Unauthorized):
            return StorageError(
                f"access denied to {action} {uri} at {self.endpoint}: check "
                "GOOGLE_APPLICATION_CREDENTIALS (or the workload identity) and the bucket's IAM"
            )
        if isinstance(exc, GoogleAuthError):
            return StorageError(
                f"no usable Google Cloud credentials to {action} {uri}: set "
                f"GOOGLE_APPLICATION_CREDENTIALS, or {GCS_EMULATOR_ENV} for an emulator ({exc})"
            )
        if isinstance(exc, request_error):
            return StorageError(
                f"cannot reach GCS endpoint {self.endpoint} to {action} {uri}: check the network "
                f"(and {GCS_EMULATOR_ENV} when using an emulator) ({exc})"
            )
        return StorageError(f"could not {action} {uri} at {self.endpoint}: {exc}")

    @contextlib.contextmanager
    def _errors(self, uri: str, action: str) -> Iterator[None]:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        request_error = _requests_error()

        try:
            yield
        except (GoogleAPIError, GoogleAuthError, request_error) as exc:
            raise self._translate(exc, uri, action) from exc

    def _blob(self, uri: str) -> Any:
        bucket, key = _bucket_and_key(uri)
        _require_key(uri, key)
        return self.client().bucket(bucket).blob(key)

    def list(self, prefix: str, recursive: bool) -> list[ObjectInfo]:
        bucket, key = _bucket_and_key(prefix)
        found: list[ObjectInfo] = []
        with self._errors(prefix, "list"):
            blobs = self.client().list_blobs(
                bucket, prefix=_dir_prefix(key), delimiter=None if recursive else "/"
            )
            for blob in blobs:
                name = str(blob.name)
                if not name.endswith("/"):  # skip "directory" placeholder objects
                    found.append(
                        ObjectInfo(
                            f"gs://{bucket}/{name}", int(blob.size or 0), str(blob.generation or "")
                        )
                    )
            if key and not key.endswith("/"):
                single = self.client().bucket(bucket).get_blob(key)
                if single is not None:
                    found.append(
                        ObjectInfo(
                            f"gs://{bucket}/{key}",
                            int(single.size or 0),
                            str(single.generation or ""),
                        )
                    )
        return found

    def read_bytes(self, uri: str) -> bytes:
        with self._errors(uri, "read"):
            data: bytes = self._blob(uri).download_as_bytes()
        return data

    def write_bytes(self, uri: str, data: bytes, content_type: str | None) -> None:
        with self._errors(uri, "write"):
            self._blob(uri).upload_from_string(
                data, content_type=content_type or "application/octet-stream"
            )

    def exists(self, uri: str) -> bool:
        with self._errors(uri, "check"):
            found = bool(self._blob(uri).exists())
        return found

    def delete(self, uri: str) -> None:
        from google.api_core.exceptions import NotFound

        with self._errors(uri, "delete"):
            try:
                self._blob(uri).delete()
            except NotFound:
                bucket, _ = _bucket_and_key(uri)
                if self._bucket_exists(bucket) is False:
                    raise self._bucket_missing(bucket, uri) from None

    def download(self, uri: str, path: Path) -> None:
        request_error = _requests_error()

        with self._errors(uri, "download"):
            blob = self._blob(uri)
            try:
                _atomic_write(path, lambda tmp: blob.download_to_filename(str(tmp)))
            except request_error:
                raise
            except OSError as exc:
                raise _local_error(exc, str(path), "write") from exc

    def upload(self, path: Path, uri: str) -> None:
        request_error = _requests_error()

        with self._errors(uri, "upload"):
            try:
                self._blob(uri).upload_from_filename(str(path))
            except request_error:
                raise
            except OSError as exc:
                raise _local_error(exc, str(path), "read") from exc


# --------------------------------------------------------------------------------------------
# The facade
# --------------------------------------------------------------------------------------------


class Storage:
    """Read, write and list objects by URI on the local disk, S3 (or R2 / MinIO) and GCS.

    Clients are created on first use and cached on the instance; one instance may be shared
    between threads. Every failure is a :class:`~docloop.errors.StorageError` whose message names
    the URI and what to check.

    Args:
        config: endpoint, region and project settings; defaults to :class:`StorageConfig()`.
    """

    def __init__(self, config: StorageConfig | None = None) -> None:
        self.config = config or StorageConfig()
        self._backends: dict[str, _Backend] = {}
        self._lock = threading.Lock()

    def _backend(self, uri: str) -> _Backend:
        name = scheme(uri)
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                if name == "s3":
                    backend = _S3Backend(self.config)
                elif name == "gs":
                    backend = _GCSBackend(self.config)
                else:
                    backend = _LocalBackend()
                self._backends[name] = backend
        return backend

    def list(self, prefix: str, recursive: bool = True) -> list[ObjectInfo]:
        """List the objects under a prefix.

        The prefix is treated as a directory: ``s3://b/data`` lists ``s3://b/data/...`` but not
        ``s3://b/database/...``. A prefix that names a single object lists that object.

        Args:
            prefix: a directory-like URI, or the URI of one object.
            recursive: False lists only the objects directly under ``prefix``.

        Returns:
            The objects, sorted by URI; empty when nothing is there.

        Raises:
            StorageError: the store cannot be listed (missing bucket, no access, unreachable).
        """
        found = self._backend(prefix).list(prefix, recursive)
        logger.debug("listed %d object(s) under %s", len(found), prefix)
        return sorted(found, key=lambda info: info.uri)

    def read_bytes(self, uri: str) -> bytes:
        """Read a whole object.

        Args:
            uri: the object.

        Returns:
            Its content.

        Raises:
            StorageError: it does not exist or cannot be read.
        """
        data = self._backend(uri).read_bytes(uri)
        logger.debug("read %d bytes from %s", len(data), uri)
        return data

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        """Create or replace an object.

        Local writes create missing parent directories and are atomic (a temporary file renamed
        into place); object-store writes are single atomic PUTs.

        Args:
            uri: the object.
            data: its new content.
            content_type: a MIME type for object stores (ignored for local files).

        Raises:
            StorageError: it cannot be written.
        """
        self._backend(uri).write_bytes(uri, data, content_type)
        logger.debug("wrote %d bytes to %s", len(data), uri)

    def read_text(self, uri: str) -> str:
        """Read a UTF-8 text object.

        Args:
            uri: the object.

        Returns:
            Its decoded content.

        Raises:
            StorageError: it does not exist, cannot be read, or is not UTF-8.
        """
        data = self.read_bytes(uri)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StorageError(f"{uri} is not UTF-8 text: {exc}") from exc

    def write_text(self, uri: str, text: str) -> None:
        """Create or replace an object with UTF-8 text.

        Args:
            uri: the object.
            text: its new content.

        Raises:
            StorageError: it cannot be written.
        """
        self.write_bytes(uri, text.encode("utf-8"), content_type="text/plain; charset=utf-8")

    def exists(self, uri: str) -> bool:
        """Tell whether an object exists.

        Args:
            uri: the object (a local directory is not an object).

        Returns:
            True when it exists; False when it, or its bucket, does not.

        Raises:
            StorageError: the store cannot be asked (no access, unreachable).
        """
        return self._backend(uri).exists(uri)

    def delete(self, uri: str) -> None:
        """Delete an object; deleting a missing object is not an error.

        Args:
            uri: the object.

        Raises:
            StorageError: it cannot be deleted, or its bucket does not exist.
        """
        self._backend(uri).delete(uri)
        logger.debug("deleted %s", uri)

    def download(self, uri: str, path: Path) -> Path:
        """Copy an object to a local file, creating its parent directories.

        Args:
            uri: the object.
            path: the local file to create or replace.

        Returns:
            ``path``.

        Raises:
            StorageError: the object does not exist, or either side cannot be accessed.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _local_error(exc, str(path.parent), "create the directory") from exc
        self._backend(uri).download(uri, path)
        logger.debug("downloaded %s to %s", uri, path)
        return path

    def upload(self, path: Path, uri: str) -> None:
        """Copy a local file to an object.

        Args:
            path: an existing local file.
            uri: the object to create or replace.

        Raises:
            StorageError: ``path`` is not a file, or the object cannot be written.
        """
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"cannot upload {path} to {uri}: {path} is not an existing file")
        self._backend(uri).upload(path, uri)
        logger.debug("uploaded %s to %s", path, uri)

    def ensure_writable(self, prefix: str) -> None:
        """Fail early, with an actionable message, when objects cannot be written under a prefix.

        Writes and deletes a small probe object. For local prefixes the directory is created.

        Args:
            prefix: the directory-like URI that is about to receive objects.

        Raises:
            StorageError: the probe cannot be written or deleted; the message says why.
        """
        probe = join(prefix, f"{_PROBE_PREFIX}{uuid.uuid4().hex}")
        try:
            self.write_bytes(probe, b"docloop write probe\n", content_type="text/plain")
            self.delete(probe)
        except UnsupportedURI:
            raise
        except StorageError as exc:
            raise StorageError(f"{prefix} is not writable: {exc}") from exc
        logger.debug("%s is writable", prefix)
