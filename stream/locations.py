"""Where import and export jobs may read and write: the file roots.

A job's `dataLocation` or export `path` is something a caller typed; without this check it
reads or writes any file the server's user can reach (its environment through
`/proc/self/environ`, a `cron.d`). A `file://` URL or a plain path is allowed only when,
after resolving symlinks and `..`, it lies under one of the configured roots
(`OPZ_FILE_ROOTS`). The check runs when the job is created and again for every file a job
opens, so a symlink swapped in later, or one inside an allowed folder, is refused too.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
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
