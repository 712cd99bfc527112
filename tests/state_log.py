"""A Kafka state-topic partition without a broker, for the unit tests of ``runtime/statetopic.py``."""

from __future__ import annotations

from streamdrift.runtime import statetopic
from streamdrift.runtime.statetopic import Changelog, Stored


class StateLog:
    """A state-topic partition: records appended with offsets, read back in order. No compaction: a restore
    must take the last value of each key itself; ``compacted`` is what the log cleaner may leave."""

    def __init__(self) -> None:
        self.records: list[Stored] = []

    def append(self, records: list[statetopic.Record]) -> int:
        """Append; return the offset just after the last partition record (-1 if there is none)."""
        after = -1
        for r in records:
            headers = dict(r.headers)
            gen = int(headers.get(statetopic.HEADER_GEN, b"0"))
            chunks = int(headers.get(statetopic.HEADER_CHUNKS, b"1"))
            self.records.append(Stored(len(self.records), r.key, r.value, gen, chunks))
            if r.key.startswith(b"partition/"):
                after = len(self.records)
        return after

    def commit(self, records: list[statetopic.Record], after: Changelog) -> Changelog:
        """Write one checkpoint's records as the worker does: the records, then (once acknowledged) the
        tombstones of the keys no committed partition record names any more."""
        after.offset = self.append(records)
        self.append(statetopic.tombstones(after))
        after.garbage = set()
        return after

    def compacted(self) -> list[Stored]:
        """What the log cleaner may leave: the last record of each key, tombstones gone."""
        last = {r.key: r for r in self.records}
        return [r for r in self.records if last[r.key] is r and r.value is not None]
