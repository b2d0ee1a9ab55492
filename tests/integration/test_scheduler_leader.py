"""Of processes on different hosts sharing one PostgreSQL control plane, one schedules automatic
training: the holder of an advisory lock, which the database drops with its holder's connection."""
from __future__ import annotations

import psycopg
import pytest

from serving.control.postgres_store import AdvisoryLeader

pytestmark = pytest.mark.integration


def test_one_leader_per_database_and_the_next_takes_over(fresh_database: str) -> None:
    first, second = AdvisoryLeader(fresh_database), AdvisoryLeader(fresh_database)
    try:
        assert first.held() and first.held()  # holding it again is no new claim
        assert not second.held()
        first.release()  # as when its process exits
        assert second.held() and not first.held()
    finally:
        first.release()
        second.release()


def test_a_leader_whose_connection_died_is_no_longer_leader(fresh_database: str) -> None:
    """As after a kill -9 of its host, or a database restart: the lock went with the connection."""
    first, second = AdvisoryLeader(fresh_database), AdvisoryLeader(fresh_database)
    try:
        assert first.held()
        with psycopg.connect(fresh_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE pid <> pg_backend_pid() AND datname = current_database()")
        assert second.held()
        assert not first.held()  # it notices, and does not schedule beside the new leader
    finally:
        first.release()
        second.release()
