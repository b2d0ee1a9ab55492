"""Access keys: who may call the server, and for which account.

Keys made by `personalize keys create` live in the control store (serving/control/store.py,
a table of their own): control.db, made readable by the server's user only, or the
PostgreSQL database of OPZ_DATABASE_URL, which every host shares. Deployments that keep
secrets elsewhere (a Kubernetes Secret, a Compose secret) name a JSON file with
`OPZ_KEYS_FILE`: a list of `{"accessKeyId", "secretAccessKey", "account"}`, what
`keys create --json` prints. Signed calls are required as soon as one key exists.
"""
from __future__ import annotations

import logging
import re
import secrets
import string
import time
from pathlib import Path

import orjson

from serving.control.store import ControlStore
from serving.sigv4 import Key

log = logging.getLogger(__name__)
ACCOUNT = re.compile(r"\d{12}")
_ID_CHARS = string.ascii_uppercase + string.digits


class KeysFileError(ValueError):
    """OPZ_KEYS_FILE cannot be used; the message says why (never a secret)."""


def new_key(account: str) -> Key:
    if not ACCOUNT.fullmatch(account):
        raise ValueError(f"an account id is 12 digits, not {account!r}")
    access_key_id = "AKOP" + "".join(secrets.choice(_ID_CHARS) for _ in range(16))
    return Key(access_key_id, secrets.token_urlsafe(30), account)


def keys_from_file(path: Path) -> dict[str, Key]:
    try:
        entries = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KeysFileError(f"OPZ_KEYS_FILE {path}: {type(exc).__name__}") from None
    entries = [entries] if isinstance(entries, dict) else entries
    keys: dict[str, Key] = {}
    for i, e in enumerate(entries if isinstance(entries, list) else [None]):
        try:
            key = Key(str(e["accessKeyId"]), str(e["secretAccessKey"]), str(e["account"]))
        except (TypeError, KeyError):
            raise KeysFileError(f"OPZ_KEYS_FILE {path}: entry {i} needs accessKeyId, secretAccessKey "
                                "and account") from None
        if not ACCOUNT.fullmatch(key.account):
            raise KeysFileError(f"OPZ_KEYS_FILE {path}: entry {i}'s account is not 12 digits")
        keys[key.access_key_id] = key
    return keys


class AccessKeys:
    """The keys of one control store (and of OPZ_KEYS_FILE), as the signature check looks them
    up: cached for `ttl_s`, so a request does not read the database and a new or deleted key
    takes effect within that time. The store stays its opener's to close."""

    def __init__(self, store: ControlStore, keys_file: Path | None = None, ttl_s: float = 5.0) -> None:
        self._store = store
        self._file = keys_file
        self._file_keys = keys_from_file(keys_file) if keys_file is not None else {}
        self.ttl_s = ttl_s
        self._cache: tuple[float, dict[str, Key]] = (-1e18, {})

    def create(self, account: str) -> Key:
        key = new_key(account)
        self._store.add_key(key, time.time())
        self._cache = (-1e18, {})
        return key

    def delete(self, access_key_id: str) -> bool:
        deleted = self._store.delete_key(access_key_id)
        self._cache = (-1e18, {})
        return deleted

    def stored(self) -> list[Key]:
        return self._store.keys()

    def all(self) -> dict[str, Key]:
        """Every key, the database's and the file's, at most `ttl_s` old."""
        at, keys = self._cache
        now = time.monotonic()
        if now - at >= self.ttl_s:
            if self._file is not None:
                try:
                    self._file_keys = keys_from_file(self._file)
                except KeysFileError as exc:  # a Secret being rewritten: keep the last good keys
                    log.warning("%s; keeping the keys read before", exc)
            keys = {k.access_key_id: k for k in self.stored()} | self._file_keys
            self._cache = (now, keys)
        return keys

    def get(self, access_key_id: str) -> Key | None:
        return self.all().get(access_key_id)

    def required(self) -> bool:
        """True once any key exists: from then on every call must be signed."""
        return bool(self.all())
