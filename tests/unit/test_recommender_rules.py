"""Domain use cases, their schemas and a recommender's life: the rules, and the scheduler
over a control store."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from kernel.dataset_schema import SchemaError, check_domain, parse_schema
from kernel.recipes import BY_NAME, RECIPES
from kernel.settings import Settings
from serving.control.base import Ctx
from serving.control.recommenders import RETRAIN_S, due, start_training, status_of, versions_of
from serving.control.sqlite_store import ResourceStore
from serving.recommend import RELATED_ITEMS, USER_PERSONALIZATION, User, excluded
from serving.schedule import schedule_due
from stream.live_state import Past

DAY = 86_400
RECIPE = "arn:aws:personalize:::recipe/aws-vod-top-picks"


def schema(*fields: dict[str, object]) -> str:
    return json.dumps({"type": "record", "name": "Items", "fields": [
        {"name": "ITEM_ID", "type": "string"}, *fields]})


def test_each_domain_has_its_five_use_cases_which_no_solution_takes() -> None:
    for domain, prefix in (("VIDEO_ON_DEMAND", "aws-vod-"), ("ECOMMERCE", "aws-ecomm-")):
        cases = [r for r in RECIPES.values() if r.domain == domain]
        assert len(cases) == 5 and all(r.name.startswith(prefix) and r.use_case for r in cases)
    assert not BY_NAME["aws-hrnn"].use_case and not BY_NAME["aws-trending-now"].use_case
    assert BY_NAME["aws-ecomm-frequently-bought-together"].event_types == ("Purchase",)
    assert BY_NAME["aws-vod-top-picks"].drops_own == "Watch"
    assert not BY_NAME["aws-vod-trending-now"].needs_user


def test_a_video_catalogue_needs_categorical_genres_and_a_creation_time() -> None:
    good = parse_schema(schema({"name": "GENRES", "type": "string", "categorical": True},
                               {"name": "CREATION_TIMESTAMP", "type": "long"},
                               {"name": "DURATION", "type": ["null", "float"]}))
    check_domain(good, "ITEMS", "VIDEO_ON_DEMAND")
    with pytest.raises(SchemaError, match="GENRES"):
        check_domain(parse_schema(schema({"name": "CREATION_TIMESTAMP", "type": "long"},
                                         {"name": "RATING", "type": "float"})), "ITEMS", "VIDEO_ON_DEMAND")
    plain_genres = parse_schema(schema({"name": "GENRES", "type": "string"},
                                       {"name": "CREATION_TIMESTAMP", "type": "long"}))
    with pytest.raises(SchemaError, match="categorical"):
        check_domain(plain_genres, "ITEMS", "VIDEO_ON_DEMAND")
    text_duration = parse_schema(schema({"name": "GENRES", "type": "string", "categorical": True},
                                        {"name": "CREATION_TIMESTAMP", "type": "long"},
                                        {"name": "DURATION", "type": "string", "categorical": True}))
    with pytest.raises(SchemaError, match="DURATION.*float"):
        check_domain(text_duration, "ITEMS", "VIDEO_ON_DEMAND")


def test_a_product_catalogue_needs_a_price_and_a_category() -> None:
    check_domain(parse_schema(schema({"name": "PRICE", "type": "float"},
                                     {"name": "CATEGORY_L1", "type": "string", "categorical": True})),
                 "ITEMS", "ECOMMERCE")
    with pytest.raises(SchemaError, match="PRICE"):
        check_domain(parse_schema(schema({"name": "CATEGORY_L1", "type": "string", "categorical": True})),
                     "ITEMS", "ECOMMERCE")


def test_a_recommender_shows_its_first_trainings_status_until_one_is_active() -> None:
    recommender = {"status": "ACTIVE"}
    assert status_of(recommender, []) == ("CREATE PENDING", None)
    assert status_of(recommender, [{"status": "CREATE IN_PROGRESS"}])[0] == "CREATE IN_PROGRESS"
    assert status_of(recommender, [{"status": "CREATE FAILED", "failureReason": "too few"}]) == (
        "CREATE FAILED", "too few")
    trained = [{"status": "ACTIVE"}, {"status": "CREATE FAILED", "failureReason": "x"}]
    assert status_of(recommender, trained) == ("ACTIVE", None)  # a failed retrain leaves it serving
    assert status_of({"status": "INACTIVE"}, trained) == ("INACTIVE", None)


def test_an_active_recommender_retrains_every_seven_days_unless_stopped_or_training() -> None:
    now = 100 * DAY
    trained = [{"status": "ACTIVE", "creationDateTime": now - RETRAIN_S}]
    assert due({"status": "ACTIVE"}, trained, now)
    assert not due({"status": "ACTIVE"}, trained, now - 1)
    assert not due({"status": "INACTIVE"}, trained, now)
    assert not due({"status": "ACTIVE"}, [*trained, {"status": "CREATE IN_PROGRESS",
                                                    "creationDateTime": now}], now + RETRAIN_S)
    assert not due({"status": "ACTIVE"}, [{"status": "CREATE FAILED", "creationDateTime": 0}], now)


def test_a_use_case_never_answers_the_users_own_items_of_its_event_type() -> None:
    past = Past(np.array([4, 2, 7, 9]), np.array([1.0, 2.0, 3.0, 4.0]),
                types=("Watch", "click", "WATCH", "Click"))
    user = User("u", past)
    assert excluded(USER_PERSONALIZATION, None, user, "Watch").tolist() == [4, 7]
    assert excluded(RELATED_ITEMS, 9, user, "watch").tolist() == [4, 7, 9]
    assert excluded(RELATED_ITEMS, 9, user, None).tolist() == [9]


def test_the_scheduler_retrains_a_recommender_a_week_after_its_last_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = ResourceStore(tmp_path / "control.db")
    ctx = Ctx(settings=Settings(data_dir=tmp_path), resources=resources, datasets=None)  # type: ignore[arg-type]
    arn = "arn:aws:personalize:us-east-1:000000000000:recommender/picks"
    recommender = {"recommenderArn": arn, "datasetGroupArn": "g", "recipeArn": RECIPE, "status": "ACTIVE",
                   "recommenderConfig": {"minRecommendationRequestsPerSecond": 1}}
    resources.create("recommender", arn, "picks", recommender)
    first = start_training(ctx, recommender, recommender["recommenderConfig"])
    resources.update(first, {"status": "ACTIVE"})
    schedule_due(ctx, update_every_s=3600)
    assert len(versions_of(ctx, arn)) == 1
    later = time.time() + RETRAIN_S + 1
    monkeypatch.setattr(time, "time", lambda: later)
    schedule_due(ctx, update_every_s=3600)
    versions = versions_of(ctx, arn)
    assert [(v["status"], v["trainingType"]) for v in versions] == [
        ("ACTIVE", "MANUAL"), ("CREATE PENDING", "AUTOMATIC")]
    assert versions[1]["recipeArn"] == RECIPE and versions[1]["recommenderArn"] == arn
    resources.close()
