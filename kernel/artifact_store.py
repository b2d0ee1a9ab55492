"""Where model artifacts live: a folder of the data dir (embedded default) or an S3 bucket.

A solution version's artifact has one location, `artifacts/<solution>/<version id>`, which
is what the control plane records and what every reader passes here; `ArtifactStore` alone
knows whether `<data dir>/<location>/` or the bucket's `<location>/` prefix holds it, so the
trainer, serving and the stream workers never build a path of their own.

With `OPZ_S3_BUCKET` the trainer still writes the directory locally (a staging folder), then
uploads every file and `manifest.json` last, with each file's SHA-256 in the manifest: an
artifact exists exactly when its manifest does, so a reader never sees a half-written one.
Readers copy it into `<data dir>/cache/<location>/`, one file at a time: each is streamed to
a temporary name of the process's own, hashed from disk, and renamed only when it matches
(two processes downloading at once each rename a whole, verified file; a mismatch is
deleted and refused, never cached). The cached `manifest.json` is renamed in last, so a
cache holding it is complete and a restart or another process on the data dir reuses it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.artifact_files import MANIFEST
from kernel.contract import ArtifactManifest
from kernel.object_store import MISSING, error_code, s3_client

if TYPE_CHECKING:
    from kernel.settings import Settings

CACHE = "cache"  # <data dir>/cache/<location>: downloaded, verified artifacts
CHUNK = 1 << 20  # bytes hashed at a time: a 1.5 GB embedding file never sits in memory


class ArtifactError(Exception):
    """Why an artifact cannot be used, in words safe to show an operator or a caller."""


class ArtifactMissing(ArtifactError, FileNotFoundError):
    """No manifest at that location: the artifact was never (or not yet wholly) written."""


class ArtifactCorrupt(ArtifactError, ValueError):
    """A file does not match the checksum its manifest records, or the manifest is unusable."""


class ArtifactUnreachable(ArtifactError, OSError):
    """The object store refused or failed a call (the S3 error code, never its full text)."""


# ---- pure parts: names, keys, checksums ----

def artifact_location(version_arn: str) -> str:
    """`artifacts/<solution>/<version id>` of a solution version ARN, and
    `artifacts/recommender.<name>/<id>` of a recommender's training (no solution name has a
    dot): the same string in both modes, relative to the data dir or to the bucket."""
    if ":recommender/" in version_arn:
        recommender, version = version_arn.split(":recommender/", 1)[1].rsplit("/", 1)
        return f"artifacts/recommender.{recommender}/{version}"
    solution, version = version_arn.split(":solution/", 1)[1].rsplit("/", 1)
    return f"artifacts/{solution}/{version}"


def checked_name(name: str) -> str:
    """A file name from a manifest, refused when it could leave the artifact's folder or prefix
    (a manifest is data: the bucket may be writable by more than the trainer)."""
    parts = name.split("/")
    if not name or "\\" in name or any(p in ("", ".", "..") for p in parts) or name == MANIFEST:
        raise ArtifactCorrupt(f"the manifest names an unusable file {name[:200]!r}")
    return name


def object_key(location: str, name: str) -> str:
    """The bucket key of one file of the artifact at `location`."""
    return f"{location.strip('/')}/{checked_name(name) if name != MANIFEST else name}"


def checksums_of(manifest: ArtifactManifest, location: str) -> dict[str, str]:
    """file name -> SHA-256 of every file a reader must fetch; a manifest without them cannot be
    verified, so it is refused rather than trusted."""
    if not manifest.checksums:
        raise ArtifactCorrupt(f"artifact {location}: its manifest records no checksums (written before "
                              "they were kept): train the version again to store it in the bucket")
    return {checked_name(name): digest for name, digest in manifest.checksums.items()}


def check_digest(location: str, name: str, expected: str, actual: str) -> None:
    """Refuse a file whose content is not what the trainer wrote."""
    if actual != expected:
        raise ArtifactCorrupt(f"artifact {location}: {name} does not match its checksum (SHA-256 {actual}, "
                              f"the manifest records {expected}); refused and not cached")


def with_checksums(manifest_json: str, checksums: Mapping[str, str]) -> str:
    """The manifest's JSON with these checksums recorded."""
    manifest = ArtifactManifest.model_validate_json(manifest_json)
    recorded = manifest.model_copy(update={"checksums": dict(sorted(checksums.items()))})
    return recorded.model_dump_json(indent=2)


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def evictable(cached: Sequence[tuple[str, float, int]], budget: int, keep: str) -> list[str]:
    """Of the cached artifacts (location, last used, bytes), the least recently used to delete
    so that the rest fit in `budget` bytes; never `keep`, the one being loaded."""
    total = sum(size for _, _, size in cached)
    gone = []
    for location, _, size in sorted(cached, key=lambda c: c[1]):
        if total <= budget:
            break
        if location != keep:
            gone.append(location)
            total -= size
    return gone


