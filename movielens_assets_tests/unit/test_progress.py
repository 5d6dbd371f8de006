"""Progress lines of `movielens run` (per stage and asset) and `movielens generate` (per file)."""

import csv
import re

from movielens_assets.tools.generate import generate
from movielens_assets.tools.runner import RunProgress

GENERATED_PROGRESS = re.compile(r"^([\w-]+\.csv): (\d+)% after ([\d.]+) s$")


def test_a_run_reports_each_stage_and_each_asset_with_its_checks():
    progress = RunProgress({"raw": 2, "dbt": 3})
    events = [
        ("raw", "start", 10.0, True),
        ("raw", "asset", 11.0, True),
        ("raw", "asset", 12.0, True),
        ("raw", "end", 12.5, True),
        ("dbt", "start", 13.0, True),
        ("dbt", "asset", 14.0, True),
        ("dbt", "check", 14.1, True),
        ("dbt", "check", 14.2, False),
        ("dbt", "asset", 15.0, True),
        ("dbt", "end", 16.0, False),
    ]

    lines = [progress.update(*event) for event in events]

    assert lines == [
        "raw: started",
        "raw: 1/2 datasets loaded",
        "raw: 2/2 datasets loaded",
        "raw: done in 2.5 s, 2/2 datasets loaded",
        "dbt: started",
        "dbt: 1/3 models, seeds and snapshots built",
        None,
        None,
        "dbt: 2/3 models, seeds and snapshots built, 2 checks (1 failed)",
        "dbt: FAILED in 3.0 s, 2/3 models, seeds and snapshots built, 2 checks (1 failed)",
    ]


def test_generate_reports_rising_percentages_while_it_writes_a_big_file(tmp_path):
    messages: list[str] = []

    generate(tmp_path, ratings=2_000_000, progress=messages.append, progress_interval=0.2)

    written = messages.index("wrote ratings.csv: 2,000,000 rows")
    during = [GENERATED_PROGRESS.match(message) for message in messages[:written]]
    ratings = [match for match in during if match and match.group(1) == "ratings.csv"]
    assert len(ratings) >= 2, messages
    percents = [int(match.group(2)) for match in ratings]
    assert percents == sorted(set(percents)) and 0 < percents[0] and percents[-1] <= 100
    with (tmp_path / "ratings.csv").open(newline="") as handle:
        assert sum(1 for _ in csv.reader(handle)) == 2_000_000 + 1
