"""The asset graph as a committed snapshot: a change to keys, groups, kinds, deps or checks is a
visible diff in review (``snapshots/asset_graph.json``).

After an intended change, rewrite the snapshot and commit it with the change::

    MOVIELENS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest \
        movielens_assets_tests/integration/test_asset_graph_snapshot.py
"""

import json
import os
from pathlib import Path

import pytest

from movielens_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "asset_graph.json"


def graph_snapshot() -> dict:
    """Every asset's group, kinds, upstream keys and checks (name, blocking), keyed by asset."""
    graph = build_definitions().resolve_asset_graph()
    checks: dict[str, list[dict]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        checks.setdefault(check_key.asset_key.to_user_string(), []).append(
            {
                "name": check_key.name,
                "blocking": spec.blocking,
                "reads": sorted(dep.asset_key.to_user_string() for dep in spec.additional_deps),
            }
        )
    snapshot = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        snapshot[name] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(checks.get(name, []), key=lambda check: check["name"]),
        }
    return snapshot


def test_the_asset_graph_matches_its_committed_snapshot(monkeypatch, tmp_path):
    monkeypatch.setenv("MOVIELENS_HOME", str(tmp_path))
    actual = graph_snapshot()
    rendered = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if os.environ.get("MOVIELENS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(rendered)
    expected = json.loads(SNAPSHOT.read_text())
    if actual != expected:
        added = sorted(set(actual) - set(expected))
        removed = sorted(set(expected) - set(actual))
        changed = sorted(key for key in set(actual) & set(expected) if actual[key] != expected[key])
        pytest.fail(
            f"the asset graph changed: added {added}, removed {removed}, changed {changed}. "
            "If intended, rewrite the snapshot (see this module's docstring) and commit it."
        )
    assert len(actual) == 28
