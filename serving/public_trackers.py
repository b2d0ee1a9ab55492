"""Public event trackers: PutEvents from web pages, which cannot hold a secret.

A tracker created with the tag `opz:public = true` takes unsigned PutEvents: its
`trackingId` becomes a write-only key for that one tracker (as a Segment write key is),
good for nothing else. `opz:origins` lists the web origins whose pages may send (separated
by spaces; a request from a browser carries its Origin), and `opz:requests-per-second` caps
its rate. Tags keep CreateEventTracker's shape, so boto3 and the console need nothing new.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PUBLIC_TAGS = "opz:"  # what the tags below begin with
PUBLIC, ORIGINS, RATE = "opz:public", "opz:origins", "opz:requests-per-second"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?")


class PublicTrackerError(ValueError):
    """The tags ask for something a public tracker cannot be; the message names the tag."""


@dataclass(frozen=True)
class PublicAccess:
    """What an unsigned PutEvents on the tracker may do: act as `account` for this tracker
    only, from `origins` (empty: no browser origin at all), at most `requests_per_second`."""

    account: str
    origins: frozenset[str]
    requests_per_second: float | None

    def allows(self, origin: str | None) -> bool:
        """A request without Origin is not a browser's; a page's must be one of the origins."""
        return origin is None or origin in self.origins


def from_tags(tags: dict[str, str]) -> dict[str, object] | None:
    """The tracker body's `publicAccess` for CreateEventTracker's tags, or None (private)."""
    if tags.get(PUBLIC, "false").lower() != "true":
        if ORIGINS in tags or RATE in tags:
            raise PublicTrackerError(f"tags {ORIGINS} and {RATE} need {PUBLIC} = true")
        return None
    origins = tags.get(ORIGINS, "").split()
    if bad := [o for o in origins if not _ORIGIN.fullmatch(o)]:
        raise PublicTrackerError(f"tag {ORIGINS}: {bad[0][:80]!r} is not a web origin "
                                 "(scheme://host[:port], no path)")
    rate = None
    if RATE in tags:
        try:
            rate = float(tags[RATE])
        except ValueError:
            rate = 0.0
        if not 0 < rate < 1e6:
            raise PublicTrackerError(f"tag {RATE} must be a positive number of events per second")
    return {"origins": origins, **({"requestsPerSecond": rate} if rate else {})}


def access(account: str, public: dict[str, object] | None) -> PublicAccess | None:
    if public is None:
        return None
    rate = public.get("requestsPerSecond")
    return PublicAccess(account, frozenset(public.get("origins", ())),  # type: ignore[arg-type]
                        float(rate) if rate is not None else None)  # type: ignore[arg-type]
