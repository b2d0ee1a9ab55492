"""aws-trending-now: growth between the last two complete windows, from training to serving.

The story: `steady` gets 10 interactions in every hour and has a long past, so it is the most
popular; `rising` gets 1, then 8. With a 1-hour frequency `rising` trends above `steady`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from support import archived

from kernel.artifact_files import Common, write_common, write_manifest
from kernel.contract import ArtifactManifest, Event
from kernel.trending import (
    BUCKET_S,
    KEEP_S,
    BucketCounts,
    bucket_expires_at,
    bucket_of,
    bucketed,
    counts_of,
    merged,
    no_counts,
    oldest_kept_bucket,
    scores_at,
    streamed_counts,
    trending_order,
    trending_scores,
    window_counts,
    windows,
)
from serving.models import load
from serving.trending import TrendingNow
from stream.counters import bucket_name, expires_at, increments
from training import trending
from training.interactions import Interactions

H = 3600
# a multiple of the hour; evaluated in [B + 2H, B + 3H), W0 = [B, B + H) and W1 = [B + H, B + 2H)
B = 1_699_999_200
ITEMS = ["steady", "rising", "old", "falling"]
STEADY, RISING, OLD, FALLING = range(4)


def rows(*spans: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(item, count, start) -> that many interactions of the item a second apart from start."""
    item = np.concatenate([np.full(n, i) for i, n, _ in spans])
    time = np.concatenate([start + np.arange(n) for _, n, start in spans])
    return item, time


STORY = rows((STEADY, 100, B - 5 * H), (STEADY, 10, B), (STEADY, 10, B + H),
             (RISING, 1, B + 60), (RISING, 8, B + H + 60),
             (OLD, 50, B - 9 * H), (FALLING, 6, B), (FALLING, 2, B + H))


def story_counts() -> BucketCounts:
    return bucketed(*STORY, since_bucket=0)


def popularity() -> np.ndarray:
    return np.bincount(STORY[0], minlength=len(ITEMS)).astype(np.float64)


def test_the_item_growing_fastest_trends_above_the_most_popular() -> None:
    scores = scores_at(story_counts(), popularity(), B + 2 * H + 600, H)
    assert [ITEMS[c] for c in np.argsort(-scores, kind="stable")] == ["rising", "steady", "old", "falling"]
    assert scores.dtype == np.float32 and (scores > 0).all()


def test_growth_ties_go_to_the_latest_window_then_to_popularity() -> None:
    c0, c1 = np.array([0.0, 5, 0, 0]), np.array([3.0, 8, 3, 0])
    order = trending_order(c0, c1, np.array([1.0, 1, 9, 100]))
    assert order.tolist() == [1, 2, 0, 3]  # growth 3 thrice: c1 8 first, then popularity 9 over 1
    assert trending_order(c0, c1, np.zeros(4)).tolist() == [1, 0, 2, 3]


def test_equal_keys_score_equally_and_shares_fall_with_rank() -> None:
    scores = trending_scores(np.zeros(4), np.array([2.0, 0, 2, 1]), np.array([1.0, 0, 1, 5]))
    assert scores[0] == scores[2] == 1.0
    assert scores[3] == pytest.approx(0.5) and scores[1] == pytest.approx(1 / 3)


def test_with_both_windows_empty_the_order_is_popularity() -> None:
    a_week_later = B + 7 * 24 * H
    scores = scores_at(story_counts(), popularity(), a_week_later, H)
    assert [ITEMS[c] for c in np.argsort(-scores, kind="stable")] == ["steady", "old", "rising", "falling"]


def test_windows_are_the_two_complete_multiples_of_the_frequency_before_now() -> None:
    assert windows(B + 2 * H, H) == windows(B + 3 * H - 1, H)  # one evaluation for the whole window
    w = windows(B + 2 * H, H)
    assert (w.start * BUCKET_S, w.middle * BUCKET_S, w.end * BUCKET_S) == (B, B + H, B + 2 * H)
    assert windows(B + 2 * H - 1, H).end * BUCKET_S == B + H  # a second earlier: the windows before
    one = bucketed(np.array([0, 0, 0, 0]), np.array([B - 1, B, B + H - 1, B + H]), since_bucket=0)
    c0, c1 = window_counts(one, w, 1)
    assert (c0[0], c1[0]) == (2.0, 1.0)  # B - 1 is before W0; B + H starts W1
    day = windows(B + 2 * H, 86_400)  # a day's windows end at midnight UTC
    assert day.end * BUCKET_S % 86_400 == 0 and day.end - day.middle == 48


