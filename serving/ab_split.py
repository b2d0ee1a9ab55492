"""An A/B split between two campaigns behind one campaign ARN: which arm a user is in, and how
much one arm's attributed metric beats the other's.

The split is stable per user (a hash of the campaign and the user, not a coin per request), so
a user sees one arm for the whole experiment and the report can put every active user, served
or not, in the arm it was assigned to: an intention-to-treat comparison, which no difference
between the arms can bias. Pure logic.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from serving.attribution import Attributed, Metric, amount

ARM_TAG = "opz:ab-campaign"  # a campaign's tag naming the campaign its arm B is served by
SHARE_TAG = "opz:ab-share"  # the share of users in arm B, in (0, 1); 0.5 without it
DEFAULT_SHARE = 0.5
Z_95 = 1.959964


def in_arm_b(campaign_arn: str, user: str, share: float) -> bool:
    """Whether `user` is in arm B of the split behind `campaign_arn`; the same answer every time."""
    digest = hashlib.sha256(f"{campaign_arn}\x00{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def share_of(text: str | None) -> float:
    """The ab-share tag's value; ValueError unless it is a number strictly between 0 and 1."""
    if text is None:
        return DEFAULT_SHARE
    try:
        share = float(text)
    except ValueError:
        raise ValueError(f"{SHARE_TAG} must be a number between 0 and 1, not {text[:40]!r}") from None
    if not 0.0 < share < 1.0:
        raise ValueError(f"{SHARE_TAG} must be strictly between 0 and 1, not {share:g}")
    return share


@dataclass(frozen=True)
class Arm:
    users: int
    mean: float  # the metric per user
    variance: float  # of the metric per user (unbiased)


def arm(values: Sequence[float]) -> Arm:
    n = len(values)
    mean = sum(values) / n if n else 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Arm(n, mean, variance)


@dataclass(frozen=True)
class Lift:
    """B against A: (mean_B / mean_A) - 1 with its 95% confidence interval; None where the
    data cannot say (an arm with no users or a mean of zero)."""
    a: Arm
    b: Arm
    lift: float | None
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes no lift."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def lift(a_values: Sequence[float], b_values: Sequence[float], z: float = Z_95) -> Lift:
    """The ratio of means, its interval by the delta method on log(mean_B / mean_A): the arms
    are independent samples of users, so var(log ratio) ~ var_B/(n_B m_B^2) + var_A/(n_A m_A^2)."""
    a, b = arm(a_values), arm(b_values)
    if a.users < 2 or b.users < 2 or a.mean <= 0 or b.mean <= 0:
        return Lift(a, b, None, None, None)
    ratio = b.mean / a.mean
    se = math.sqrt(b.variance / (b.users * b.mean**2) + a.variance / (a.users * a.mean**2))
    return Lift(a, b, ratio - 1, ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1)


def per_user(metric: Metric, events: Iterable[Attributed], users: Iterable[str], attributed_to: str
             ) -> list[float]:
    """Each of `users`' total of `metric` over their events attributed to `attributed_to`; zero
    for a user without one (who counts all the same: intention to treat)."""
    totals = dict.fromkeys(users, 0.0)
    for e in events:
        if e.user in totals and e.source == attributed_to and e.event_type == metric.event_type:
            totals[e.user] += amount(metric, e.event_value, e.properties, e.item) or 0.0
    return list(totals.values())


def split_report(metrics: list[Metric], events: list[Attributed], campaign: str, arm_b: str,
                 share: float) -> dict[str, Any]:
    """The split behind `campaign`: every user active since either arm first answered one of
    them, in the arm the split gives it, and per metric the arms' means per user and the lift."""
    started = min((e.at for e in events if e.source in (campaign, arm_b)), default=math.inf)
    active = sorted({e.user for e in events if e.user is not None and e.at >= started})
    arms = {False: [u for u in active if not in_arm_b(campaign, u, share)],
            True: [u for u in active if in_arm_b(campaign, u, share)]}
    out = []
    for m in metrics:
        found = lift(per_user(m, events, arms[False], campaign), per_user(m, events, arms[True], arm_b))
        out.append({"metricName": m.name, "a": asdict(found.a), "b": asdict(found.b), "lift": found.lift,
                    "low": found.low, "high": found.high, "significant": found.significant})
    return {"campaignArn": campaign, "armB": arm_b, "share": share,
            "since": None if started == math.inf else started, "metrics": out}
