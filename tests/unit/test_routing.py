"""Misrouted records (issue 20): murmur2 as the Java client computes it, and partitions that forward,
dead-letter or drop what landed on them but belongs elsewhere, simulated over three partitions."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core import state as codec
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.routing import (
    FORWARDED_FROM,
    MISROUTED,
    MISROUTED_COPY,
    REFUSED_MALFORMED,
    REFUSED_PARTITION,
    REFUSED_TOPIC,
    Origin,
    PartitionRouting,
    consistent_partition,
    forwarded_copy,
    murmur2,
    murmur2_partition,
)
from streamdrift.core.synthetic import generate
from streams import FB, PRED, state_bytes

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (the empty key: the Java client's Utils.murmur2 too)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}
N = 3
# model-a, -f, -g: murmur2 and CRC32 agree (partitions 0, 1, 2); the other five CRC32 puts elsewhere
MODELS = [f"model-{c}" for c in "abcdefgh"]
SETTINGS = MonitorSettings()


def test_murmur2_is_the_java_clients():
    assert {key: murmur2(key) for key in JAVA_VECTORS} == JAVA_VECTORS
    # toPositive (h & 0x7fffffff), not abs: the two differ for a negative hash
    assert murmur2_partition(b"foobar", 50) == (-790332482 & 0x7FFFFFFF) % 50 == 16


def test_the_test_models_mix_partitioners():
    agree = [m for m in MODELS if murmur2_partition(m.encode(), N) == consistent_partition(m.encode(), N)]
    assert sorted(murmur2_partition(m.encode(), N) for m in agree) == [0, 1, 2]
    assert len(MODELS) - len(agree) == 5


# -- a simulated cluster: three partitions per topic, an engine per partition, forwarding between them ----------


def _events(n: int, seed: int = 5) -> dict[str, list[dict]]:
    """The demo stream over eight models: predictions, and feedback right behind them."""
    out: dict[str, list[dict]] = {PRED: [], FB: []}
    model_of: dict[str, str] = {}
    for kind, event in generate(n, seed=seed, feedback_delay=20):
        if kind == "prediction":
            model_of[event["event_id"]] = MODELS[len(model_of) % len(MODELS)]
        out[PRED if kind == "prediction" else FB].append({**event, "model_id": model_of[event["event_id"]]})
    return out


def _logs(events: dict[str, list[dict]], placement: dict[str, str], seed: int = 0) -> dict[str, list[list[RawMessage]]]:
    """Each topic's three partition logs, as producers with ``placement[topic]`` write them:
    ``murmur2``, ``consistent`` (CRC32 of the key) or ``null_keys`` (no key, a random partition)."""
    rng = np.random.default_rng(seed)
    logs: dict[str, list[list[RawMessage]]] = {PRED: [[] for _ in range(N)], FB: [[] for _ in range(N)]}
    for topic, stream in events.items():
        for event in stream:
            key = event["model_id"].encode()
            how = placement[topic]
            p = (
                murmur2_partition(key, N)
                if how == "murmur2"
                else consistent_partition(key, N)
                if how == "consistent"
                else int(rng.integers(N))
            )
            log = logs[topic][p]
            ts = round(event["timestamp"] * 1000)
            log.append(RawMessage(topic, p, len(log), None if how == "null_keys" else key, orjson.dumps(event), ts))
    return logs


class Cluster:
    """Three engines consuming their partitions in rounds of ``chunk`` records, forwarding as the worker does:
    a copy is appended to its partition's log when the record is added."""

    def __init__(self, logs: dict[str, list[list[RawMessage]]], misrouted: str = "forward", chunk: int = 97):
        self.logs = {topic: [list(log) for log in logs[topic]] for topic in logs}
        self.misrouted = misrouted
        self.chunk = chunk
        self.engines = [self._engine(p) for p in range(N)]
        self.at = [{PRED: 0, FB: 0} for _ in range(N)]
        self.dead: list[tuple[RawMessage, str]] = []
        self.forwarded = 0
        self.duplicates = 0

    def _engine(self, p: int) -> PartitionEngine:
        return PartitionEngine(
            p,
            PRED,
            FB,
            monitor_factory(SETTINGS),
            epoch_ms=100,
            partitions=N,
            misrouted=self.misrouted,  # type: ignore[arg-type]
        )

    def round(self) -> bool:
        """Each partition takes its next chunk of each topic; True while any took something."""
        moved = False
        for p, engine in enumerate(self.engines):
            for topic in (PRED, FB):
                fetched = self.logs[topic][p][self.at[p][topic] : self.at[p][topic] + self.chunk]
                self.at[p][topic] += len(fetched)
                moved |= bool(fetched)
                routed = engine.add(topic, fetched)
                for forward in routed.forward:
                    dest = self.logs[topic][forward.partition]
                    copy = forwarded_copy(forward.message)
                    copy.partition, copy.offset = forward.partition, len(dest)
                    dest.append(copy)
                self.forwarded += len(routed.forward)
                self.duplicates += routed.duplicates
                self.dead += [(r.message, r.reason) for r in routed.rejected]
            released = engine.release()
            self.dead += [(r.message, r.reason) for r in released.rejected]
        return moved

    def checkpoint(self, p: int) -> codec.Snapshot:
        """Partition ``p``'s state as a checkpoint stores it and a restore reads it back."""
        return codec.decode(codec.encode(self.engines[p].snapshot(), "test"), "test", "test")

    def crash(self, p: int, snapshot: codec.Snapshot) -> None:
        """Partition ``p``'s worker dies and a new one resumes from ``snapshot``: its offsets, its state."""
        engine = self.engines[p] = self._engine(p)
        engine.restore(snapshot)
        self.at[p] = {PRED: snapshot.offsets.get(PRED, 0), FB: snapshot.offsets.get(FB, 0)}

    def run(self, crashes: dict[int, tuple[int, int]] | None = None) -> Cluster:
        """Rounds until every log is consumed; ``crashes``: round -> (partition, round of the snapshot it resumes)."""
        crashes = crashes or {}
        taken = {at_round: self.checkpoint(p) for at_round, (p, snap) in crashes.items() if snap == 0}
        rounds = 0
        while self.round():
            rounds += 1
            for at_round, (p, snap_round) in crashes.items():
                if rounds == snap_round:
                    taken[at_round] = self.checkpoint(p)
                if rounds == at_round:
                    self.crash(p, taken[at_round])
        for engine in self.engines:
            engine.release(ended={PRED, FB})
        return self

    def monitors(self) -> dict:
        return {m: mon for engine in self.engines for m, mon in engine.monitors.items()}

    def labelled(self) -> dict[str, tuple]:
        """Per model: predictions, feedback and labelled counts, and the cumulative metrics."""
        out = {}
        for model_id, monitor in sorted(self.monitors().items()):
            s = monitor.summary().as_dict()
            cumulative = dict(s["performance"]["cumulative"])
            confusion = cumulative.pop("confusion", None)  # its classes in the order first seen: by class pair
            if confusion is not None:
                labels = confusion["labels"]
                cumulative["confusion"] = {
                    (labels[i], labels[j]): n for i, row in enumerate(confusion["matrix"]) for j, n in enumerate(row)
                }
            out[model_id] = (
                s["predictions_total"],
                s["feedback_total"],
                s["labelled_total"],
                s["join"]["joined"],
                cumulative,
            )
        return out


