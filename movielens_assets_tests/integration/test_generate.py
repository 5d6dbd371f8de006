"""The synthetic data generator, checked with Python's csv module as an independent oracle."""

import csv
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from movielens_assets.tools.generate import (
    GenerationError,
    generate,
    plan,
    synthesize_sample_genome,
)

TINY = 20_000
PACKAGE = Path(__file__).resolve().parents[2] / "movielens_assets"
SAMPLE = PACKAGE / "sample_data" / "ml-latest-small"

GROUPLENS_HEADERS = {
    "movies.csv": ["movieId", "title", "genres"],
    "ratings.csv": ["userId", "movieId", "rating", "timestamp"],
    "tags.csv": ["userId", "movieId", "tag", "timestamp"],
    "links.csv": ["movieId", "imdbId", "tmdbId"],
    "genome-tags.csv": ["tagId", "tag"],
    "genome-scores.csv": ["movieId", "tagId", "relevance"],
}
FILE_OF = {
    "movies": "movies.csv",
    "ratings": "ratings.csv",
    "tags": "tags.csv",
    "links": "links.csv",
    "genome_tags": "genome-tags.csv",
    "genome_scores": "genome-scores.csv",
}
MOVIELENS_GENRES = set(
    "Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy Film-Noir Horror"
    " IMAX Musical Mystery Romance Sci-Fi Thriller War Western".split()
)
JANUARY_1995 = 788_918_400
JANUARY_2016 = 1_451_606_400


def read_csv(path: Path) -> list[list[str]]:
    """Every row of a CSV file, header included, as Python's csv module parses it."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def rows(path: Path) -> list[list[str]]:
    """The data rows of a CSV file."""
    return read_csv(path)[1:]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[str]]:
    """A tiny set (20,000 ratings, seed 42): its folder, the returned counts, the progress."""
    out = tmp_path_factory.mktemp("tiny")
    messages: list[str] = []
    counts = generate(out, ratings=TINY, seed=42, progress=messages.append)
    return out, counts, messages


@pytest.fixture(scope="module")
def tiny_dir(tiny: tuple[Path, dict[str, int], list[str]]) -> Path:
    return tiny[0]


@pytest.fixture(scope="module")
def sample_genome(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Genome files synthesized for the real ml-latest-small."""
    out = tmp_path_factory.mktemp("sample-genome")
    return out, synthesize_sample_genome(SAMPLE, out)


def test_the_default_size_plans_exactly_the_ml_20m_row_counts():
    sizes = plan(20_000_263)

    assert sizes.users == 138_493
    assert sizes.rows == {
        "movies": 27_278,
        "ratings": 20_000_263,
        "tags": 465_564,
        "links": 27_278,
        "genome_tags": 1_128,
        "genome_scores": 10_381 * 1_128,
    }


def test_a_tiny_set_has_the_six_grouplens_files_with_their_exact_headers(tiny_dir):
    assert sorted(path.name for path in tiny_dir.iterdir()) == sorted(GROUPLENS_HEADERS)
    for name, header in GROUPLENS_HEADERS.items():
        assert read_csv(tiny_dir / name)[0] == header


def test_the_returned_counts_are_the_rows_in_each_file(tiny):
    out, counts, _ = tiny

    assert {name: len(rows(out / FILE_OF[name])) for name in FILE_OF} == counts


def test_a_tiny_set_is_scaled_down_from_ml_20m(tiny):
    _, counts, _ = tiny

    # 20,000 ratings are 1/1000 of ml-20m: users and tags scale by that, the movie and genome
    # tag catalogues by its square root (27,278 * 0.0316 = 863, 1,128 * 0.0316 = 36 tags,
    # 10,381 * 0.0316 = 328 genome movies).
    assert counts == {
        "movies": 863,
        "ratings": 20_000,
        "tags": 466,
        "links": 863,
        "genome_tags": 36,
        "genome_scores": 328 * 36,
    }


def test_files_end_lines_with_lf_only(tiny_dir):
    for name in GROUPLENS_HEADERS:
        data = (tiny_dir / name).read_bytes()
        assert b"\r" not in data
        assert data.endswith(b"\n")


def test_every_user_rates_at_least_twenty_movies_and_heavy_users_far_more(tiny_dir):
    per_user = Counter(row[0] for row in rows(tiny_dir / "ratings.csv"))

    assert set(per_user) == {str(user) for user in range(1, 139)}
    assert min(per_user.values()) >= 20
    assert max(per_user.values()) > 2 * statistics.median(per_user.values())


def test_ratings_are_half_stars_written_with_one_decimal(tiny_dir):
    ratings = [row[2] for row in rows(tiny_dir / "ratings.csv")]

    assert set(ratings) == {f"{stars / 2:.1f}" for stars in range(1, 11)}


