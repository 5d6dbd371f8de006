"""The bench's machinery at small scale: a phase in a child process, its result, the registry."""

import json
from pathlib import Path

import duckdb
import pytest

from movielens_assets.tools.bench import phases
from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.orchestration import Runner
from movielens_assets.tools.bench.parts import PARTS, Part
from movielens_assets.tools.bench.report import TABLE_ROWS


def small_warehouse(path: Path) -> None:
    """Two tables in the counted schemas, one view and one table in a schema the bench skips."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema raw; create schema dev; create schema scratch")
        connection.execute("create table raw.raw_ratings as select * from range(7)")
        connection.execute("create table dev.fct_ratings as select * from range(5)")
        connection.execute("create view dev.stg_ratings as select * from raw.raw_ratings")
        connection.execute("create table scratch.other as select * from range(3)")


def test_a_phase_runs_in_its_own_process_and_its_result_and_peak_rss_come_back(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    small_warehouse(database)
    messages: list[str] = []
    runner = Runner(tmp_path / "work", messages.append)

    measured = runner.phase("counts-small", "counts", {"database": str(database)})

    assert measured.returncode == 0
    assert measured.result["counts"] == {"dev.fct_ratings": 5, "raw.raw_ratings": 7}
    assert measured.result["self_peak_rss_mib"] > 0
    assert measured.peak_rss_mib >= measured.result["self_peak_rss_mib"]
    written = json.loads((tmp_path / "work" / "results" / "counts-small.json").read_text())
    assert written == measured.result
    assert measured.log == tmp_path / "work" / "logs" / "counts-small.log"
    assert messages[0] == "bench: counts-small ..."
    assert messages[1].startswith("bench: counts-small: ")


def test_a_failing_phase_names_itself_and_its_log(tmp_path):
    runner = Runner(tmp_path / "work", lambda message: None)
    missing = tmp_path / "absent" / "warehouse.duckdb"

    with pytest.raises(BenchError) as failure:
        runner.phase("counts-missing", "counts", {"database": str(missing)})

    log = tmp_path / "work" / "logs" / "counts-missing.log"
    assert "bench phase counts-missing exited with 1" in str(failure.value)
    assert str(log) in str(failure.value)
    assert str(missing) in log.read_text()


def test_every_part_is_a_row_of_the_table_after_the_core_rows():
    names = [name for name, _ in TABLE_ROWS]

    assert len(names) == len(set(names))
    assert TABLE_ROWS[-len(PARTS) :] == tuple((part.name, part.label) for part in PARTS)
    assert "code_location" in {part.name for part in PARTS}


def test_a_part_phase_is_run_by_name_and_may_not_reuse_a_core_phase_name(monkeypatch):
    def echo(spec: dict) -> dict:
        return {"echo": spec}

    monkeypatch.setattr(
        phases, "PARTS", (Part("echo", "echo", lambda context: {}, phases={"echo": echo}),)
    )
    assert phases.all_phases()["echo"] is echo
    assert phases.all_phases()["counts"] is phases.phase_counts

    monkeypatch.setattr(
        phases, "PARTS", (Part("clash", "clash", lambda context: {}, phases={"land": echo}),)
    )
    with pytest.raises(BenchError, match="bench part 'clash' reuses the phase name 'land'"):
        phases.all_phases()


def test_the_median_pair_is_chosen_by_its_ratio_not_by_either_time():
    from movielens_assets.tools.bench.run import median_pair

    fast_machine = ({"wall_s": 10.0}, {"wall_s": 15.0})  # 1.5
    slow_machine = ({"wall_s": 30.0}, {"wall_s": 36.0})  # 1.2
    middle = ({"wall_s": 20.0}, {"wall_s": 27.0})  # 1.35
    assert median_pair([fast_machine, slow_machine, middle]) is middle
    assert median_pair([fast_machine, slow_machine]) is slow_machine  # the lower middle
    assert median_pair([middle]) is middle
