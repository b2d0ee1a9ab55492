"""Settings refuse combinations that would only fail later, at the first PutEvents."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from kernel.settings import Settings


def test_min_insync_replicas_cannot_exceed_the_replication_factor() -> None:
    with pytest.raises(ValidationError, match="MIN_INSYNC_REPLICAS"):
        Settings(kafka_replication_factor=1, kafka_min_insync_replicas=2)
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    assert settings.kafka_min_insync_replicas == 2
    assert Settings().kafka_min_insync_replicas is None  # the brokers' default


def test_several_api_processes_need_distributed_mode() -> None:
    with pytest.raises(ValidationError, match="need distributed mode"):
        Settings(workers=2)
    settings = Settings(workers=2, kafka_bootstrap_servers="k:9092", redis_url="redis://r:6379/0")
    assert settings.workers == 2 and not settings.embedded
    assert Settings().workers == 1


def test_the_database_url_is_a_secret() -> None:
    """OPZ_DATABASE_URL may carry the database's password: printing the settings hides it."""
    settings = Settings(database_url="postgresql://opz:s3cret@db:5432/opz")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://opz:s3cret@db:5432/opz"
    assert Settings().database_url is None  # the control plane in <data dir>/control.db
