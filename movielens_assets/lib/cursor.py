"""The landing sensor's cursor: which S3 objects it has seen, by identity (key and ETag).

Pure functions, no Dagster. S3's ``LastModified`` has one-second resolution and a multipart
upload carries the time it *started*, so a watermark on it misses objects that land in the same
second as the last one seen, or that finish uploading late, and never notices an object
overwritten within that second. This cursor instead remembers objects by identity, so that each
(key, ETag) pair is reported exactly once whatever the order of the listing:

- a new key is new; an existing key with a new ETag (overwritten with other content) is new;
- an object listed again with the same ETag (even re-uploaded with the same content) is not;
- an object deleted from S3 is dropped from the cursor, so it is new again if it comes back.

Format 2 (``lib/landing_scan.py`` writes it) keeps only the objects newer than a horizon, where
the listing pass stands, each dataset's last key and the queue messages awaiting deletion, so
its size follows the recent arrivals, not the bucket's history. :func:`diff_listing` is the
whole-listing diff of format 1, kept for its users.

Format. Each object is stored as an 8-byte BLAKE2b fingerprint of its (key, ETag), the
fingerprints of a dataset sorted and base64-encoded, in a small JSON document readable in the
Dagster UI::

    {"format":"movielens-s3-landing/2","datasets":{"ratings":{"objects":2,"fingerprints":"..."}},
     "horizon":1767225600.0,"tails":{"ratings":"landing/ratings/ratings-2026-01-01.csv"}}

That is about 10.7 characters per remembered object (~13 KB for 1,205, ~1.07 MB for 100,000);
compression does not help, fingerprints are random bytes. With 64-bit fingerprints the chance
that a new object collides with one of 100,000 known ones is about 5e-15 per object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from movielens_assets.lib.s3 import S3Object

CURSOR_FORMAT = "movielens-s3-landing/2"
"""The ``format`` field of a cursor this module writes."""
READABLE_FORMATS = ("movielens-s3-landing/1", CURSOR_FORMAT)
"""Formats :meth:`LandingCursor.parse` reads (format 1 had the fingerprints only); anything
else is refused."""
FINGERPRINT_BYTES = 8
"""Bytes kept of each object's BLAKE2b digest."""


class CursorError(ValueError):
    """A sensor cursor that this module did not write (another format, or corrupted)."""


def fingerprint(obj: S3Object) -> bytes:
    """The identity of one object: a short digest of its key and ETag."""
    digest = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    key = obj.key.encode()
    digest.update(len(key).to_bytes(4, "big"))
    digest.update(key)
    digest.update(obj.etag.strip('"').encode())
    return digest.digest()


def _encode(sets: Mapping[str, frozenset[bytes]]) -> dict[str, dict[str, object]]:
    return {
        name: {
            "objects": len(fingerprints),
            "fingerprints": base64.b64encode(b"".join(sorted(fingerprints))).decode(),
        }
        for name, fingerprints in sorted(sets.items())
    }


def _decode(document: Mapping[str, Any]) -> dict[str, frozenset[bytes]]:
    sets = {}
    for name, entry in document.items():
        raw = base64.b64decode(entry["fingerprints"], validate=True)
        if len(raw) % FINGERPRINT_BYTES:
            raise CursorError(f"the fingerprints of {name!r} are truncated")
        sets[name] = frozenset(
            raw[start : start + FINGERPRINT_BYTES]
            for start in range(0, len(raw), FINGERPRINT_BYTES)
        )
    return sets


@dataclass(frozen=True)
class ListingPass:
    """A listing of every dataset prefix in progress, spread over ticks by the listing budget."""

    started_at: float
    """When the pass began (epoch seconds): the next horizon is this less the horizon window."""
    dataset: str
    """The dataset being listed."""
    after: str | None = None
    """The last key listed in ``dataset`` (S3's ``StartAfter`` for the next page)."""
    newest: float | None = None
    """The newest ``LastModified`` seen during the pass (epoch seconds)."""
    listed: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    """The objects seen during the pass that are newer than the next horizon: the ``seen`` of
    the cursor once the pass completes (so deleted and overwritten objects leave it)."""


@dataclass(frozen=True)
class PendingDelete:
    """Queue messages behind a requested run, deleted once that run is found recorded."""

    run_key: str
    receipt_handles: tuple[str, ...]
    objects: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    """The fingerprints the run stands for: forgotten again if the run is not found."""


