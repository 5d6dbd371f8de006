import gzip
import shutil
from pathlib import Path

import pytest

from movielens_assets.datasets import dataset_for_local_file
from movielens_assets.lib.local_files import count_data_rows, find_local_files
from movielens_assets_tests.conftest import SAMPLE, csv_rows


def test_grouplens_file_names_map_to_datasets():
    assert dataset_for_local_file("genome-scores.csv") == "genome_scores"
    assert dataset_for_local_file("genome_tags.csv.gz") == "genome_tags"
    assert dataset_for_local_file("Ratings.CSV") == "ratings"
    assert dataset_for_local_file("README.txt") is None
    assert dataset_for_local_file("users.csv") is None


def test_a_flat_grouplens_folder_yields_one_file_per_present_dataset():
    found = find_local_files(SAMPLE)
    assert {name: [f.name for f in files] for name, files in found.items()} == {
        "movies": ["movies.csv"],
        "ratings": ["ratings.csv"],
        "tags": ["tags.csv"],
        "links": ["links.csv"],
        "genome_tags": [],
        "genome_scores": [],
    }


def test_a_folder_per_dataset_may_hold_several_files(tmp_path: Path):
    (tmp_path / "ratings").mkdir()
    for name in ("2024-01.csv", "2024-02.csv.gz", "notes.txt"):
        (tmp_path / "ratings" / name).write_text("x")
    (tmp_path / "unrelated").mkdir()
    found = find_local_files(tmp_path)
    assert [f.name for f in found["ratings"]] == ["2024-01.csv", "2024-02.csv.gz"]
    assert all(not files for name, files in found.items() if name != "ratings")


def test_a_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        find_local_files(tmp_path / "nope")


def test_row_counts_match_the_csv_module_for_plain_and_gzip_files(tmp_path: Path):
    ratings = SAMPLE / "ratings.csv"
    compressed = tmp_path / "ratings.csv.gz"
    with ratings.open("rb") as source, gzip.open(compressed, "wb") as target:
        shutil.copyfileobj(source, target)
    expected = len(csv_rows(ratings))
    assert count_data_rows(ratings) == expected
    assert count_data_rows(compressed) == expected


def test_a_last_line_without_newline_still_counts(tmp_path: Path):
    path = tmp_path / "movies.csv"
    path.write_text('movieId,title,genres\n1,"A, B (1999)",Drama\n2,C (2000),Comedy')
    assert count_data_rows(path) == len(csv_rows(path)) == 2
