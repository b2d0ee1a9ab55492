"""Where the datasets and the events archive keep their files: a folder or an S3 bucket.

Both hold Parquet parts and a manifest that lists them; what they need from storage is small
and the same in both places: read an object with a version tag, write one only if it still has
the version the writer read (`If-Match`, or `If-None-Match: *` for a new one: a compare-and-swap
that lets any number of processes on any hosts update one manifest without a lock server),
list a prefix with modification times, delete. `Folder` keeps the embedded default's files
under the data dir; `Bucket` speaks the S3 API, so AWS S3 and any S3-compatible server work.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from kernel.settings import Settings

MISSING = ("404", "NoSuchKey", "NotFound")  # what S3 answers for a key it does not hold
CHANGED = ("412", "PreconditionFailed", "ConditionalRequestConflict")  # a conditional put lost a race
ANY = "*any*"  # `put(expect=ANY)`: write whatever is there


class Stored(NamedTuple):
    body: bytes
    tag: str  # the version `put(expect=tag)` must find to replace it


class Listed(NamedTuple):
    key: str
    modified: float  # seconds since the epoch


class StoreUnreachable(OSError):
    """The object store refused or failed a call: the S3 error code, never its full text (which
    can carry the endpoint or a request's details)."""


class ObjectStore(Protocol):
    def get(self, key: str) -> Stored | None: ...

    def put(self, key: str, body: bytes, *, expect: str | None = ANY) -> bool:
        """Write `body` at `key` if the key holds version `expect` (None: if it holds nothing);
        False when another writer got there first."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store a local file at `key`, unconditionally (a part file: written once, never changed)."""
        ...

    def list(self, prefix: str) -> list[Listed]: ...

    def delete(self, key: str) -> None: ...

    def describe(self, key: str) -> str:
        """Where `key` is, for logs and messages an operator reads."""
        ...


def objects_of(settings: Settings, name: str) -> ObjectStore:
    """The `name` folder of the data dir, or the `name/` prefix of OPZ_S3_BUCKET."""
    if settings.s3_bucket:
        return Bucket(settings.s3_bucket, f"{name}/", settings.s3_endpoint_url)
    return Folder(settings.data_dir / name)


class Folder:
    """Objects as files under `root`; keys are relative POSIX paths. A put is a write to a
    temporary name and an `os.replace`, so a reader sees the old object or the new one; a
    conditional put holds an exclusive flock on the folder's `.lock` while it compares."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Stored | None:
        try:
            body = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(body, hashlib.md5(body, usedforsecurity=False).hexdigest())

    def put(self, key: str, body: bytes, *, expect: str | None = ANY) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() if expect != ANY else contextlib.nullcontext():
            if expect != ANY:
                now = self.get(key)
                if (now.tag if now else None) != expect:
                    return False
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)  # staged under the same root: one rename

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def list(self, prefix: str) -> list[Listed]:
        base = self._path(prefix) if prefix.endswith("/") or not prefix else self._path(prefix).parent
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            hidden = any(name.startswith(".") for name in key.split("/"))  # locks, staged files
            if key.startswith(prefix) and not hidden and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    found.append(Listed(key, path.stat().st_mtime))
        return sorted(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # its folder, once empty
            path.parent.rmdir()

    def describe(self, key: str) -> str:
        return str(self._path(key))


class Bucket:
    """Objects under `prefix` in an S3 bucket."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix, endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:  # used from worker threads: build one client, not several
            if self._client is None:
                self._client = s3_client(self.endpoint_url)
            return self._client

    def get(self, key: str) -> Stored | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return Stored(response["Body"].read(), response["ETag"])
        except Exception as exc:  # noqa: BLE001 - ClientError and connection errors alike
            if error_code(exc) in MISSING:
                return None
            raise self._unreachable("read", key, exc) from None

    def put(self, key: str, body: bytes, *, expect: str | None = ANY) -> bool:
        condition = {} if expect == ANY else {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body, **condition)
            return True
        except Exception as exc:  # noqa: BLE001
            if condition and error_code(exc) in (*CHANGED, *(MISSING if expect else ())):
                return False
            raise self._unreachable("write", key, exc) from None

    def put_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self.prefix + key)
        except Exception as exc:  # noqa: BLE001 - ClientError, S3UploadFailedError, connection errors
            raise self._unreachable("write", key, exc) from None

    def list(self, prefix: str) -> list[Listed]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            return sorted(Listed(obj["Key"][len(self.prefix):], obj["LastModified"].timestamp())
                          for page in pages for obj in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001
            raise self._unreachable("list", prefix, exc) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) not in MISSING:
                raise self._unreachable("delete", key, exc) from None

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _unreachable(self, verb: str, key: str, exc: Exception) -> StoreUnreachable:
        why = error_code(exc) or type(exc).__name__
        return StoreUnreachable(f"could not {verb} {self.describe(key)}: {why}")


def s3_client(endpoint_url: str | None) -> Any:
    """One boto3 S3 client with standard retries and timeouts that fail a dead endpoint in
    seconds, not minutes."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, config=Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60))


def error_code(exc: Exception) -> str | None:
    """The S3 error code of a botocore ClientError (None for any other failure)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