def test_counts_merge_by_the_larger_per_bucket_and_item() -> None:
    a = BucketCounts(np.array([5, 5, 6]), np.array([0, 1, 0]), np.array([3.0, 1.0, 2.0]))
    b = BucketCounts(np.array([5, 7]), np.array([0, 1]), np.array([2.0, 4.0]))
    m = merged(a, b)
    assert sorted(zip(m.bucket.tolist(), m.item.tolist(), m.count.tolist(), strict=True)) == [
        (5, 0, 3.0), (5, 1, 1.0), (6, 0, 2.0), (7, 1, 4.0)]
    assert len(merged(no_counts(), no_counts())) == 0
    assert counts_of(m.to_array()).count.tolist() == m.count.tolist()


def test_streamed_counters_become_codes_and_unknown_items_are_skipped() -> None:
    got = streamed_counts([10, 11], [{"a": 2.0, "new": 5.0}, {"b": 1.0}], {"a": 0, "b": 1})
    assert list(zip(got.bucket.tolist(), got.item.tolist(), got.count.tolist(), strict=True)) == [
        (10, 0, 2.0), (11, 1, 1.0)]


def ev(item: str, t: float) -> Event:
    return Event(event_id=f"{item}{t}", dataset_group="g", tracking_id="t", user_id="u",
                 session_id="s", event_type="click", item_id=item, sent_at=t, received_at=0)