@dataclass(frozen=True)
class LandingCursor:
    """The objects seen so far, as fingerprint sets per dataset, and where the listing stands.

    ``seen`` holds every object seen since the ``horizon`` (objects last modified before it count
    as handled); ``tails`` the greatest key of each dataset's last complete listing (new keys
    sorting after it are listed first, with ``StartAfter``); ``listing`` the pass in progress;
    ``pending`` the queue messages awaiting deletion.
    """

    seen: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    horizon: float | None = None
    tails: Mapping[str, str] = field(default_factory=dict)
    listing: ListingPass | None = None
    pending: tuple[PendingDelete, ...] = ()

    @property
    def object_count(self) -> int:
        """How many objects the cursor remembers, over all datasets."""
        return sum(len(fingerprints) for fingerprints in self.seen.values())

    def serialize(self) -> str:
        """The cursor as the string Dagster stores."""
        document: dict[str, object] = {"format": CURSOR_FORMAT, "datasets": _encode(self.seen)}
        if self.horizon is not None:
            document["horizon"] = round(self.horizon, 3)
        if self.tails:
            document["tails"] = dict(sorted(self.tails.items()))
        if self.listing is not None:
            document["listing"] = {
                "started_at": round(self.listing.started_at, 3),
                "dataset": self.listing.dataset,
                "after": self.listing.after,
                "newest": self.listing.newest,
                "listed": _encode(self.listing.listed),
            }
        if self.pending:
            document["pending"] = [
                {
                    "run_key": pending.run_key,
                    "receipt_handles": list(pending.receipt_handles),
                    "objects": _encode(pending.objects),
                }
                for pending in self.pending
            ]
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def parse(cls, cursor: str | None) -> LandingCursor:
        """Read a cursor written by :meth:`serialize` (or by format 1); ``None``/``""``: fresh."""
        if not cursor:
            return cls()
        try:
            document = json.loads(cursor)
            if document.get("format") not in READABLE_FORMATS:
                raise CursorError(f"its format is {document.get('format')!r}")
            listing = document.get("listing")
            parsed = cls(
                seen=_decode(document["datasets"]),
                horizon=float(document["horizon"]) if "horizon" in document else None,
                tails={str(name): str(key) for name, key in document.get("tails", {}).items()},
                listing=ListingPass(
                    started_at=float(listing["started_at"]),
                    dataset=str(listing["dataset"]),
                    after=listing["after"],
                    newest=listing.get("newest"),
                    listed=_decode(listing["listed"]),
                )
                if listing
                else None,
                pending=tuple(
                    PendingDelete(
                        run_key=str(entry["run_key"]),
                        receipt_handles=tuple(entry["receipt_handles"]),
                        objects=_decode(entry["objects"]),
                    )
                    for entry in document.get("pending", [])
                ),
            )
        except (CursorError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise CursorError(
                f"The S3 landing sensor's cursor is not a {CURSOR_FORMAT!r} cursor "
                f"({e}; it starts {cursor[:60]!r}). Clear it (Dagster UI: the sensor's page, "
                "'Set cursor value', empty; or `dagster sensor cursor s3_landing_sensor "
                "--delete`): the next tick then requests one run over every landed file, "
                "and the RAW ledger skips files that are already loaded."
            ) from e
        return parsed


def diff_listing(
    listing_by_dataset: Mapping[str, Sequence[S3Object]], cursor: LandingCursor
) -> tuple[dict[str, list[S3Object]], LandingCursor]:
    """The objects of ``listing_by_dataset`` the cursor has not seen, and the cursor after them.

    The listing is the whole truth: the returned cursor holds exactly the listed objects, so
    deleted objects (and datasets absent from the listing) leave it. Only datasets with new
    objects appear in the result, each list sorted by key. Diffing again with the returned
    cursor and the same listing yields nothing.
    """
    new_by_dataset: dict[str, list[S3Object]] = {}
    seen: dict[str, frozenset[bytes]] = {}
    for dataset, objects in listing_by_dataset.items():
        known = cursor.seen.get(dataset, frozenset())
        current = {fingerprint(obj): obj for obj in objects}
        new = [obj for fp, obj in current.items() if fp not in known]
        if new:
            new_by_dataset[dataset] = sorted(new, key=lambda obj: (obj.key, obj.etag))
        if current:
            seen[dataset] = frozenset(current)
    return new_by_dataset, LandingCursor(seen=seen)


def run_key_for(new_objects: Iterable[S3Object]) -> str:
    """A run key naming exactly these objects: the same (key, ETag) pairs give the same key."""
    pairs = sorted({(obj.key, obj.etag.strip('"')) for obj in new_objects})
    digest = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    return f"s3-landing-{len(pairs)}-{digest[:32]}"