def test_ratings_peak_at_four_stars_and_rarely_give_half_a_star(tiny_dir):
    shares = Counter(row[2] for row in rows(tiny_dir / "ratings.csv"))

    assert shares.most_common(1)[0][0] == "4.0"
    assert shares["0.5"] < 0.03 * TINY


def test_no_user_rates_the_same_movie_twice(tiny_dir):
    pairs = [(row[0], row[1]) for row in rows(tiny_dir / "ratings.csv")]

    assert len(set(pairs)) == len(pairs) == TINY


def test_ratings_are_sorted_by_user_then_movie_as_grouplens_ships_them(tiny_dir):
    keys = [(int(row[0]), int(row[1])) for row in rows(tiny_dir / "ratings.csv")]

    assert keys == sorted(keys)


def test_ratings_and_tags_only_name_movies_that_exist(tiny_dir):
    movie_ids = {row[0] for row in rows(tiny_dir / "movies.csv")}

    assert {row[1] for row in rows(tiny_dir / "ratings.csv")} <= movie_ids
    assert {row[1] for row in rows(tiny_dir / "tags.csv")} <= movie_ids


def test_timestamps_are_unix_seconds_between_1995_and_2015(tiny_dir):
    for name in ("ratings.csv", "tags.csv"):
        stamps = [int(row[3]) for row in rows(tiny_dir / name)]
        assert JANUARY_1995 <= min(stamps) <= max(stamps) < JANUARY_2016


