import dagster as dg

from movielens_assets.source_freshness import check_result


def result(status: str, max_loaded_at: str, age_s: float) -> dict:
    return {
        "status": status,
        "max_loaded_at": max_loaded_at,
        "max_loaded_at_time_ago_in_s": age_s,
        "criteria": {"warn_after": {"count": 24, "period": "hour"}},
    }


def test_a_fresh_source_passes_and_reports_its_age():
    checked = check_result("ratings", result("pass", "2026-11-26T01:00:00", 5400))
    assert checked.passed
    assert checked.metadata["age_hours"].value == 1.5
    assert checked.asset_key == dg.AssetKey(["raw", "raw_ratings"])


def test_a_stale_source_warns_or_fails_by_its_window():
    warned = check_result("tags", result("warn", "2026-11-24T01:00:00", 30 * 3600))
    failed = check_result("tags", result("error", "2026-11-20T01:00:00", 150 * 3600))
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert (failed.passed, failed.severity) == (False, dg.AssetCheckSeverity.ERROR)


def test_an_empty_table_only_warns_and_says_it_is_empty():
    empty = check_result("genome_tags", result("error", "0001-01-01T00:00:00", 6.4e10))
    assert (empty.passed, empty.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert empty.metadata["status"].value == "empty"


def test_a_source_dbt_did_not_report_fails():
    assert check_result("links", None).passed is False
