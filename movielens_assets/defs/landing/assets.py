"""Group ``landing``: local MovieLens files uploaded to the S3 landing zone, one asset per dataset.

In production files usually arrive in S3 by other means (and the sensor picks them up); these
assets are how a laptop or CI run puts a local folder there. An object is uploaded only if S3
does not already hold the same content under its key.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from pydantic import Field

from movielens_assets.datasets import DATASETS
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.asset_keys import landing_key
from movielens_assets.lib.local_files import LocalFile, count_data_rows, find_local_files
from movielens_assets.lib.redact import redacted_errors
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings


class LandingDataMissingError(FileNotFoundError):
    """The folder the landing assets would upload does not exist."""


class LandingConfig(dg.Config):
    """Which local folder the landing assets upload."""

    data_dir: str | None = Field(
        default=None,
        description=(
            "A folder as GroupLens ships it (movies.csv, ratings.csv, genome-scores.csv, ...) or "
            "with one sub-folder per dataset. Default: MOVIELENS_DATA_DIR, else the prepared "
            "sample under MOVIELENS_HOME (`movielens sample` prepares it)."
        ),
    )

    def resolve(self, settings: Settings) -> Path:
        """The folder to upload: ``data_dir``, else ``MOVIELENS_DATA_DIR``, else the sample."""
        if self.data_dir:
            return Path(self.data_dir).expanduser().resolve()
        chosen = settings.data_dir or settings.sample_dir
        if not chosen.is_dir():
            raise LandingDataMissingError(
                f"No data to land: {chosen} does not exist. Run `movielens sample` to prepare "
                "the bundled sample there, or set MOVIELENS_DATA_DIR (or the asset's data_dir "
                "config) to a folder of MovieLens CSV files."
            )
        return chosen


def upload_dataset(s3: LandingBucket, client, files: list[LocalFile]) -> dict[str, int]:  # noqa: ANN001
    """Upload the files S3 does not hold with the same content; returns counts for metadata."""
    if not files:
        return {"uploaded": 0, "unchanged": 0, "bytes": 0, "rows": 0}
    remote = {obj.key: obj for obj in s3.list_dataset(files[0].dataset, client)}
    uploaded = unchanged = 0
    for local in files:
        key = s3.dataset_prefix(local.dataset) + local.name
        md5 = s3lib.file_md5(local.path)
        if key in remote and s3lib.object_md5(client, s3.bucket, remote[key]) == md5:
            unchanged += 1
            continue
        s3lib.upload(client, local.path, s3.bucket, key, md5)
        uploaded += 1
    return {
        "uploaded": uploaded,
        "unchanged": unchanged,
        "bytes": sum(local.path.stat().st_size for local in files),
        "rows": sum(count_data_rows(local.path) for local in files),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            landing_key(name),
            description=f"{dataset.description} CSV files in the landing bucket.",
            group_name="landing",
            kinds={"s3", "csv"},
            owners=["team:data-engineering"],
            skippable=True,
        )
        for name, dataset in DATASETS.items()
    ],
    can_subset=True,
)
def landing_files(
    context: dg.AssetExecutionContext, config: LandingConfig, s3: LandingBucket
) -> Iterator[dg.MaterializeResult]:
    """Upload each selected dataset's local files to ``s3://<bucket>/<prefix>/<dataset>/``."""
    data_dir = config.resolve(Settings.from_env())
    local = find_local_files(data_dir)
    selected = [key.path[-1] for key in context.selected_asset_keys]
    with redacted_errors(), ThreadPoolExecutor(max_workers=4) as pool:  # errors name the endpoint
        client = s3.get_client()
        s3lib.ensure_bucket(client, s3.bucket)
        uploads = pool.map(lambda name: upload_dataset(s3, client, local[name]), selected)
        results = dict(zip(selected, uploads, strict=True))
    for name in selected:
        counts = results[name]
        context.log.info(
            f"{name}: {counts['uploaded']} uploaded, {counts['unchanged']} already in S3"
        )
        yield dg.MaterializeResult(
            asset_key=landing_key(name),
            metadata={
                "s3_uri": dg.MetadataValue.url(s3.dataset_uri(name)),
                "source_dir": dg.MetadataValue.path(str(data_dir)),
                "files": dg.MetadataValue.json([f.name for f in local[name]]),
                "files_uploaded": counts["uploaded"],
                "files_unchanged": counts["unchanged"],
                "bytes": counts["bytes"],
                "dagster/row_count": counts["rows"],
            },
        )
