"""Items as metadata vectors (kernel.item_features): genres as weighted tokens, a description's
words, numbers; fitted on the catalogue a model trains with, then applied to items added later."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kernel.item_features import FeatureEncoder, item_features

FILMS = pa.table({
    "ITEM_ID": ["alien", "aliens", "amelie", "chocolat"],
    "GENRES": ["Horror|Sci-Fi", "Horror|Action", "Romance|Comedy", "Romance|Drama"],
    "DESCRIPTION": ["A crew meets a deadly creature in space", "Marines fight the creature again in space",
                    "A shy waitress in Paris helps people", "A woman opens a chocolate shop in France"],
    "YEAR": [1979, 1986, 2001, 2000],
})
IDS = np.asarray(FILMS["ITEM_ID"].to_pylist(), dtype=object)


def test_genres_are_tokens_of_their_column_trimmed_and_lower_cased() -> None:
    items = pa.table({"ITEM_ID": ["a", "b", "c", "d"], "GENRES": ["Drama", " drama|Noir", "Crime", "Crime"],
                      "MOOD": ["Noir", "Calm", "Drama", "Calm"]})
    x = item_features(items, np.asarray(["a", "b", "c", "d"], dtype=object))
    cos = x @ x.T
    assert cos[0, 1] > 0  # "Drama" and " drama" are one genre
    assert cos[0, 2] == 0  # GENRES:Drama is not MOOD:Drama
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)


def test_a_value_only_one_item_has_is_dropped_so_titles_change_nothing() -> None:
    ids = np.asarray(["a", "b"], dtype=object)
    with_titles = item_features(pa.table({"ITEM_ID": ["a", "b"], "GENRES": ["Drama", "Drama"],
                                          "TITLE": ["A film", "Another"]}), ids)
    assert (with_titles @ with_titles.T)[0, 1] == pytest.approx(1.0)


def test_a_rare_shared_genre_says_more_than_a_common_one() -> None:
    ids = [f"i{n}" for n in range(6)]
    genres = ["Drama|Western", "Drama|Western", "Drama|Noir", "Drama", "Drama", "Drama|Noir"]
    x = item_features(pa.table({"ITEM_ID": ids, "GENRES": genres}), np.asarray(ids, dtype=object))
    cos = x @ x.T
    assert cos[0, 1] > cos[0, 3]  # sharing Western (2 films) beats sharing only Drama (all 6)


def test_a_description_is_read_word_by_word() -> None:
    encoder = FeatureEncoder.fit(FILMS, IDS, textual="DESCRIPTION")
    assert encoder.text is not None and {"creature", "space"} <= set(encoder.text.tokens)
    assert "paris" not in encoder.text.tokens  # one film's word makes no two alike
    assert "in" not in encoder.text.tokens  # three films of four say it: it tells them apart from none
    without = FeatureEncoder.fit(FILMS, IDS)  # not marked textual: a whole value is one category
    assert without.text is None and not any(c.name == "DESCRIPTION" and c.tokens for c in without.categorical)


def test_an_item_added_later_is_placed_on_the_fitted_axes() -> None:
    encoder = FeatureEncoder.fit(FILMS, IDS, textual="DESCRIPTION")
    trained = encoder.transform(FILMS, IDS)
    later = pa.table({"ITEM_ID": ["aliens-3", "new"], "GENRES": ["Sci-Fi|Horror|Thriller", "Western"],
                      "DESCRIPTION": ["The creature again, in prison", "Cowboys"], "YEAR": [1992, 1950]})
    x = encoder.transform(later, np.asarray(["aliens-3", "new"], dtype=object))
    assert x.shape == (2, encoder.dimension)
    cos = x[0] @ trained.T
    assert cos.argmax() in (0, 1)  # the horror films
    assert np.linalg.norm(x[1]) == pytest.approx(1.0)  # Western is no axis; its year still is


def test_the_encoder_is_kept_as_json_and_reads_back_the_same() -> None:
    encoder = FeatureEncoder.fit(FILMS, IDS, textual="DESCRIPTION")
    again = FeatureEncoder.from_json(encoder.to_json())
    assert again == encoder
    np.testing.assert_array_equal(again.transform(FILMS, IDS), encoder.transform(FILMS, IDS))


def test_no_catalogue_no_features() -> None:
    for items in (None, pa.table({}), pa.table({"ITEM_ID": ["a"]})):
        assert item_features(items, IDS).shape == (4, 0)
