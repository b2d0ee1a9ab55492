"""Which quota applies: the account's own override, then every account's, then Personalize's."""
from serving.quotas import DEFAULTS, quota


def test_the_most_specific_quota_wins() -> None:
    overrides = {"*": {"campaign": 20}, "111111111111": {"campaign": 50, "filter": 3}}
    assert quota(overrides, "111111111111", "campaign") == 50
    assert quota(overrides, "111111111111", "filter") == 3
    assert quota(overrides, "222222222222", "campaign") == 20
    assert quota(overrides, "222222222222", "filter") == DEFAULTS["filter"] == 10
    assert quota({}, "222222222222", "dataset-group") == 500
    assert quota({}, "222222222222", "dataset-import-job") is None