@pytest.fixture(scope="module")
def events():
    return _events(2400)


@pytest.fixture(scope="module")
def murmur2_run(events):
    return Cluster(_logs(events, {PRED: "murmur2", FB: "murmur2"})).run()


@pytest.mark.parametrize("feedback", ["consistent", "null_keys"])
def test_every_label_joins_as_with_murmur2_everywhere(events, murmur2_run, feedback):
    """Predictions by murmur2, feedback by CRC32 or with null keys: forwarded, every label joins its prediction."""
    expected = murmur2_run.labelled()
    assert all(joined > 0 for *_, joined, _ in expected.values())  # the comparison means something
    assert murmur2_run.forwarded == 0
    mixed = Cluster(_logs(events, {PRED: "murmur2", FB: feedback})).run()
    assert mixed.forwarded > 0 and not mixed.dead
    assert mixed.labelled() == expected
    # each model's state is on its murmur2 partition only
    for p, engine in enumerate(mixed.engines):
        assert {murmur2_partition(m.encode(), N) for m in engine.monitors} <= {p}


def test_without_forwarding_labels_are_lost(events, murmur2_run):
    """Today's behaviour (``process``), the bug: the labels CRC32 put elsewhere never meet their predictions."""
    processed = Cluster(_logs(events, {PRED: "murmur2", FB: "consistent"}), misrouted="process").run()
    assert processed.forwarded == 0 and not processed.dead
    joined = sum(mon.summary().as_dict()["join"]["joined"] for e in processed.engines for mon in e.monitors.values())
    assert joined < sum(joined for *_, joined, _ in murmur2_run.labelled().values())


