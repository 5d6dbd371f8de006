"""One tick's view of the landing zone at a bounded cost: what is new, and the cursor after it.

Pure logic over a page lister (no Dagster, no boto3), so that every rule is unit-testable.
Objects come from three places, all deduplicated by (key, ETag) against the cursor's ``seen``:

1. **Notifications** (:meth:`TickScan.consider`, fed by the sensor from the SQS queue).
2. **Tails**: for each dataset, the keys sorting after the greatest key of its last complete
   listing (``StartAfter``), so that dated or numbered file names are found on the next tick
   however big the bucket.
3. **The rolling pass**: every dataset prefix listed page by page, at most ``budget`` keys per
   tick (tails included), resuming where the previous tick stopped. A bucket smaller than the
   budget is listed whole on every tick; a bigger one over several ticks, each costing the same.

The cursor stays bounded by a **horizon**: once a pass completes, an object last modified more
than ``horizon_seconds`` before the newest object of that pass (or before the pass began, if
earlier) counts as handled, and ``seen`` keeps only the newer ones the pass listed. So
``seen`` holds the recent objects, however long the history; deleted or overwritten objects
leave it when the pass completes. An object whose upload started before the horizon but became
visible only after the pass that moved it there is missed by the listing: keep the horizon above
the longest upload (a multipart upload's ``LastModified`` is when it began).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from movielens_assets.lib.cursor import LandingCursor, ListingPass, PendingDelete, fingerprint
from movielens_assets.lib.s3 import S3Object

PAGE_SIZE = 1_000
"""S3's most keys per listing page."""


@dataclass(frozen=True)
class ListedPage:
    """One page of a dataset's listing."""

    objects: Sequence[S3Object]
    """The page's data files (what the RAW load reads), in key order."""
    last_key: str | None
    """The page's last key, data file or not: ``StartAfter`` for the next page."""
    keys: int
    """How many keys the page held (what it cost)."""
    truncated: bool
    """Whether more keys follow."""


PageLister = Callable[[str, str | None, int], ListedPage]
"""``(dataset, start_after, max_keys) -> ListedPage``."""


def _timestamp(obj: S3Object) -> float | None:
    return obj.last_modified.timestamp() if obj.last_modified is not None else None


class TickScan:
    """The working state of one tick, started from the cursor the previous tick stored."""

    def __init__(
        self,
        cursor: LandingCursor,
        datasets: Sequence[str],
        now: float,
        horizon_seconds: float,
    ) -> None:
        self.datasets = list(datasets)
        self.horizon = cursor.horizon
        self.horizon_seconds = horizon_seconds
        self.seen_before = {name: set(cursor.seen.get(name, ())) for name in self.datasets}
        self.seen = {name: set(fps) for name, fps in self.seen_before.items()}
        self.tails = {name: key for name, key in cursor.tails.items() if name in self.datasets}
        listing = cursor.listing
        if listing is None or listing.dataset not in self.datasets:
            listing = ListingPass(started_at=now, dataset=self.datasets[0])
        self.started_at = listing.started_at
        self.dataset = listing.dataset
        self.after = listing.after
        self.listed = {name: set(listing.listed.get(name, ())) for name in self.datasets}
        self.newest = listing.newest
        if cursor.listing is None and self.horizon is not None:
            # a new pass starts from what the last one knew, so that old objects listed early
            # in it are already below the next horizon and stay out of the cursor
            self.newest = self.horizon + horizon_seconds
        self.new: dict[str, list[S3Object]] = {}
        self.keys_listed = 0
        self.pass_completed = False

    def forget(self, objects: Mapping[str, frozenset[bytes]]) -> None:
        """Unsee objects (a run that stood for them was not found): they can be new again."""
        for name, fingerprints in objects.items():
            for fps in (self.seen_before, self.seen, self.listed):
                fps.get(name, set()).difference_update(fingerprints)

    def was_seen_before(self, dataset: str, obj: S3Object) -> bool:
        """Whether the stored cursor already held ``obj`` (so what it caused is recorded)."""
        return fingerprint(obj) in self.seen_before.get(dataset, set())

    def is_handled(self, obj: S3Object) -> bool:
        """Whether ``obj`` is older than the horizon, and so counts as handled."""
        modified = _timestamp(obj)
        return self.horizon is not None and modified is not None and modified < self.horizon

    def consider(self, dataset: str, obj: S3Object, notified: bool = False) -> bool:
        """Record one object of ``dataset`` as seen; return whether it is new.

        A listed object older than the horizon counts as handled; a ``notified`` one (S3 says
        it was just created) does not, so a long upload's file is not missed.
        """
        modified = _timestamp(obj)
        if modified is not None:
            self.newest = modified if self.newest is None else max(self.newest, modified)
        if not notified and self.is_handled(obj):
            return False
        fp = fingerprint(obj)
        if modified is None or modified >= self._next_horizon():
            self.listed[dataset].add(fp)
        if fp in self.seen[dataset]:
            return False
        self.seen[dataset].add(fp)
        self.new.setdefault(dataset, []).append(obj)
        return True

    def _next_horizon(self) -> float:
        newest = self.started_at if self.newest is None else min(self.newest, self.started_at)
        return newest - self.horizon_seconds

    def list_tails(self, list_page: PageLister, budget: int) -> None:
        """List the keys after each dataset's tail, within ``budget`` keys in all."""
        for name in self.datasets:
            while name in self.tails and self.keys_listed < budget:
                page = list_page(name, self.tails[name], min(PAGE_SIZE, budget - self.keys_listed))
                self.keys_listed += max(page.keys, 1)
                for obj in page.objects:
                    self.consider(name, obj)
                if page.last_key is not None:
                    self.tails[name] = page.last_key
                if not page.truncated:
                    break

    def continue_pass(self, list_page: PageLister, budget: int) -> None:
        """List the pass onwards until ``budget`` keys are listed or the pass completes."""
        while self.keys_listed < budget:
            page = list_page(self.dataset, self.after, min(PAGE_SIZE, budget - self.keys_listed))
            self.keys_listed += max(page.keys, 1)
            for obj in page.objects:
                self.consider(self.dataset, obj)
            if page.last_key is not None:
                self.after = page.last_key
            if page.truncated:
                continue
            if self.after is None:
                self.tails.pop(self.dataset, None)
            else:
                self.tails[self.dataset] = max(self.after, self.tails.get(self.dataset, ""))
            position = self.datasets.index(self.dataset) + 1
            if position == len(self.datasets):
                self._complete()
                return
            self.dataset, self.after = self.datasets[position], None

    def _complete(self) -> None:
        self.pass_completed = True
        if self.newest is not None or self.horizon is not None:
            self.horizon = self._next_horizon()
        self.seen = {name: set(fps) for name, fps in self.listed.items()}

    def cursor(self, pending: Sequence[PendingDelete] = ()) -> LandingCursor:
        """The cursor to store after this tick."""
        listing = None
        if not self.pass_completed:
            listing = ListingPass(
                started_at=self.started_at,
                dataset=self.dataset,
                after=self.after,
                newest=self.newest,
                listed={name: frozenset(fps) for name, fps in self.listed.items() if fps},
            )
        return LandingCursor(
            seen={name: frozenset(fps) for name, fps in self.seen.items() if fps},
            horizon=self.horizon,
            tails=dict(self.tails),
            listing=listing,
            pending=tuple(pending),
        )
