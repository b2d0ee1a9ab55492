"""Jobs' files in S3 or an S3-compatible store, through boto3: imports, exports, batch jobs.

A job downloads the objects it reads into a private spool folder and reads them as local
files, so the checks and the bounded-memory readers are the same for both kinds of location;
what a job writes is written locally, then uploaded (boto3's managed transfer sends large
files in parts). Credentials are the server's own (the standard chain).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel.locations import S3Location


class S3Error(ValueError):
    """What went wrong with an S3 location, in words safe to show the caller."""


class S3Files:
    def __init__(self, endpoint_url: str | None) -> None:
        self.endpoint_url = endpoint_url
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, config=Config(
                retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60))
        return self._client

    def csv_keys(self, location: S3Location) -> list[str]:
        """The object itself, or every .csv directly in the folder it names."""
        if location.key and not location.key.endswith("/") and self._exists(location):
            return [location.key]
        prefix = location.key.rstrip("/") + "/" if location.key else ""
        keys = [key for key in self._listing(location.bucket, prefix)
                if key.lower().endswith(".csv") and "/" not in key[len(prefix):]]
        if not keys:
            raise S3Error(f"{location} is neither an object nor a folder with .csv objects")
        return sorted(keys)

    def download(self, location: S3Location, into: Path) -> list[Path]:
        """Each CSV of `location` as a file of `into`, in the order the job reads them."""
        files = []
        for i, key in enumerate(self.csv_keys(location)):
            path = into / f"{i:05d}-{Path(key).name}"
            self._call("read", location, self.client.download_file, location.bucket, key, str(path))
            files.append(path)
        return files

    def fetch(self, location: S3Location, into: Path) -> Path:
        """The one object `location` names, as the file `into`."""
        self._call("read", location, self.client.download_file, location.bucket, location.key, str(into))
        return into

    def upload(self, file: Path, location: S3Location) -> None:
        self._call("write", location, self.client.upload_file, str(file), location.bucket, location.key)

    def _exists(self, location: S3Location) -> bool:
        from botocore.exceptions import ClientError
        try:
            self.client.head_object(Bucket=location.bucket, Key=location.key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _refused("read", location, exc) from None

    def _listing(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        except Exception as exc:  # noqa: BLE001 - ClientError and connection errors alike
            raise _refused("list", S3Location(bucket, prefix), exc) from None

    @staticmethod
    def _call(verb: str, location: S3Location, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - ClientError, S3UploadFailedError, connection errors
            raise _refused(verb, location, exc) from None


def _refused(verb: str, location: S3Location, exc: Exception) -> S3Error:
    """The S3 error code (AccessDenied, NoSuchBucket, ...) or the kind of failure; never the
    exception's text, which can carry the endpoint or a request id's details."""
    from botocore.exceptions import ClientError
    code = (exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None) \
        or type(exc).__name__
    return S3Error(f"could not {verb} {location}: {code}")
