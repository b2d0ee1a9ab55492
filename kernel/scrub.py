"""Deleting rows from SQLite so that their bytes go too, not only the rows.

A plain DELETE leaves the rows' bytes in the file's free pages and in the WAL until something
overwrites them; data a user asked us to delete must not be readable from the file after.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def scrubbed(db: sqlite3.Connection) -> Iterator[None]:
    """Deletes made inside overwrite what they remove (secure_delete); after, the WAL, which
    still holds the pages as they were, is checkpointed into the file and truncated (a reader
    in the middle of a transaction can delay that to the next checkpoint)."""
    before = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute(f"PRAGMA secure_delete = {int(before)}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    """`values` in slices small enough for one statement's parameters."""
    for start in range(0, len(values), size):
        yield values[start:start + size]
