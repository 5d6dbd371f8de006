"""What a landing run builds: the RAW assets of the datasets that got files, everything
downstream of them, what those need, and both sides of every check that reads any of them
unless that side was built before (its table exists: the check reads it as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

import dagster as dg

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.automation.schedules import raw_and_downstream
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.lib.dagster_internals import resolve_selection


class MissingCodeLocationError(RuntimeError):
    """The sensor was evaluated without the definitions it belongs to."""


def check_reads(spec: dg.AssetCheckSpec) -> set[dg.AssetKey]:
    """Every asset a check reads: the asset it checks and its additional deps (a relationships
    test reads the model it points at too)."""
    return {spec.asset_key, *(dep.asset_key for dep in spec.additional_deps)}


def with_what_checks_read(
    keys: AbstractSet[dg.AssetKey],
    check_specs: Iterable[dg.AssetCheckSpec],
    assets_defs: Sequence[dg.AssetsDefinition],
    existing: AbstractSet[dg.AssetKey] = frozenset(),
) -> set[dg.AssetKey]:
    """``keys`` grown until every check that reads one of them reads only assets in it or in
    ``existing`` (assets materialized before: their tables are there to be read).

    dbt runs a test when the run builds any model the test reads (dbt's default, eager indirect
    selection, which dagster-dbt keeps when a run has all the checks of its assets). So both
    sides of a check come along: the other side of a check on a built asset (``fct_ratings``'s
    relationships test reads ``dim_movies``), and the checked asset of a check that reads a built
    one (building ``dim_users`` runs ``fct_ratings``'s test too, so ``fct_ratings`` is built;
    building ``dim_movies`` builds the seed its test reads). Each comes with what it needs
    upstream, never the landing uploads. A check that failed for want of the other side is
    checked again by the run that builds that side.

    An existing other side stays out: once every table is built, a ratings file rebuilds what
    ratings change, and its relationships tests read the dimensions as they are. The checked
    asset always comes along, existing or not: only then is the test a check of the run (dbt
    would run it anyway, and dagster-dbt would record its result as a mere observation, leaving
    an earlier failure standing). On a fresh stack nothing exists, and the closure is the whole
    neighbourhood.
    """
    specs = list(check_specs)
    grown = set(keys)
    while True:
        missing: set[dg.AssetKey] = set()
        for spec in specs:
            reads = check_reads(spec)
            if reads & grown:
                missing |= {spec.asset_key} - grown
                missing |= reads - {spec.asset_key} - grown - existing
        added = with_what_they_need(missing, assets_defs, existing) - grown if missing else set()
        if not added:  # nothing missing, or only what a sensor run never builds (landing)
            return grown
        grown |= added


def raw_and_downstream_keys(
    context: dg.SensorEvaluationContext, datasets: Sequence[str]
) -> list[dg.AssetKey]:
    """The RAW assets of ``datasets``, every asset downstream of them, what those need
    (``with_what_they_need``), and both sides of every check that reads any of them
    (``with_what_checks_read``), but for what was materialized before and is not downstream.

    A run request's ``asset_selection`` restricts the job to exactly the keys it names (with the
    checks of those keys), so the closure is resolved here, on the code location's assets.
    """
    repository = context.repository_def
    if repository is None:
        raise MissingCodeLocationError(
            "The landing sensor needs its code location to find what is downstream of the RAW "
            "assets; in a test, build the context with "
            "dg.build_sensor_context(..., definitions=<Definitions holding the sensor>)."
        )
    # One definition holds many keys (the dbt project): each definition once.
    assets_defs = list({id(d): d for d in repository.assets_defs_by_key.values()}.values())
    check_defs = {id(d): d for d in repository.asset_checks_defs_by_key.values()}.values()
    check_specs = [spec for d in [*assets_defs, *check_defs] for spec in d.check_specs]
    in_job = resolve_selection(
        raw_and_downstream([raw_key(name) for name in DATASETS]), assets_defs
    )
    existing = materialized(context, in_job)
    downstream = resolve_selection(
        dg.AssetSelection.assets(*[raw_key(name) for name in datasets]).downstream(), assets_defs
    )
    selected = with_what_they_need(downstream, assets_defs, existing)
    keys = with_what_checks_read(selected, check_specs, assets_defs, existing)
    return sorted(keys & in_job, key=lambda key: list(key.path))


def with_what_they_need(
    keys: AbstractSet[dg.AssetKey],
    assets_defs: Sequence[dg.AssetsDefinition],
    existing: AbstractSet[dg.AssetKey] = frozenset(),
) -> set[dg.AssetKey]:
    """``keys`` and what they read that is not in ``existing`` (with what that reads upstream):
    ``mart_movie_ratings`` reads ``dim_movies``, built from movies, not from ratings. Never the
    landing uploads. With nothing existing: ``keys`` and everything upstream of them."""
    landing = dg.AssetSelection.groups("landing")
    upstream = resolve_selection(dg.AssetSelection.assets(*keys).upstream() - landing, assets_defs)
    needs = upstream - set(keys) - existing
    if not needs:
        return set(keys)
    return set(keys) | resolve_selection(
        dg.AssetSelection.assets(*needs).upstream() - landing, assets_defs
    )


def materialized(
    context: dg.SensorEvaluationContext, keys: AbstractSet[dg.AssetKey]
) -> set[dg.AssetKey]:
    """Those of ``keys`` the instance holds a materialization of (their tables exist, unless
    someone dropped them behind Dagster's back: then a full run, ``movielens run``, rebuilds)."""
    records = context.instance.get_asset_records(list(keys))
    return {
        record.asset_entry.asset_key
        for record in records
        if record.asset_entry.last_materialization_record is not None
    }
