"""The checks both loaders make on a CSV file (``warehouse/csv_files.py``): pure functions."""

import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.warehouse.base import BadFileError
from movielens_assets.warehouse.csv_files import check_header


def test_header_checks_accept_crlf_and_a_byte_order_mark_only_when_exact():
    check_header(DATASETS["tags"], "k", "userId,movieId,tag,timestamp")
    with pytest.raises(BadFileError, match="3 columns"):
        check_header(DATASETS["tags"], "k", "userId,movieId,tag")