def test_dead_letter_mode_rejects_exactly_the_misrouted_records(events):
    logs = _logs(events, {PRED: "murmur2", FB: "consistent"})
    misrouted = {
        (r.topic, r.partition, r.offset)
        for topic in logs
        for p, log in enumerate(logs[topic])
        for r in log
        if murmur2_partition(r.key, N) != p
    }
    cluster = Cluster(logs, misrouted="dead_letter").run()
    assert {(m.topic, m.partition, m.offset) for m, _ in cluster.dead} == misrouted
    assert {reason for _, reason in cluster.dead} == {MISROUTED}
    assert len(cluster.dead) == len(misrouted) > 0 and cluster.forwarded == 0


@pytest.mark.parametrize(
    "crashes",
    [
        {6: (0, 3)},  # a source of forwarded feedback dies: what it forwarded since its snapshot comes again
        {5: (2, 2), 9: (1, 7)},  # two of them, one after the other
        {4: (0, 0)},  # before its first snapshot had anything
    ],
)
def test_a_crash_after_forwarding_leaves_the_same_state(events, crashes):
    """A worker that dies between forwarding and committing forwards again from its snapshot; the destination
    drops the copies it processed already, and every model's state, every partition's merge state, are the
    bytes of a run without the crash (keyed records: a model's copies come from one partition, in its order)."""
    logs = _logs(events, {PRED: "murmur2", FB: "consistent"})
    calm = Cluster(logs).run()
    crashed = Cluster(logs).run(crashes)
    # forwarded again, and every copy forwarded twice dropped (once more for each time a restored destination
    # reads it again)
    assert crashed.forwarded > calm.forwarded
    assert crashed.duplicates >= crashed.forwarded - calm.forwarded
    assert state_bytes(crashed.monitors()) == state_bytes(calm.monitors())
    assert [e.partition_state() for e in crashed.engines] == [e.partition_state() for e in calm.engines]


def test_the_marks_of_forwarded_copies_are_checkpointed(events):
    logs = _logs(events, {PRED: "murmur2", FB: "consistent"})
    cluster = Cluster(logs).run()
    marks = {p: e.partition_state().get("forwarded") for p, e in enumerate(cluster.engines)}
    # every partition was forwarded to, and remembers the last copy of each source partition
    for p, mark in marks.items():
        sources = {(c.headers[-1][1].decode().rsplit("/", 2)[1]) for c in cluster.logs[FB][p] if c.headers}
        assert mark is not None and {name.rsplit("/", 1)[1] for name in mark} == sources
    restored = cluster._engine(1)
    restored.restore(cluster.checkpoint(1))
    assert restored.routing.marks == cluster.engines[1].routing.marks


# -- one partition, record by record ----------------------------------------------------------------------------


