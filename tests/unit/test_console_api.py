"""The console's reads, as pure functions: what a sample, a title, a history and the live feed's
cursor look like on the wire, and which paths are signed."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from kernel.contract import Event
from serving.auth import is_signed_path
from serving.console import PAGE, jsonable, latest_history, most_active, page_asset, sample_of, title_column
from serving.console_feed import feed_event, format_cursor, parse_cursor
from serving.errors import ResourceNotFoundException


def test_a_sample_is_the_first_rows_with_json_safe_cells() -> None:
    table = pa.table({"ITEM_ID": ["1", "2", "3"], "PRICE": [1.5, math.nan, math.inf],
                      "NOTE": [b"x", None, b"z"]})
    assert sample_of(table, 2) == {"columns": ["ITEM_ID", "PRICE", "NOTE"],
                                   "rows": [["1", 1.5, "x"], ["2", None, None]]}
    assert jsonable(-math.inf) is None and jsonable(3) == 3


def test_the_title_column_is_found_whatever_its_case_and_title_comes_before_name() -> None:
    assert title_column(["ITEM_ID", "name", "Title"]) == "Title"
    assert title_column(["ITEM_ID", "PRODUCT_NAME"]) == "PRODUCT_NAME"
    assert title_column(["ITEM_ID", "GENRES"]) is None


def test_history_is_newest_first_with_the_streamed_events_types() -> None:
    items = ["a", "b", "c", "d"]
    codes, times = np.array([0, 1, 2, 3]), np.array([10.0, 20.0, 30.0, 40.0])
    shown = latest_history(items, codes, times, ("click",), n=3)
    assert shown == [{"itemId": "d", "timestamp": 40.0, "eventType": "click", "streamed": True},
                     {"itemId": "c", "timestamp": 30.0, "eventType": None, "streamed": False},
                     {"itemId": "b", "timestamp": 20.0, "eventType": None, "streamed": False}]
    assert latest_history(items, np.array([], int), np.array([]), ()) == []


def test_the_users_offered_are_the_most_active_ties_by_code() -> None:
    offsets = np.array([0, 2, 7, 9, 14, 15])  # lengths 2, 5, 2, 5, 1
    assert most_active(offsets, 3) == [1, 3, 0]


def test_the_feeds_cursor_round_trips_in_both_modes() -> None:
    assert parse_cursor(None) == {} and parse_cursor("") == {}
    assert parse_cursor("42") == {0: 42}
    assert parse_cursor("0:5,3:17") == {0: 5, 3: 17}
    assert format_cursor({0: 42}, embedded=True) == "42"
    assert format_cursor({3: 17, 0: 5}, embedded=False) == "0:5,3:17"


def test_the_feed_shows_an_event_without_its_properties_or_impressions() -> None:
    event = Event(event_id="e1", dataset_group="movies", tracking_id="t", user_id="u1", session_id="s1",
                  event_type="click", item_id="i9", sent_at=100.0, received_at=101.0,
                  properties={"secret": "x"}, impression=["i1", "i2"])
    assert feed_event(event) == {"eventId": "e1", "userId": "u1", "sessionId": "s1", "eventType": "click",
                                 "itemId": "i9", "eventValue": None, "sentAt": 100.0, "receivedAt": 101.0}


def test_only_the_pages_own_files_are_served() -> None:
    assert set(PAGE) == {"", "console.js", "console.css"}
    page = page_asset("")
    assert page.media_type.startswith("text/html") and b'src="/console/console.js"' in page.body
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for name in ("../app.py", "index.html.bak", "console_page", "%2e%2e"):
        with pytest.raises(ResourceNotFoundException):
            page_asset(name)


def test_the_consoles_reads_are_signed_as_the_api_is_and_its_page_is_not() -> None:
    assert is_signed_path("/console/api/events") and is_signed_path("/console/api/anything")
    assert is_signed_path("/") and is_signed_path("/recommendations")
    assert not is_signed_path("/console") and not is_signed_path("/console/console.js")
    assert not is_signed_path("/console/apix") and not is_signed_path("/health")


def test_the_console_url_is_on_loopback_for_a_wildcard_bind() -> None:
    from serving.cli import console_url
    assert console_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/console"
    assert console_url("0.0.0.0", 9000) == "http://127.0.0.1:9000/console"
    assert console_url("::", 8080) == "http://[::1]:8080/console"
    assert console_url("opz.internal", 80) == "http://opz.internal:80/console"