def test_the_top_tenth_of_the_catalogue_holds_most_of_the_ratings(tiny_dir):
    movies = len(rows(tiny_dir / "movies.csv"))
    per_movie = sorted(Counter(row[1] for row in rows(tiny_dir / "ratings.csv")).values())

    assert sum(per_movie[-(movies // 10) :]) > 0.4 * TINY


def test_links_have_seven_digit_imdb_ids_and_some_missing_tmdb_ids(tiny_dir):
    links = rows(tiny_dir / "links.csv")

    assert [row[0] for row in links] == [row[0] for row in rows(tiny_dir / "movies.csv")]
    assert all(re.fullmatch(r"\d{7}", row[1]) for row in links)
    assert any(row[1].startswith("0") for row in links)
    assert len({row[1] for row in links}) == len(links)
    missing = [row for row in links if row[2] == ""]
    assert 0 < len(missing) < 0.05 * len(links)
    assert all(row[2].isdigit() for row in links if row[2])


def test_titles_with_commas_and_quotes_survive_a_csv_round_trip(tiny_dir):
    text = (tiny_dir / "movies.csv").read_text(encoding="utf-8")
    titles = [row[1] for row in rows(tiny_dir / "movies.csv")]

    assert any(re.search(r", (The|A|An) \(\d{4}\)$", title) for title in titles)
    assert any('"' in title for title in titles)
    assert '""' in text  # quotes inside a quoted field are doubled
    assert all(not line.startswith('"') for line in text.splitlines())  # ids are never quoted


def test_most_titles_end_with_a_year_and_a_few_do_not(tiny_dir):
    titles = [row[1] for row in rows(tiny_dir / "movies.csv")]
    dated = [title for title in titles if re.search(r" \((18|19|20)\d\d\)$", title)]

    assert 0.95 * len(titles) < len(dated) < len(titles)


def test_genres_are_movielens_genres_or_no_genres_listed(tiny_dir):
    genres = [row[2] for row in rows(tiny_dir / "movies.csv")]
    listed = [genre for genre in genres if genre != "(no genres listed)"]

    assert 0 < genres.count("(no genres listed)") < 0.06 * len(genres)
    assert {name for genre in listed for name in genre.split("|")} <= MOVIELENS_GENRES
    assert all(genre.split("|") == sorted(genre.split("|")) for genre in listed)


def test_tags_are_free_text_with_commas_quotes_and_unicode(tiny_dir):
    tags = [row[2] for row in rows(tiny_dir / "tags.csv")]

    assert any("," in tag for tag in tags)
    assert any('"' in tag for tag in tags)
    assert any(not tag.isascii() for tag in tags)
    assert Counter(tags).most_common(1)[0][1] > 10  # a few words are used over and over


def test_a_user_tags_a_movie_with_the_same_word_at_most_once(tiny_dir):
    keys = [(row[0], row[1], row[2].lower()) for row in rows(tiny_dir / "tags.csv")]

    assert len(set(keys)) == len(keys)


def test_genome_scores_cover_every_genome_movie_times_every_genome_tag(tiny_dir):
    tag_ids = {row[0] for row in rows(tiny_dir / "genome-tags.csv")}
    scores = rows(tiny_dir / "genome-scores.csv")
    movies = {row[0] for row in scores}

    assert {(row[0], row[1]) for row in scores} == {(m, t) for m in movies for t in tag_ids}
    assert movies <= {row[0] for row in rows(tiny_dir / "movies.csv")}
    assert len({row[1] for row in rows(tiny_dir / "genome-tags.csv")}) == len(tag_ids)


def test_genome_relevance_is_above_zero_at_most_one_and_mostly_small(tiny_dir):
    relevance = [float(row[2]) for row in rows(tiny_dir / "genome-scores.csv")]

    assert 0 < min(relevance) <= max(relevance) <= 1
    assert statistics.median(relevance) < 0.2
    assert any(value > 0.9 for value in relevance)


def test_the_same_seed_gives_byte_identical_files(tiny_dir, tmp_path):
    generate(tmp_path, ratings=TINY, seed=42)

    for name in GROUPLENS_HEADERS:
        assert (tmp_path / name).read_bytes() == (tiny_dir / name).read_bytes()


def test_another_seed_gives_different_data(tiny_dir, tmp_path):
    counts = generate(tmp_path, ratings=TINY, seed=7)

    assert counts["ratings"] == TINY
    for name in ("movies.csv", "ratings.csv", "tags.csv", "genome-scores.csv"):
        assert (tmp_path / name).read_bytes() != (tiny_dir / name).read_bytes()


def test_progress_is_reported_once_per_file(tiny):
    _, _, messages = tiny

    assert len(messages) == len(GROUPLENS_HEADERS)
    for name in GROUPLENS_HEADERS:
        assert any(name in message for message in messages)


def test_generation_leaves_no_scratch_files_behind(tiny_dir):
    assert not [path for path in tiny_dir.iterdir() if path.name.startswith(".")]


def test_too_few_ratings_are_refused_with_the_minimum(tmp_path):
    with pytest.raises(GenerationError, match="at least 1,000"):
        generate(tmp_path, ratings=999)


def test_the_sample_genome_names_1128_tags_after_its_user_tags_most_frequent_first(
    sample_genome,
):
    out, counts = sample_genome
    genome_tags = rows(out / "genome-tags.csv")
    user_tags = Counter(row[2].strip().lower() for row in rows(SAMPLE / "tags.csv"))

    assert counts["genome_tags"] == len(genome_tags) == 1_128
    assert [row[0] for row in genome_tags] == [str(tag_id) for tag_id in range(1, 1_129)]
    assert genome_tags[0][1] == user_tags.most_common(1)[0][0]
    assert {row[1] for row in genome_tags} <= set(user_tags)


def test_the_sample_genome_scores_every_movie_with_fifty_ratings_for_every_tag(sample_genome):
    out, counts = sample_genome
    per_movie = Counter(row[1] for row in rows(SAMPLE / "ratings.csv"))
    often_rated = {movie for movie, count in per_movie.items() if count >= 50}
    scores = rows(out / "genome-scores.csv")

    assert counts["genome_scores"] == len(scores) == len(often_rated) * 1_128
    assert {row[0] for row in scores} == often_rated
    assert all(0 < float(row[2]) <= 1 for row in scores)


def test_the_sample_genome_scores_tags_users_applied_higher(sample_genome):
    out, _ = sample_genome
    tag_ids = {row[1]: row[0] for row in rows(out / "genome-tags.csv")}
    applied = {
        (row[1], tag_ids[row[2].strip().lower()])
        for row in rows(SAMPLE / "tags.csv")
        if row[2].strip().lower() in tag_ids
    }
    scores = rows(out / "genome-scores.csv")
    applied_scores = [float(row[2]) for row in scores if (row[0], row[1]) in applied]
    other_scores = [float(row[2]) for row in scores if (row[0], row[1]) not in applied]

    assert applied_scores
    assert min(applied_scores) >= 0.7
    assert statistics.mean(applied_scores) > 4 * statistics.mean(other_scores)


def test_required_movie_ids_exist_and_every_file_refers_only_to_movies(tmp_path):
    """Ids the dbt seed refers to (real ml-20m ids, up to 109,487) are in movies.csv, still
    unique, and ratings/links/genome scores use only ids of movies.csv."""
    required = [1, 2, 2959, 4993, 109487]
    generate(tmp_path, ratings=TINY, seed=42, movie_ids=required)
    movie_ids = [int(row[0]) for row in rows(tmp_path / "movies.csv")]
    assert set(required) <= set(movie_ids)
    assert len(movie_ids) == len(set(movie_ids))
    for name, column in [("ratings.csv", 1), ("links.csv", 0), ("genome-scores.csv", 0)]:
        assert {int(row[column]) for row in rows(tmp_path / name)} <= set(movie_ids), name
    # Only ids change: the same set without required ids has the same ratings per movie.
    plain = tmp_path / "plain"
    generate(plain, ratings=TINY, seed=42)
    per_movie = Counter(int(row[1]) for row in rows(tmp_path / "ratings.csv"))
    plain_per_movie = Counter(int(row[1]) for row in rows(plain / "ratings.csv"))
    assert sorted(per_movie.values()) == sorted(plain_per_movie.values())
    assert len(set(per_movie) - set(plain_per_movie)) <= len(required)
