"""The Snowflake load algorithm: new files, header checks, one transaction per batch of COPY.

A load:

1. reads the project's ledger ``RAW.LOAD_LEDGER`` and keeps the objects whose (key, ETag) it
   does not hold;
2. checks each new file's header with a ranged GET of its first bytes (``file_checks.py``);
3. runs, in one transaction per batch of at most 1,000 files, a ``COPY INTO`` whose ``FILES``
   list names exactly those files, checks the dataset's value rules (``VALUE_RULES``) on the
   rows the COPY appended, and records one ledger row per loaded file.

A bad file (an empty file, a wrong header, a row Snowflake cannot parse, a value breaking a
rule) is handled by the dataset's ``on_error``, as on DuckDB:

- ``abort`` (``ON_ERROR = ABORT_STATEMENT``): the transaction rolls back, so nothing of the
  batch is loaded and the ledger is unchanged, and a ``BadFileError`` names the file, line and
  column;
- ``skip_file`` (``ON_ERROR = SKIP_FILE``): the other files load; a file the COPY reports as not
  ``LOADED``, or whose rows break a value rule, is reported in ``LoadReport.rejected`` and never
  reaches the ledger. A rule breaker's rows are removed by rolling the transaction back and
  running the COPY again without it, not by a DELETE: RAW stays append-only for the loader, and
  Snowflake's load metadata never records the rejected file, so it can be landed again.

Either way ``RAW.LOAD_REJECTIONS`` is replaced with the dataset's rejected files at the end of
each load, the table ``checks.py`` reads on both warehouses.

Snowflake's own load metadata (64 days) is the second guard: a file it already loaded comes back
as ``LOAD_SKIPPED`` and is not loaded twice.

The COPY of one batch is the resource's (``SnowflakeWarehouse.run_copy``, which knows the stage
and file format); everything around it is here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from snowflake.connector.errors import Error as SnowflakeError
from snowflake.connector.errors import ProgrammingError

from movielens_assets.datasets import Dataset
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import (
    VALUE_RULES,
    BadFileError,
    FileLoad,
    LoadError,
    LoadReport,
    RejectedFile,
    new_objects,
    rejection_rows,
)
from movielens_assets.warehouse.snowflake.copy_results import (
    CopyResult,
    SnowflakeLoadReport,
    match_file,
    unreported,
)
from movielens_assets.warehouse.snowflake.errors import (
    copy_error,
    failed_file_error,
    rule_violation,
)
from movielens_assets.warehouse.snowflake.file_checks import check_object
from movielens_assets.warehouse.snowflake.sql import (
    LEDGER,
    MAX_FILES_PER_COPY,
    REJECTIONS,
    raw_table_name,
    rule_breaks_sql,
    rule_example_sql,
)


@dataclass(frozen=True)
class CopyJob:
    """One COPY: a batch of new objects of one dataset, all stamped with ``loaded_at``."""

    dataset: Dataset
    objects: list[S3Object]
    loaded_at: datetime
    s3: Any
    bucket: str
    on_error: str = "abort"
    """``abort`` or ``skip_file``: the COPY's ``ON_ERROR``."""


CopyRunner = Callable[[Any, CopyJob], list[CopyResult]]
"""Runs the ``COPY INTO`` of one batch on a cursor and returns Snowflake's per-file results."""


@dataclass
class BatchOutcome:
    """What one COPY's transaction did with its files."""

    loaded: list[FileLoad] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: list[tuple[S3Object, BadFileError]] = field(default_factory=list)


