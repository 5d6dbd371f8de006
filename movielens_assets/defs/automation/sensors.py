"""The S3 landing sensor: files landing in S3 start one run of RAW and everything downstream.

Each tick lists every dataset prefix of the landing bucket (all pages), diffs the listing
against the cursor by object identity (``lib/cursor.py``), and, when something is new, requests
one run of ``raw_and_downstream_job`` restricted to the affected ``raw/raw_<dataset>`` assets
and everything downstream of them. A burst of files is one run per tick, however many files.
The tick also records a materialization of each affected ``s3/<dataset>`` landing asset: the
files arrived from outside Dagster (``movielens land``, another system), and the asset page
shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

import dagster as dg
from botocore.exceptions import ClientError

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.automation.schedules import raw_and_downstream, raw_and_downstream_job
from movielens_assets.lib.asset_keys import landing_key, raw_key
from movielens_assets.lib.cursor import LandingCursor, diff_listing, run_key_for
from movielens_assets.lib.redact import redacted_errors
from movielens_assets.lib.s3 import S3Object
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings

SENSOR_NAME = "s3_landing_sensor"
TAG_PREFIX = "movielens"


class MissingCodeLocationError(RuntimeError):
    """The sensor was evaluated without the definitions it belongs to."""


def run_tags(new_by_dataset: Mapping[str, Sequence[S3Object]]) -> dict[str, str]:
    """What the run page shows about why it started: the datasets and their new file counts."""
    tags = {
        f"{TAG_PREFIX}/datasets": ",".join(sorted(new_by_dataset)),
        f"{TAG_PREFIX}/new_files": str(sum(len(objects) for objects in new_by_dataset.values())),
    }
    for dataset, objects in sorted(new_by_dataset.items()):
        tags[f"{TAG_PREFIX}/new_files.{dataset}"] = str(len(objects))
    return tags


def landing_materialization(
    dataset: str, new: Sequence[S3Object], s3: LandingBucket
) -> dg.AssetMaterialization:
    """The ``s3/<dataset>`` landing asset got ``new`` objects in its folder.

    A materialization, not an observation: the folder's content changed (new data arrived), which
    is what the asset's materializations record when Dagster uploads files itself.
    """
    prefix = s3.dataset_prefix(dataset)
    newest = max(new, key=lambda obj: (obj.last_modified is not None, obj.last_modified, obj.key))
    return dg.AssetMaterialization(
        asset_key=landing_key(dataset),
        description=f"{len(new)} new file(s) seen by {SENSOR_NAME}.",
        metadata={
            "s3_uri": dg.MetadataValue.url(s3.dataset_uri(dataset)),
            "files": dg.MetadataValue.json([obj.key.removeprefix(prefix) for obj in new]),
            "files_new": len(new),
            "bytes": sum(obj.size for obj in new),
            "newest_key": newest.key,
        },
    )


def raw_and_downstream_keys(
    context: dg.SensorEvaluationContext, datasets: Sequence[str]
) -> list[dg.AssetKey]:
    """The RAW assets of ``datasets``, every asset downstream of them and what those need.

    A run request's ``asset_selection`` restricts the job to exactly the keys it names, so the
    downstream closure is resolved here, on the code location's asset graph.
    """
    repository = context.repository_def
    if repository is None:
        raise MissingCodeLocationError(
            f"{SENSOR_NAME} needs its code location to find what is downstream of the RAW "
            "assets; in a test, build the context with "
            "dg.build_sensor_context(..., definitions=<Definitions holding the sensor>)."
        )
    job = repository.get_job(raw_and_downstream_job.name)
    graph = job.asset_layer.asset_graph
    keys = raw_and_downstream([raw_key(name) for name in datasets]).resolve(graph)
    # Checks may read other assets too (a relationships test reads the model it points at):
    # bring those, and what they need, until nothing is missing.
    while True:
        needed = {
            dep.asset_key
            for check in graph.asset_check_keys
            if check.asset_key in keys
            for dep in graph.get_check_spec(check).additional_deps
        }
        if needed <= keys:
            break
        upstream = dg.AssetSelection.assets(*needed).upstream() - dg.AssetSelection.groups(
            "landing"
        )
        keys |= upstream.resolve(graph)
    keys &= job.asset_layer.selected_asset_keys
    return sorted(keys, key=lambda key: key.path)


def evaluate_landing(context: dg.SensorEvaluationContext, s3: LandingBucket) -> dg.SensorResult:
    """One tick: list, diff against the cursor, request one run for whatever is new."""
    prefixes = ", ".join(s3.dataset_uri(name) for name in DATASETS)
    client = s3.get_client()
    try:
        listing = {name: s3.list_dataset(name, client) for name in DATASETS}
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"The bucket s3://{s3.bucket}/ does not exist yet; checked {prefixes}."
            )
        )
    new_by_dataset, cursor = diff_listing(listing, LandingCursor.parse(context.cursor))
    if not new_by_dataset:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"No new objects in {prefixes} ({cursor.object_count} seen before)."
            ),
            cursor=cursor.serialize(),
        )
    new_objects = list(chain.from_iterable(new_by_dataset.values()))
    context.log.info(
        f"{len(new_objects)} new object(s): "
        + ", ".join(f"{name}: {len(objects)}" for name, objects in sorted(new_by_dataset.items()))
        + "; first keys: "
        + ", ".join(obj.key for obj in new_objects[:5])
    )
    run_request = dg.RunRequest(
        run_key=run_key_for(new_objects),
        asset_selection=raw_and_downstream_keys(context, sorted(new_by_dataset)),
        tags=run_tags(new_by_dataset),
    )
    landed = [
        landing_materialization(name, objects, s3)
        for name, objects in sorted(new_by_dataset.items())
    ]
    return dg.SensorResult(
        run_requests=[run_request], asset_events=landed, cursor=cursor.serialize()
    )


def build_s3_landing_sensor(settings: Settings) -> dg.SensorDefinition:
    """The S3 landing sensor, its interval and default status from ``settings``."""

    @dg.sensor(
        name=SENSOR_NAME,
        job=raw_and_downstream_job,
        minimum_interval_seconds=settings.sensor_interval,
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.sensor_running
        else dg.DefaultSensorStatus.STOPPED,
    )
    def s3_landing_sensor(
        context: dg.SensorEvaluationContext, s3: LandingBucket
    ) -> dg.SensorResult:
        """Start a run when files land under ``s3://<bucket>/<prefix>/<dataset>/``.

        Every tick lists each dataset's prefix and compares the objects' keys and ETags with
        the cursor: a new file, or a file overwritten with new content, is seen exactly once.
        New files start one run of their ``raw/raw_<dataset>`` assets and everything downstream
        (run key derived from the files, so a repeated tick never starts a second run); the tick
        otherwise skips, naming the prefixes it checked.

        Default status: RUNNING with ``MOVIELENS_TARGET=local`` (the embedded default), STOPPED
        with ``prod`` (real AWS; turn it on in the UI). ``MOVIELENS_SENSOR_DEFAULT=running`` or
        ``stopped`` overrides that; ``MOVIELENS_SENSOR_INTERVAL`` sets the seconds between ticks
        (default 30). A status set in the UI wins over the default.
        """
        with redacted_errors():  # a tick's error is stored; S3's may name a URI with a password
            return evaluate_landing(context, s3)

    return s3_landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    """The S3 landing sensor, configured from the environment."""
    return dg.Definitions(sensors=[build_s3_landing_sensor(Settings.from_env())])