def test_a_forwarded_copy_that_is_misrouted_again_is_dead_lettered_never_forwarded():
    """The partition count changed between forwarding and reading: no second forward, so no loop."""
    routing = PartitionRouting(0, N)
    original = RawMessage(FB, 1, 4, b"model-b", b"{}", 1000)  # model-b belongs to partition 2, not 0
    copy = forwarded_copy(original)
    routed = routing.route(FB, [RawMessage(FB, 0, 0, copy.key, copy.value, 1000, copy.headers)])
    assert routed.forward == [] and [(r.reason, r.message.offset) for r in routed.rejected] == [(MISROUTED_COPY, 0)]
    assert routing.processed(FB, routed.kept) == []
    assert routing.marks == {(FB, 1): 4}  # done with: a later copy of it is a duplicate


def test_null_keys_route_by_model_id():
    value = orjson.dumps({"model_id": "model-b"})
    at = [PartitionRouting(p, N).route(PRED, [RawMessage(PRED, p, 0, None, value, 1)]) for p in range(N)]
    assert [len(r.forward) for r in at] == [1, 1, 0]
    assert {f.partition for r in at for f in r.forward} == {2}
    assert at[0].null_keys == 1
    # a value without a model id is nobody's to forward: the decoder rejects it where it is
    bad = PartitionRouting(0, N).route(PRED, [RawMessage(PRED, 0, 0, None, b"not json", 1)])
    assert bad.misrouted == 0 and bad.kept[0].value == b"not json"


@settings(max_examples=25, deadline=None)
@given(
    inserts=st.lists(
        st.tuples(
            st.integers(0, 400), st.sampled_from(["model-c", "model-d", "model-h"]), st.integers(-(10**6), 10**13)
        ),
        max_size=30,
    ),
    chunk=st.integers(1, 150),
)
def test_a_misrouted_record_leaves_no_trace_in_the_state(inserts, chunk):
    """Records of other partitions, anywhere in the log, at any timestamp: the state is that of the log without
    them, and the offsets move past them. (The log's own records keep their offsets, 0, 10, 20...; offsets have
    gaps in Kafka too: transaction markers, compaction. The drift events and the join name them.)"""
    events = _events(300, seed=2)
    logs = _logs(events, {PRED: "murmur2", FB: "murmur2"})
    clean = {
        topic: [RawMessage(topic, 2, 10 * r.offset, r.key, r.value, r.timestamp_ms) for r in logs[topic][2]]
        for topic in (PRED, FB)
    }  # partition 2: model-b, -e, -g
    dirty = {topic: list(records) for topic, records in clean.items()}
    for at, model_id, ts in sorted(inserts, reverse=True):
        topic = PRED if ts % 2 else FB
        at = min(at, len(dirty[topic]))
        before = dirty[topic][at - 1].offset if at else -1
        value = orjson.dumps({"model_id": model_id, "event_id": "x"})
        if at < len(dirty[topic]) and dirty[topic][at].offset == before + 1:
            continue  # no free offset left between the two
        dirty[topic].insert(at, RawMessage(topic, 2, before + 1, model_id.encode(), value, ts))

    def run(logs: dict[str, list[RawMessage]]) -> PartitionEngine:
        engine = PartitionEngine(2, PRED, FB, monitor_factory(SETTINGS), epoch_ms=100, partitions=N)
        for start in range(0, max(map(len, logs.values())), chunk):
            for topic in (PRED, FB):
                engine.add(topic, logs[topic][start : start + chunk])
            engine.release()
        engine.release(ended={PRED, FB})
        return engine

    expected, got = run(clean), run(dirty)
    assert state_bytes(got.monitors) == state_bytes(expected.monitors)
    assert got.partition_state() == expected.partition_state()
    assert got.offsets == {topic: records[-1].offset + 1 for topic, records in dirty.items() if records}