def _batches(items: Sequence[S3Object], size: int) -> Iterator[list[S3Object]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def rejected_file(obj: S3Object, error: BadFileError) -> RejectedFile:
    """The ``LoadReport.rejected`` entry of a bad file."""
    return RejectedFile(obj.key, obj.etag, str(error), error.line, error.column)


def reject(
    report: LoadReport,
    obj: S3Object,
    error: BadFileError,
    on_error: str,
    log: logging.Logger | Any,
) -> None:
    """Report a bad file; under ``abort`` also raise its error (it is recorded first)."""
    report.rejected.append(rejected_file(obj, error))
    if on_error == "abort":
        raise error
    log.warning(f"{report.dataset}: rejected (on_error=skip_file): {error}")


def ledger(cursor: Any, dataset: str) -> set[tuple[str, str]]:
    """The (key, ETag) pairs already loaded for a dataset."""
    cursor.execute(f'select "S3_KEY", "ETAG" from {LEDGER} where "DATASET" = ?', [dataset])
    return {(key, etag) for key, etag in cursor.fetchall()}


@dataclass
class CopyLoader:
    """One dataset's load on one Snowflake session (``cursor``), tagged with its run."""

    cursor: Any
    run_copy: CopyRunner
    run_id: str
    log: logging.Logger | Any

    def load(
        self,
        dataset: Dataset,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        on_error: str,
    ) -> SnowflakeLoadReport:
        """COPY the dataset's new objects, at most 1,000 files per statement and transaction.

        A bad file raises ``BadFileError`` (``on_error=abort``; nothing of its batch loads) or
        is reported in ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``RAW.LOAD_REJECTIONS``, and batches committed before it stay loaded.
        """
        cursor, log = self.cursor, self.log
        report = SnowflakeLoadReport(dataset.name)
        pending = new_objects(objects, ledger(cursor, dataset.name))
        report.skipped = [obj.key for obj in objects if obj not in pending]
        try:
            readable = []
            for obj in pending:
                try:
                    check_object(dataset, obj, s3, bucket)
                except BadFileError as error:
                    reject(report, obj, error, on_error, log)
                    continue
                readable.append(obj)
            for batch in _batches(readable, MAX_FILES_PER_COPY):
                loaded_at = datetime.now(UTC).replace(tzinfo=None)
                log.info(
                    f"{dataset.name}: COPY of {len(batch)} file(s) into {raw_table_name(dataset)}"
                )
                job = CopyJob(dataset, batch, loaded_at, s3, bucket, on_error)
                outcome = self._load_batch(job, report)
                for obj, bad in outcome.rejected:
                    reject(report, obj, bad, on_error, log)
                for item in outcome.loaded:
                    log.info(f"{dataset.name}: {item.key} loaded {item.rows:,} rows")
                report.loaded.extend(outcome.loaded)
                report.skipped.extend(outcome.skipped)
        finally:
            self._record_rejections(dataset.name, report.rejected, on_error)
        cursor.execute(f"select count(*) from {raw_table_name(dataset)}")
        report.table_rows = cursor.fetchone()[0]
        return report

    def _load_batch(self, job: CopyJob, report: SnowflakeLoadReport) -> BatchOutcome:
        """One batch in one transaction: COPY, value rules, ledger rows.

        Under ``abort`` a bad file rolls the transaction back and raises ``BadFileError``
        (recorded in ``report.rejected`` first). Under ``skip_file`` a file the COPY did not
        load is left out of the ledger; if rows of a loaded file break a value rule, the
        transaction is rolled back and the COPY runs again without the bad files, so their
        rows never commit and Snowflake's load metadata does not hold them (the same file can
        be landed again). Rejected files come back in ``BatchOutcome.rejected``.
        """
        cursor, run_id = self.cursor, self.run_id
        rejected: list[tuple[S3Object, BadFileError]] = []
        while True:
            cursor.execute("begin")
            try:
                try:
                    results = self.run_copy(cursor, job)
                except ProgrammingError as error:
                    bad = copy_error(error, job.objects, job.dataset)
                    if isinstance(bad, BadFileError) and (obj := match_file(bad.key, job.objects)):
                        report.rejected.append(rejected_file(obj, bad))
                    raise bad from error
                outcome = self._classify(job, results)
                breakers = self._rule_violations(job, outcome)
                outcome.rejected.extend(breakers)
                if job.on_error == "abort" and outcome.rejected:
                    obj, bad = outcome.rejected[0]
                    report.rejected.append(rejected_file(obj, bad))
                    raise bad
                if breakers:
                    # Their rows are in this transaction: roll it back, COPY the rest again.
                    cursor.execute("rollback")
                    rejected.extend(outcome.rejected)
                    bad_keys = {obj.key for obj, _ in outcome.rejected}
                    job = replace(job, objects=[o for o in job.objects if o.key not in bad_keys])
                    if not job.objects:
                        return BatchOutcome(rejected=rejected)
                    continue
                if outcome.loaded:
                    cursor.executemany(
                        f"insert into {LEDGER} values (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (job.dataset.name, f.key, f.etag, f.size, f.rows, f.loaded_at, run_id)
                            for f in outcome.loaded
                        ],
                    )
                cursor.execute("commit")
            except BaseException:
                cursor.execute("rollback")
                raise
            report.copy_results.extend(results)
            outcome.rejected[:0] = rejected
            return outcome

    def _classify(self, job: CopyJob, results: Sequence[CopyResult]) -> BatchOutcome:
        """Sort a COPY's files into loaded, already loaded and rejected (not ``LOADED``)."""
        cursor = self.cursor
        outcome = BatchOutcome()
        table = raw_table_name(job.dataset)
        known: set[tuple[str, str]] | None = None
        for result in results:
            obj = match_file(result.file, job.objects)
            if obj is None:
                raise LoadError(
                    f"COPY reported {result.file!r}, which is none of the files it was given; "
                    "check that the stage and MOVIELENS_SNOWFLAKE_STAGE_PREFIX match the bucket."
                )
            if result.status == "LOADED":
                rows = result.rows_loaded
                outcome.loaded.append(FileLoad(obj.key, obj.etag, obj.size, rows, job.loaded_at))
            elif result.status == "LOAD_SKIPPED":
                # Snowflake's load metadata knows this file. If a concurrent run recorded it
                # meanwhile, it is done; otherwise its ledger row was deleted: its rows are in
                # RAW already, so record it again.
                known = ledger(cursor, job.dataset.name) if known is None else known
                if (obj.key, obj.etag) in known:
                    outcome.skipped.append(obj.key)
                    continue
                cursor.execute(f'select count(*) from {table} where "_SOURCE_FILE" = ?', [obj.key])
                rows = cursor.fetchone()[0]
                self.log.warning(f"{obj.key}: already loaded by Snowflake ({rows} rows); recorded")
                outcome.loaded.append(FileLoad(obj.key, obj.etag, obj.size, rows, job.loaded_at))
            else:
                error = failed_file_error(result, obj, job.dataset, getattr(cursor, "sfqid", None))
                outcome.rejected.append((obj, error))
        if missing := unreported(results, job.objects):
            raise LoadError(
                f"COPY reported nothing about {', '.join(obj.key for obj in missing)}; nothing "
                "of this batch was recorded. Check that the files are still in the bucket and "
                "that the stage and MOVIELENS_SNOWFLAKE_STAGE_PREFIX match it."
            )
        return outcome

    def _rule_violations(
        self, job: CopyJob, outcome: BatchOutcome
    ) -> list[tuple[S3Object, BadFileError]]:
        """The loaded files whose new rows break a value rule, taken out of ``outcome.loaded``.

        Only rows this COPY appended are checked (its ``_LOADED_AT`` and the keys it loaded);
        the caller rolls the transaction back when any file breaks a rule.
        """
        cursor = self.cursor
        rules = VALUE_RULES.get(job.dataset.name)
        if not rules or not outcome.loaded:
            return []
        keys = sorted({item.key for item in outcome.loaded})
        cursor.execute(rule_breaks_sql(job.dataset, len(keys)), [job.loaded_at, *keys])
        breaks = {row[0]: row[1:] for row in cursor.fetchall()}
        violations: list[tuple[S3Object, BadFileError]] = []
        for key in sorted(breaks):
            rule, broken = next(
                (rule, int(count)) for rule, count in zip(rules, breaks[key], strict=True) if count
            )
            cursor.execute(rule_example_sql(job.dataset, rule), [job.loaded_at, key])
            error = rule_violation(job.dataset, rule, key, broken, cursor.fetchone())
            outcome.loaded[:] = [item for item in outcome.loaded if item.key != key]
            violations.append((next(obj for obj in job.objects if obj.key == key), error))
        return violations

    def _record_rejections(
        self, dataset: str, rejected: Sequence[RejectedFile], on_error: str
    ) -> None:
        """Replace the dataset's rows of ``RAW.LOAD_REJECTIONS`` with this load's rejections."""
        cursor = self.cursor
        try:
            cursor.execute("begin")
            cursor.execute(f'delete from {REJECTIONS} where "DATASET" = ?', [dataset])
            if rejected:
                cursor.executemany(
                    f"insert into {REJECTIONS} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rejection_rows(dataset, rejected, on_error, self.run_id),
                )
            cursor.execute("commit")
        except SnowflakeError as error:
            with contextlib.suppress(SnowflakeError):
                cursor.execute("rollback")
            self.log.warning(f"{dataset}: rejected files not recorded in {REJECTIONS}: {error}")
