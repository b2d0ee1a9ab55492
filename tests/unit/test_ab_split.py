"""An A/B split: a stable per-user assignment of the configured share, and a lift whose interval
covers the truth as often as it says."""
from __future__ import annotations

import random

import pytest

from serving.ab_split import DEFAULT_SHARE, in_arm_b, lift, share_of

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/home"


def test_a_user_is_always_in_the_same_arm_and_the_share_is_kept() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    arms = [in_arm_b(CAMPAIGN, u, 0.2) for u in users]
    assert arms == [in_arm_b(CAMPAIGN, u, 0.2) for u in users]
    assert abs(sum(arms) / len(users) - 0.2) < 0.01
    # a bigger share only moves users from A to B: nobody in B goes back
    assert all(in_arm_b(CAMPAIGN, u, 0.5) for u, b in zip(users, arms, strict=True) if b)
    # another campaign's split is another assignment
    other = [in_arm_b(CAMPAIGN + "-2", u, 0.2) for u in users]
    assert sum(a != b for a, b in zip(arms, other, strict=True)) > 0.2 * len(users)


def test_the_share_is_a_number_strictly_between_zero_and_one() -> None:
    assert share_of(None) == DEFAULT_SHARE and share_of("0.1") == 0.1
    for bad in ("0", "1", "-0.5", "half", "nan"):
        with pytest.raises(ValueError):
            share_of(bad)


def test_no_lift_can_be_said_without_users_or_with_a_mean_of_zero() -> None:
    assert lift([], [1.0, 2.0]).lift is None
    assert lift([0.0, 0.0, 0.0], [1.0, 0.0, 2.0]).lift is None


def test_the_lift_is_the_ratio_of_means_and_its_interval_covers_the_truth() -> None:
    """Clicks per user: Poisson(1.0) in A, Poisson(1.2) in B, a true lift of 20%."""
    rng = random.Random(7)

    def poisson(mean: float) -> float:
        n, p, limit = 0, 1.0, pow(2.718281828459045, -mean)
        while (p := p * rng.random()) > limit:
            n += 1
        return float(n)

    covered, significant, trials = 0, 0, 200
    for _ in range(trials):
        found = lift([poisson(1.0) for _ in range(2_000)], [poisson(1.2) for _ in range(2_000)])
        assert found.lift is not None and found.low is not None and found.high is not None
        assert found.low < found.lift < found.high
        covered += found.low <= 0.2 <= found.high
        significant += found.significant
    assert covered / trials > 0.9  # a 95% interval
    assert significant / trials > 0.9  # 2,000 users an arm see a 20% lift
    same = lift([poisson(1.0) for _ in range(2_000)], [poisson(1.0) for _ in range(2_000)])
    assert same.low is not None and same.high is not None and same.low < 0 < same.high