def files_of(directory: Path) -> Iterator[str]:
    """Every file of an artifact directory but its manifest, as POSIX names relative to it."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            yield path.relative_to(directory).as_posix()


# ---- the store ----

class ArtifactStore:
    """Writes (`staging`, `publish`), reads (`local`) and deletes artifacts by location."""

    def __init__(self, data_dir: Path, bucket: str | None = None, endpoint_url: str | None = None,
                 cache_bytes: int | None = None) -> None:
        self.data_dir, self.bucket, self.endpoint_url = data_dir, bucket, endpoint_url
        self.cache_bytes = cache_bytes  # the cache's budget; None: unbounded
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def of(cls, settings: Settings) -> ArtifactStore:
        return cls(settings.data_dir, settings.s3_bucket, settings.s3_endpoint_url,
                   int(settings.artifact_cache_gb * 2**30))

    @property
    def in_bucket(self) -> bool:
        return self.bucket is not None

    def cache_dir(self, location: str) -> Path:
        return self.data_dir / CACHE / location

    def staging(self, location: str) -> Path:
        """An empty folder for the trainer to write the artifact into, beside where it will end
        up locally (the data dir's folder, or the cache's), so `publish` renames it."""
        home = self.cache_dir(location) if self.in_bucket else self.data_dir / location
        tmp = home.with_name(f".{home.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def publish(self, directory: Path, location: str) -> None:
        """Record every file's checksum in the manifest, then make the artifact visible as a
        whole: renamed into the data dir, or uploaded with the manifest last (and kept as the
        cache, since its files are the ones just hashed). A re-run after a crash replaces
        what an earlier run of the same version left."""
        checksums = {name: sha256_of(directory / name) for name in files_of(directory)}
        manifest = directory / MANIFEST
        manifest.write_text(with_checksums(manifest.read_text(), checksums))
        home = self.data_dir / location
        if self.in_bucket:
            for name in checksums:
                self._call("write", name, location, self.client.upload_file, str(directory / name),
                           self.bucket, object_key(location, name))
            self._call("write", MANIFEST, location, self.client.upload_file, str(manifest), self.bucket,
                       object_key(location, MANIFEST))
            home = self.cache_dir(location)
        shutil.rmtree(home, ignore_errors=True)
        home.parent.mkdir(parents=True, exist_ok=True)
        os.replace(directory, home)

    def exists(self, location: str) -> bool:
        """Whether the artifact is whole (its manifest is there)."""
        if not self.in_bucket:
            return (self.data_dir / location / MANIFEST).is_file()
        try:
            self.client.head_object(Bucket=self.bucket, Key=object_key(location, MANIFEST))
            return True
        except Exception as exc:  # noqa: BLE001 - ClientError and connection errors alike
            if error_code(exc) in MISSING:
                return False
            raise _unreachable("read", MANIFEST, location, exc) from None

    def local(self, location: str) -> Path:
        """A local folder holding the whole artifact: the data dir's, or the verified cache of
        the bucket's (downloaded now when it is not cached yet)."""
        if not self.in_bucket:
            directory = self.data_dir / location
            if not (directory / MANIFEST).is_file():
                raise ArtifactMissing(f"artifact {location}: not in {self.data_dir} (no manifest)")
            return directory
        cache = self.cache_dir(location)
        if (cache / MANIFEST).is_file():
            with contextlib.suppress(FileNotFoundError):  # its last use, for eviction
                os.utime(cache / MANIFEST)
            return cache
        body = self._manifest(location)
        try:
            manifest = ArtifactManifest.model_validate_json(body)
        except ValueError:
            raise ArtifactCorrupt(f"artifact {location}: its manifest is not an artifact manifest") from None
        cache.mkdir(parents=True, exist_ok=True)
        for name, digest in checksums_of(manifest, location).items():
            self._fetch(location, name, digest, cache / name)
        _rename_in(cache / MANIFEST, body)
        self.evict(keep=location)
        return cache

    def evict(self, keep: str) -> list[str]:
        """Delete the least recently used cached artifacts beyond the cache's budget (manifest
        first: no reader takes a half-deleted one for whole); a process that has one loaded keeps
        its open files, and the next load downloads it again. Returns the locations deleted."""
        if self.cache_bytes is None:
            return []
        root = self.data_dir / CACHE
        cached = []
        for manifest in root.glob("artifacts/*/*/" + MANIFEST):
            with contextlib.suppress(FileNotFoundError):
                size = sum(f.stat().st_size for f in manifest.parent.rglob("*") if f.is_file())
                cached.append((manifest.parent.relative_to(root).as_posix(), manifest.stat().st_mtime, size))
        gone = evictable(cached, self.cache_bytes, keep)
        for location in gone:
            (root / location / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(root / location, ignore_errors=True)
        return gone

    def delete(self, location: str) -> None:
        """The artifact wherever it is (manifest first, so no reader takes a half-deleted one
        for whole), its cache, and what a crashed trainer left staged."""
        if self.in_bucket:
            prefix = location.strip("/") + "/"
            self._call("delete", MANIFEST, location, self.client.delete_object, Bucket=self.bucket,
                       Key=object_key(location, MANIFEST))
            keys = self._call("list", "", location, self._keys, prefix)
            for key in keys:
                self._call("delete", key, location, self.client.delete_object, Bucket=self.bucket, Key=key)
        for home in (self.data_dir / location, self.cache_dir(location)):
            for path in (home, home.with_name(f".{home.name}.tmp")):
                shutil.rmtree(path, ignore_errors=True)
            try:  # the solution's folder, once its last version is gone
                home.parent.rmdir()
            except OSError:
                pass

    # ---- S3 ----

    @property
    def client(self) -> Any:
        with self._client_lock:  # trainings run in threads: build one client, not several
            if self._client is None:
                self._client = s3_client(self.endpoint_url)
            return self._client

    def _keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def _manifest(self, location: str) -> str:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key(location, MANIFEST))
            return response["Body"].read().decode()
        except Exception as exc:  # noqa: BLE001 - ClientError and connection errors alike
            if error_code(exc) in MISSING:
                raise ArtifactMissing(f"artifact {location}: not in bucket {self.bucket} "
                                      "(no manifest: not trained yet, or deleted)") from None
            raise _unreachable("read", MANIFEST, location, exc) from None

    def _fetch(self, location: str, name: str, digest: str, target: Path) -> None:
        """One verified file at `target`: a cached one is re-hashed (a download cut short by a
        crash never got its name, but a re-trained version may have left another), otherwise
        it is streamed to a name of this process's own, hashed, and renamed."""
        if target.is_file():
            if sha256_of(target) == digest:
                return
            target.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
        try:
            try:
                self.client.download_file(self.bucket, object_key(location, name), str(part))
            except Exception as exc:  # noqa: BLE001 - ClientError and connection errors alike
                if error_code(exc) in MISSING:
                    raise ArtifactCorrupt(f"artifact {location}: its manifest names {name}, which the "
                                          "bucket does not hold") from None
                raise _unreachable("read", name, location, exc) from None
            check_digest(location, name, digest, sha256_of(part))
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    def _call(self, verb: str, name: str, location: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - ClientError, S3UploadFailedError, connection errors
            raise _unreachable(verb, name, location, exc) from None


def _rename_in(target: Path, text: str) -> None:
    """Write `text` to a temporary name of this process's own, then rename it to `target`."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _unreachable(verb: str, name: str, location: str, exc: Exception) -> ArtifactUnreachable:
    """The S3 error code (AccessDenied, NoSuchBucket, ...) or the kind of failure; never the
    exception's text, which can carry the endpoint or a request id's details."""
    what = f"artifact {location}" + (f" {name}" if name else "")
    return ArtifactUnreachable(f"could not {verb} {what}: {error_code(exc) or type(exc).__name__}")
