"""Which tags make a tracker public, and what its write key may then do."""
import pytest

from serving.public_trackers import PublicTrackerError, access, from_tags


def test_a_tracker_is_private_unless_its_tags_say_public() -> None:
    assert from_tags({}) is None
    assert from_tags({"opz:public": "false", "team": "web"}) is None
    with pytest.raises(PublicTrackerError, match="need opz:public"):
        from_tags({"opz:origins": "https://shop.example"})


def test_public_tracker_origins_and_rate() -> None:
    public = from_tags({"opz:public": "TRUE", "opz:origins": "https://shop.example  http://localhost:3000",
                        "opz:requests-per-second": "50"})
    assert public == {"origins": ["https://shop.example", "http://localhost:3000"], "requestsPerSecond": 50.0}
    allowed = access("111111111111", public)
    assert allowed is not None and allowed.account == "111111111111" and allowed.requests_per_second == 50
    assert allowed.allows("https://shop.example") and allowed.allows(None)  # a server, not a page
    assert not allowed.allows("https://evil.example") and not allowed.allows("https://shop.example.evil")


@pytest.mark.parametrize("tags", [
    {"opz:public": "true", "opz:origins": "https://shop.example/checkout"},
    {"opz:public": "true", "opz:origins": "shop.example"},
    {"opz:public": "true", "opz:origins": "javascript://x"},
    {"opz:public": "true", "opz:requests-per-second": "0"},
    {"opz:public": "true", "opz:requests-per-second": "lots"},
])
def test_what_a_public_tracker_cannot_be(tags: dict[str, str]) -> None:
    with pytest.raises(PublicTrackerError):
        from_tags(tags)