@st.composite
def _forwarded_logs(draw) -> tuple[list[RawMessage], dict[int, int]]:
    """A destination's log of copies from two source partitions: each source forwards its misrouted records
    0..n-1 in order, and after a crash forwards again from any record up to where it had got; the two sources'
    copies interleave anyhow. Returns the log and each source's n."""
    streams: dict[int, list[int]] = {}
    for source in (0, 2):
        n = draw(st.integers(1, 12))
        sent, got_to = [], 0
        while got_to < n:
            restart = draw(st.integers(0, got_to))  # the offset of the source's last checkpoint
            got_to = draw(st.integers(got_to + 1, n))  # how far it forwards before the next crash, or the end
            sent += range(restart, got_to)
        streams[source] = sent
    log: list[RawMessage] = []
    while any(streams.values()):
        source = draw(st.sampled_from([s for s, sent in streams.items() if sent]))
        copy = forwarded_copy(RawMessage(FB, source, streams[source].pop(0), b"model-f", b"{}", 1))
        log.append(RawMessage(FB, 1, len(log), copy.key, copy.value, 1, copy.headers))
    n_of = {s: max(o.offset for o in (Origin.of(r.headers) for r in log) if o and o.partition == s) + 1 for s in (0, 2)}
    return log, n_of


@settings(max_examples=200, deadline=None)
@given(forwarded=_forwarded_logs(), chunk=st.integers(1, 10), restart_at=st.integers(0, 60))
def test_every_forwarded_record_is_processed_once_in_its_order(forwarded, chunk, restart_at):
    """Whatever was forwarded twice or more, and wherever the destination restarts from its checkpoint, each
    source's records are processed once each, in the source's order; the marks say how far each source got."""
    log, n_of = forwarded
    routing = PartitionRouting(1, N)
    processed: list[RawMessage] = []
    at = 0
    while at < len(log):
        if at >= restart_at and restart_at >= 0:  # the destination restarts from a checkpoint taken here
            restarted = PartitionRouting(1, N)
            restarted.load_state(routing.state())
            routing, restart_at = restarted, -1
        routed = routing.route(FB, log[at : at + chunk])
        processed += routing.processed(FB, routed.kept)
        at += chunk
    by_source: dict[int, list[int]] = {0: [], 2: []}
    for record in processed:
        origin = Origin.of(record.headers)
        assert origin is not None
        by_source[origin.partition].append(origin.offset)
    assert by_source == {source: list(range(n)) for source, n in n_of.items()}
    assert routing.marks == {(FB, source): n - 1 for source, n in n_of.items()}


# -- the forwarding header, as any producer may write it (the review of issue 20) -------------------------------


def _copy_engine() -> PartitionEngine:
    return PartitionEngine(1, PRED, FB, monitor_factory(SETTINGS), epoch_ms=100, partitions=N)


def _label_with(header: bytes | None, offset: int = 0, topic: str = FB) -> RawMessage:
    """A label of model-f (murmur2: partition 1, its own) carrying ``header`` as its forwarding header."""
    value = orjson.dumps({"event_id": f"e{offset}", "model_id": "model-f", "timestamp": 1000, "label": 1})
    return RawMessage(
        topic, 1, offset, b"model-f", value, 1_000_000 + offset, [("trace", b"t"), (FORWARDED_FROM, header)]
    )


@pytest.mark.parametrize(
    "header",
    [
        f"{FB}/\u00b2/7".encode(),  # str.isdigit() says yes, int() no
        f"{FB}/0/".encode() + b"9" * 5000,  # over int()'s 4,300 digits
        f"{FB}/0/{2**63}".encode(),  # not a Kafka offset, nor an integer a snapshot can encode
        f"{FB}/0/-3".encode(),
        f"{FB}/0/ 3".encode(),
        f"{FB}/0".encode(),
        f"{FB}/0/3/4".encode(),
        b"",
        None,
    ],
)
def test_a_malformed_forwarding_header_is_dead_lettered_and_the_partition_goes_on(header):
    engine = _copy_engine()
    plain = RawMessage(FB, 1, 1, b"model-f", _label_with(None, 1).value, 1_000_001)
    routed = engine.add(FB, [_label_with(header, 0), plain])
    assert [(r.reason, r.message.offset) for r in routed.rejected] == [(REFUSED_MALFORMED, 0)]
    assert REFUSED_MALFORMED.isascii() and "9999" not in REFUSED_MALFORMED  # names the rule, not the value
    engine.release(ended={PRED, FB})
    assert engine.routing.marks == {} and engine.offsets[FB] == 2


