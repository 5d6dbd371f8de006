"""Re-executing a failed run from failure rebuilds only what failed or was skipped in dbt.

Dagster re-executes a failed step as a whole: the dbt step is one op, so "Re-execute from
failure" (the UI's button, or a run retry with ``dagster/retry_strategy: FROM_FAILURE``) would
run ``dbt build`` over every model again, snapshots included. Instead, on such a re-execution
the step reads what the failed run (and, for a retry of a retry, each failed run before it)
already did, from the runs' events in the Dagster instance:

- a model, seed or snapshot that was materialized is done;
- a test whose check result was recorded as passed is done;

and excludes those from its ``dbt build``. What is left is what failed, what dbt skipped
because something upstream failed (everything downstream of a failure), and what never ran.
dbt's own ``dbt retry`` does the same from the previous invocation's ``run_results.json``;
the instance is used here because that file lives in a per-invocation folder on the machine
that ran the failed step, which a retry may not run on.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from movielens_assets.lib.dagster_internals import RESUME_RETRY_TAG

MAX_ANCESTORS = 100
"""How far back a chain of from-failure re-executions is followed."""


def is_from_failure(run: dg.DagsterRun) -> bool:
    """Whether a run re-executes its parent run from failure."""
    return run.parent_run_id is not None and run.tags.get(RESUME_RETRY_TAG) == "true"


def done_in_run(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """The dbt unique ids one run materialized or whose test passed."""
    done: set[str] = set()
    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        },
    ).records
    for record in records:
        entry = record.event_log_entry
        materialization, evaluation = entry.asset_materialization, entry.asset_check_evaluation
        if materialization is not None:
            metadata = materialization.metadata
        elif evaluation is not None and evaluation.passed:
            metadata = evaluation.metadata
        else:
            continue
        unique_id = metadata.get("unique_id")
        if unique_id is not None:
            done.add(str(getattr(unique_id, "value", unique_id)))
    return done


def done_before(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    """What the runs this one re-executes from failure already did; empty for any other run."""
    done: set[str] = set()
    for _ in range(MAX_ANCESTORS):
        if not is_from_failure(run):
            break
        parent = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
        if parent is None:
            break
        done |= done_in_run(instance, parent.run_id)
        run = parent
    return done


def fqn_selector(node: Mapping[str, Any]) -> str:
    """dbt's ``fqn:`` selector of one node."""
    return "fqn:" + ".".join(node["fqn"])


def retry_args(
    manifest: Mapping[str, Any], done: Iterable[str], check_names: Iterable[str]
) -> list[str]:
    """``dbt build`` arguments that leave out the nodes already done.

    ``check_names`` are the names of the step's selected asset checks (dagster-dbt names a
    test's check after the test). ``--indirect-selection empty``: the tests of an excluded model
    that must still run (they failed) are not excluded with it; the tests left to run are
    selected by name instead, as dbt then selects no test by way of its model.
    """
    done = set(done)
    if not done:
        return []
    nodes = manifest["nodes"]
    wanted = set(check_names)
    excluded = sorted(fqn_selector(nodes[unique_id]) for unique_id in done if unique_id in nodes)
    tests = sorted(
        fqn_selector(node)
        for unique_id, node in nodes.items()
        if node["resource_type"] == "test" and node["name"] in wanted and unique_id not in done
    )
    return [
        "--indirect-selection",
        "empty",
        *(["--select", " ".join(tests)] if tests else []),
        "--exclude",
        " ".join(excluded),
    ]