def test_each_event_counts_once_in_its_bucket_which_expires_when_no_window_can_read_it() -> None:
    inc = increments([ev("a", B - 1), ev("a", B), ev("b", B + BUCKET_S - 1)])
    assert inc[("g", bucket_name(bucket_of(B - 1)))] == {"a": 1.0}
    assert inc[("g", bucket_name(bucket_of(B)))] == {"a": 1.0, "b": 1.0}
    assert expires_at(bucket_name(7)) == bucket_expires_at(7) == 8 * BUCKET_S + KEEP_S
    assert expires_at("popularity") is None
    # just before midnight, the 1-day frequency reads back to nearly 3 days ago: still kept
    now = (B // 86_400 + 1) * 86_400 - 1
    assert windows(now, 86_400).start * BUCKET_S < now - 2 * 86_400
    assert windows(now, 86_400).start >= oldest_kept_bucket(now)


def interactions() -> Interactions:
    item, time = STORY
    order = np.argsort(time, kind="stable")
    return Interactions(np.zeros(len(item), np.int32), item[order].astype(np.int32),
                        time[order].astype(np.int64), np.array(["u"], dtype=object),
                        np.array(ITEMS, dtype=object))


def test_the_trained_scorer_scores_as_of_its_newest_interaction() -> None:
    model = trending.fit(interactions(), {"trend_discovery_frequency": "1 hour"})
    assert model.as_of == B + H + 67  # the newest row: W1 is still open, so it evaluates [B - H, B + H)
    scores = model.score(np.array([0, 0]), [np.empty(0)] * 2, [np.empty(0)] * 2)
    assert scores.shape == (2, len(ITEMS))
    # W0 = [B - H, B), W1 = [B, B + H): steady grows 0 -> 10, falling 0 -> 6, rising 0 -> 1
    assert [ITEMS[c] for c in np.argsort(-scores[0], kind="stable")] == ["steady", "falling", "rising", "old"]
    assert model.counts.bucket.min() >= (B - H) // BUCKET_S  # older buckets are left behind


class Counted:
    """Counters that answer from a dict of bucket index -> item -> count, counting reads."""

    def __init__(self, buckets: dict[int, dict[str, float]]) -> None:
        self.buckets, self.reads = buckets, 0

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        raise AssertionError("not used")

    async def read_whole(self, dataset_group: str, names: Sequence[str]) -> list[dict[str, float]]:
        self.reads += 1
        return [self.buckets.get(int(n.split(":")[1]), {}) for n in names]


def artifact(tmp_path: Path) -> Path:
    data = interactions()
    model = trending.fit(data, {"trend_discovery_frequency": "1 hour"})
    files = write_common(tmp_path, Common(
        item_ids=ITEMS, user_ids=["u"],
        user_history={"offsets": np.array([0, 0]), "items": np.zeros(0, np.int32), "times": np.zeros(0)},
        user_events={"offsets": np.array([0, 0]), "items": np.zeros(0, np.int32),
                     "types": np.zeros(0, np.int32), "type_names": np.array([], dtype=str)},
        popularity=np.bincount(data.item, minlength=len(ITEMS)).astype(np.float32),
        item_created=np.zeros(len(ITEMS), np.int64)))
    files |= model.write(tmp_path)
    write_manifest(tmp_path, ArtifactManifest(solution_version_arn="v", recipe="aws-trending-now",
                                              created_at=0, data_cut=model.as_of, files=files))
    return tmp_path


async def test_serving_evaluates_now_from_the_artifact_and_the_stream(tmp_path: Path) -> None:
    model = load("v", artifact(tmp_path))
    assert model.trend_frequency_s == H
    assert int(np.argmax(model.user_scores(model.history("u", ())))) == STEADY  # as of training
    now = [B + 2 * H + 5.0]
    streamed = Counted({bucket_of(B + H): {"rising": 3.0, "steady": 4.0, "brand-new": 99.0}})
    live = TrendingNow(streamed, ttl_s=10.0, clock=lambda: now[0])
    await live.refresh(model, "g")
    scores = model.user_scores(model.history("u", ()))
    # the artifact's W1 counts win where they are larger (steady 10, rising 8): rising trends
    assert [ITEMS[c] for c in np.argsort(-scores, kind="stable")][:2] == ["rising", "steady"]
    assert scores.shape == (len(ITEMS),)
    await live.refresh(model, "g")
    assert streamed.reads == 1  # within the TTL: kept
    streamed.buckets[bucket_of(B + 2 * H)] = {"old": 40.0}  # the stream's only: after training
    now[0] += 11
    await live.refresh(model, "g")
    # read again, but the window it fell in is still open: it takes no part yet
    assert streamed.reads == 2 and int(np.argmax(model.user_scores(model.history("u", ())))) == RISING
    now[0] = B + 3 * H  # the window closed: W1 = [B + 2H, B + 3H), where old came back
    await live.refresh(model, "g")
    assert streamed.reads == 3 and int(np.argmax(model.user_scores(model.history("u", ())))) == OLD


async def test_concurrent_requests_share_one_read(tmp_path: Path) -> None:
    import asyncio
    model = load("v", artifact(tmp_path))
    streamed = Counted({})
    live = TrendingNow(streamed, clock=lambda: B + 2 * H)
    await asyncio.gather(*(live.refresh(model, "g") for _ in range(5)))
    assert streamed.reads == 1


async def test_a_trending_solution_trains_from_streamed_events(tmp_path: Path) -> None:
    """Trainer.train end to end (archived PutEvents, no bulk import): the artifact serves what
    trended in the data's last complete hours, and its metrics are measured."""
    from training.trainer import Trainer

    def watch(user: int, item: str, at: int) -> Event:
        return Event(event_id=f"{user}-{item}-{at}", dataset_group="films", tracking_id="t",
                     user_id=f"u{user}", session_id=f"s{user}", event_type="watch", item_id=item,
                     sent_at=float(at), received_at=0.0)

    events = [watch(u, "classic", B - 9 * H + u) for u in range(30)]  # popular, long ago
    events += [watch(u, "steady", B + (u // 10) * H + u) for u in range(20)]  # 10 in W0, 10 in W1
    events += [watch(20, "rising", B + 60)] + [watch(u, "rising", B + H + u) for u in range(21, 29)]
    events += [watch(u, "late", B + 2 * H + 60 + u) for u in range(30)]  # the open window: not yet
    await archived(tmp_path, events)
    out = Trainer(tmp_path, min_interactions=10).train(
        version_arn="arn:aws:personalize:us-east-1:000000000000:solution/s/v1", dataset_group="films",
        recipe_arn="arn:aws:personalize:::recipe/aws-trending-now",
        hyperparameters={"trend_discovery_frequency": "1 hour"}, event_type=None,
        event_value_threshold=None, parent=None, progress=lambda **_: None)
    assert "precision_at_25" in out["metrics"]
    model = load("v1", tmp_path / out["artifact"])
    scores = model.user_scores(model.history("u1", ()))
    assert [model.item_ids[c] for c in np.argsort(-scores, kind="stable")][:2] == ["rising", "steady"]
