"""Where import and export jobs may read and write: the file roots.

A job's `dataLocation` or export `path` is something a caller typed; without this check it
reads or writes any file the server's user can reach (its environment through
`/proc/self/environ`, a `cron.d`). A `file://` URL or a plain path is allowed only when,
after resolving symlinks and `..`, it lies under one of the configured roots
(`OPZ_FILE_ROOTS`). The check runs when the job is created and again for every file a job
opens, so a symlink swapped in later, or one inside an allowed folder, is refused too.

An `s3://bucket/key` location is read and written through the S3 API with the server's
own credentials, so the same rule holds there: it is allowed only under one of the
configured S3 roots (`OPZ_S3_ROOTS`, none by default), and a key with `.` or `..` segments
is refused, since S3-compatible stores over a file system may resolve them.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


class LocationRefused(ValueError):
    """The location is not one a job may use; the message is safe to show the caller."""


def roots_of(spec: str, data_dir: Path) -> tuple[Path, ...]:
    """`OPZ_FILE_ROOTS` (colon-separated) as resolved folders; empty: `<data dir>/files`."""
    parts = [p for p in spec.split(os.pathsep) if p.strip()] if spec else []
    return tuple(Path(p.strip()).expanduser().resolve() for p in parts) or ((data_dir / "files").resolve(),)


def is_s3(location: str) -> bool:
    return location.lower().startswith("s3://")


BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's naming rules, less the IP form


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # without a leading slash; "" is the whole bucket, "a/" a folder

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def under(self, root: S3Location) -> bool:
        if self.bucket != root.bucket:
            return False
        prefix = root.key.rstrip("/")
        return not prefix or self.key == prefix or self.key.startswith(prefix + "/")

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.key.rstrip('/')}/{name}".lstrip("/"))


def s3_location(location: str) -> S3Location:
    """`s3://bucket/key` parsed, or LocationRefused when S3 would not take it as one."""
    if not is_s3(location):
        raise LocationRefused(f"{_shown(location)} is not an s3:// URL")
    bucket, _, key = location[5:].partition("/")
    if not BUCKET.match(bucket):
        raise LocationRefused(f"{_shown(location)}: {bucket[:70]!r} is not an S3 bucket name")
    if any(part in (".", "..") for part in key.split("/")) or "//" in key.rstrip("/"):
        raise LocationRefused(f"{_shown(location)}: an S3 key may not have empty, '.' or '..' segments")
    return S3Location(bucket, key)


def s3_roots_of(spec: str) -> tuple[S3Location, ...]:
    """`OPZ_S3_ROOTS` (comma-separated `s3://bucket[/prefix]`) parsed; empty: no S3 at all."""
    return tuple(s3_location(p.strip()) for p in spec.split(",") if p.strip())


def s3_confined(location: str, roots: Sequence[S3Location]) -> S3Location:
    """The parsed `location` if it lies under one of `roots`, else LocationRefused."""
    if not roots:
        raise LocationRefused(f"{_shown(location)}: this server allows no s3:// locations "
                              "(set OPZ_S3_ROOTS to the buckets or prefixes jobs may use)")
    parsed = s3_location(location)
    if not any(parsed.under(root) for root in roots):
        raise LocationRefused(f"{_shown(location)} is outside the allowed S3 locations "
                              f"({', '.join(map(str, roots))}; set OPZ_S3_ROOTS)")
    return parsed


@dataclass(frozen=True)
class Locations:
    """Where jobs may read and write: local folders and S3 prefixes."""

    roots: tuple[Path, ...]
    s3_roots: tuple[S3Location, ...] = ()

    def check(self, location: str) -> Path | S3Location:
        """The location a job will use, or LocationRefused with a message for the caller."""
        return s3_confined(location, self.s3_roots) if is_s3(location) else confined(location, self.roots)


def local_path(location: str) -> Path:
    """`file:///abs/path` or an absolute path; anything else is refused."""
    url = urlparse(location)
    if url.scheme == "file":
        if url.netloc not in ("", "localhost"):
            raise LocationRefused(f"{_shown(location)}: a file:// URL names a path on this server "
                                  "(file:///absolute/path), not a host")
        path = Path(unquote(url.path))
    elif url.scheme == "":
        path = Path(location)
    else:
        raise LocationRefused(f"{_shown(location)}: only s3:// URLs, file:// URLs and absolute paths "
                              "are supported")
    if not path.is_absolute():
        raise LocationRefused(f"{_shown(location)}: a local path must be absolute")
    return path


def confined(location: str | Path, roots: Sequence[Path]) -> Path:
    """The resolved path of `location` if it lies under one of `roots`, else LocationRefused.

    Nothing but the path's resolution touches the disk, so a refused location tells the
    caller nothing about what exists outside the roots."""
    path = local_path(location) if isinstance(location, str) else location
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise LocationRefused(f"{_shown(str(location))} is outside the allowed file locations "
                              f"({', '.join(str(r) for r in roots)}; set OPZ_FILE_ROOTS)")
    return resolved


def _shown(location: str) -> str:
    """The caller's location as quoted in a message: theirs, but never unbounded."""
    return repr(location if len(location) <= 200 else location[:200] + "...")