def test_a_twenty_digit_origin_offset_leaves_the_checkpoint_encodable():
    """The review's case: ``<topic>/<p>/`` and twenty 9s was marked, and every later snapshot failed to encode."""
    engine = _copy_engine()
    top = 2**63 - 1  # the largest offset Kafka has: trusted, and encoded
    routed = engine.add(FB, [_label_with(f"{FB}/0/".encode() + b"9" * 20, 0), _label_with(f"{FB}/2/{top}".encode(), 1)])
    assert [r.reason for r in routed.rejected] == [REFUSED_MALFORMED]
    engine.release(ended={PRED, FB})
    restored = codec.decode(codec.encode(engine.snapshot(), "test"), "test", "test")
    assert restored.merge is not None and restored.merge["forwarded"] == {f"{FB}/2": top}


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"x" * 200 + b"/0/1", REFUSED_TOPIC),  # a made-up source topic: would leave a mark each, unbounded
        (f"{PRED}/0/1".encode(), REFUSED_TOPIC),  # the other input topic: its marks would drop predictions' copies
        (f"{FB}/1/1".encode(), REFUSED_PARTITION),  # this partition: never forwarded to itself
        (f"{FB}/{N}/1".encode(), REFUSED_PARTITION),  # no such partition
    ],
)
def test_a_forwarding_header_no_worker_could_have_written_is_refused(header, reason):
    engine = _copy_engine()
    routed = engine.add(FB, [_label_with(header, 0)])
    assert [(r.reason, r.message.offset) for r in routed.rejected] == [(reason, 0)]
    assert routed.duplicates == 0
    engine.release(ended={PRED, FB})
    assert engine.routing.marks == {} and engine.monitors == {}


def test_forged_headers_leave_the_marks_bounded_by_the_partitions():
    """5,000 records naming 5,000 made-up sources left 5,000 marks; refused, they leave none, and trusted
    origins can only be the other partitions of the two input topics."""
    engine = _copy_engine()
    forged = [_label_with(b"t%d/0/1" % i, i) for i in range(5000)]
    routed = engine.add(FB, forged)
    assert len(routed.rejected) == 5000 and {r.reason for r in routed.rejected} == {REFUSED_TOPIC}
    engine.release(ended={PRED, FB})
    assert engine.routing.marks == {}


def test_a_key_or_null_key_model_id_no_valid_record_has_is_not_hashed_and_is_dead_lettered_where_it_landed(
    monkeypatch,
) -> None:
    """murmur2 is plain Python: a 1 MB key took 44 ms to route, each record, before the decoder rejected it
    (a record's key is its model_id, at most 128 characters). Such a record is not judged misrouted: it is kept
    where it landed, and dead-lettered there with its own source position."""
    from streamdrift.core import routing

    hashed: list[int] = []
    real = routing.murmur2
    monkeypatch.setattr(routing, "murmur2", lambda data: hashed.append(len(data)) or real(data))
    engine = PartitionEngine(0, PRED, FB, monitor_factory(MonitorSettings()), epoch_ms=1000, partitions=3)
    event = {"event_id": "e", "model_id": "m", "timestamp": 1, "features": {}, "prediction": 1}
    long_id = {**event, "model_id": "x" * 200_000}
    records = [
        RawMessage(PRED, 0, 0, b"k" * 1_000_000, orjson.dumps(event), 1000),
        RawMessage(PRED, 0, 1, None, orjson.dumps(long_id), 1000),
    ]
    routed = engine.add(PRED, records)
    assert (routed.misrouted, routed.forward, routed.rejected) == (0, [], []) and max(hashed, default=0) <= 128
    out = engine.release(ended={PRED, FB})
    assert [r.message.offset for r in out.rejected] == [0, 1]
    assert out.rejected[0].reason == "key does not match model_id 'm'"
    assert out.rejected[1].reason.startswith("field 'model_id' must be a string matching")
