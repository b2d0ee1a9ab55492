"""Which locations a job may name: local folders under the file roots, S3 under the S3 roots."""
from __future__ import annotations

from pathlib import Path

import pytest

from kernel.locations import LocationRefused, Locations, S3Location, s3_confined, s3_location, s3_roots_of


def test_an_s3_url_parses_into_bucket_and_key() -> None:
    assert s3_location("s3://my-bucket/a/b.csv") == S3Location("my-bucket", "a/b.csv")
    assert s3_location("s3://my-bucket") == S3Location("my-bucket", "")
    assert str(S3Location("b1x", "a/").child("job").child("part.csv")) == "s3://b1x/a/job/part.csv"
    assert str(S3Location("b1x", "").child("job")) == "s3://b1x/job"


@pytest.mark.parametrize("url", ["s3://Upper/x", "s3://a_b/x", "s3://ab/x", "s3:///x", "s3://b1x/a/../c",
                                 "s3://b1x/./c", "s3://b1x/a//c", "http://b1x/c"])
def test_what_s3_would_not_take_as_a_location_is_refused(url: str) -> None:
    with pytest.raises(LocationRefused):
        s3_location(url)


def test_s3_locations_must_lie_under_a_root_on_a_segment_boundary() -> None:
    roots = s3_roots_of("s3://data-bucket/personalize, s3://whole-bucket")
    assert s3_confined("s3://data-bucket/personalize/x.csv", roots).key == "personalize/x.csv"
    assert s3_confined("s3://data-bucket/personalize", roots).key == "personalize"
    assert s3_confined("s3://whole-bucket/anything/at/all.csv", roots).bucket == "whole-bucket"
    for outside in ("s3://data-bucket/personalize-other/x.csv", "s3://data-bucket/x.csv",
                    "s3://third-bucket/personalize/x.csv"):
        with pytest.raises(LocationRefused, match="outside the allowed S3 locations"):
            s3_confined(outside, roots)


def test_no_s3_roots_means_no_s3_at_all() -> None:
    with pytest.raises(LocationRefused, match="OPZ_S3_ROOTS"):
        Locations((Path("/srv/files"),)).check("s3://data-bucket/x.csv")


def test_locations_check_local_and_s3_alike(tmp_path: Path) -> None:
    where = Locations((tmp_path,), s3_roots_of("s3://data-bucket"))
    assert where.check(str(tmp_path / "a.csv")) == tmp_path / "a.csv"
    assert where.check("s3://data-bucket/a.csv") == S3Location("data-bucket", "a.csv")
    with pytest.raises(LocationRefused):
        where.check("/etc/passwd")
