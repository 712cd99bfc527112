"""The retrain listener: start a retraining job when a model drifts.

This is the example consumer of the alerts topic, and a usable one::

    streamdrift retrain-listener --command "./submit-retraining.sh"
    streamdrift retrain-listener --webhook https://ci.example.com/hooks/retrain
    streamdrift retrain-listener --actions retrain,investigate --debounce-s 21600 --command ...
    streamdrift retrain-listener --actions rollback --group streamdrift-rollback --command ./rollback.sh

In Python, any callable is a hook: ``RetrainListener(settings, hook=my_function).run()``.

For every drift event read from ``settings.topics.alerts`` (consumer group
``--group``, default ``streamdrift-retrain``, ``isolation.level=read_committed``,
offsets committed by hand), in partition order:

1. **Parse and validate.** A record that is not a drift event (not JSON,
   or without a string ``alert_id`` / ``model_id`` / ``action`` or a
   readable ``detected_at``, or with a control character such as NUL in an
   id), or one the hook cannot carry (``WebhookHook``: an id that is not
   latin-1, the only charset of an HTTP header), is logged, counted
   (``malformed``) and committed past, before any hook call: no record can
   stall its partition in retries. Dead-lettering it is the producer's
   business, not ours.
2. **Deduplicate** by ``alert_id``: the worker gives a replayed alert the id
   of the original, so a crash of the worker does not retrain twice.
3. **Filter** on ``action``: only the chosen actions (default ``retrain``)
   trigger; the rest are skipped.
4. **Debounce** per model: at most one hook call per model per
   ``debounce_s`` seconds of *event time* (the events' ``detected_at``).
   Later events of the model within the window are skipped and counted.
   Event time, not the listener's clock, because the decision must not
   depend on when the listener happens to read the topic: after a restart,
   a rebalance or a replay of the topic the same events give the same
   decisions, and a backlog read in one second is debounced as it would
   have been live.
5. **Call the hook** with the drift event. A failure is retried with
   exponential backoff (``backoff_base_s`` × 2^(attempt-1), capped at
   ``backoff_max_s``, no jitter), forever or up to ``max_attempts``; the
   event is never skipped. While a partition waits to retry, its fetching is
   paused and the consumer keeps polling, so it stays in the group and other
   partitions flow.
6. **Commit** the record's offset, synchronously, right after the hook
   succeeded (skipped records are committed at the end of each batch).

Human approval (``--require-approval``, ``retrain/approvals.py``). Between steps 4 and 5, a triggering event
waits for a decision on the approvals topic (``--approvers-topic``, default ``topics.approvals``), written by
``streamdrift approve`` / ``reject`` and read whole, ``read_committed``, before any event is (so a restart knows
every decision made meanwhile). Approved: the hook is called (a failure retried with the same backoff, while the
partition flows on). Rejected: committed past, no call. Undecided: held in memory, and the partition goes on with
the records behind it, other models' events included; the alerts offset committed is the first held event's, with
what was handled beyond it in the commit's metadata, so a listener killed while an event is held reads it again,
still held, and replays the rest without a call. ``--approval-timeout-s`` counts *wall-clock* time from the event's
publication (its record's Kafka timestamp): an approval is a person's matter, measured on a clock, not the stream's
(a model whose events stop would otherwise never time out); it does not touch the monitors' state, which stays a
function of the events. When it passes the listener writes the ``--on-timeout`` decision (``by: "streamdrift
(timeout)"``) to the approvals topic, then acts on it, so every decision, a person's or not, is on the trail.
Debouncing (step 4) counts hook calls, so two held events of a model within ``debounce_s`` are two decisions.

Guarantees. A drift event is never lost: its offset is committed only once
the hook succeeded, so a listener killed at any point resumes before it.
Hook calls are *at least once*: a listener killed after the hook succeeded
but before the commit calls it again for that event after the restart.
Duplicates are dropped by ``alert_id`` within the last ``remember`` events
of a partition, across restarts too: the seen ids and the debounce windows
are kept per alerts partition (a model's events share one, being keyed by
``model_id``), and on assignment the listener re-reads up to ``remember``
records before the committed offset, without calling the hook, to rebuild
them. Every record before the committed offset had been handled (the hook
had succeeded, or the record was skipped), so replaying those decisions
restores the previous owner's state as far back as the re-read reaches; with
event-time debouncing the replay decides as the live run did.

Hook contract (``CommandHook``): the command (split like a shell would, not
run by one: use ``sh -c '…'`` for pipes) gets the drift event as one JSON
object on stdin and ``STREAMDRIFT_HOOK_MODEL_ID``, ``STREAMDRIFT_HOOK_ALERT_ID`` and
``STREAMDRIFT_HOOK_ATTEMPT`` in its environment, with only ``PATH``, ``HOME``,
``LANG``, ``LC_ALL``, ``LC_CTYPE``, ``TZ``, ``TMPDIR``, ``USER`` and ``LOGNAME``
of the listener's own environment and the variables named by ``--pass-env``
(never the rest: the listener's Kafka credentials stay its own). Exit status 0
is success, as soon as the command exits: work it left in the background may
keep its output open, and is not waited for. The last 64 KiB of its output
(stdout and stderr) are kept and logged on failure. After ``timeout_s`` its
whole process group is killed (it runs in a session of its own). ``WebhookHook`` POSTs the JSON event; a 2xx answer is success,
anything else (redirects included) a failure. The hook should *submit* the
retraining job and return, not run it.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, Message, TopicPartition

from streamdrift.core.errors import StreamdriftError
from streamdrift.core.policy import NEWS, rfc3339
from streamdrift.retrain.approvals import APPROVE, DECIDED, REJECT, DecisionLog, Decisions
from streamdrift.retrain.holding import (
    HELD,
    MAX_HELD,
    REJECTED,
    TRIGGER,
    WAIT,
    Held,
    Holding,
    approval_verdict,
    timeout_decision,
)
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings

log = logging.getLogger("streamdrift.retrain")

DEFAULT_GROUP = "streamdrift-retrain"
OUTPUT_KEPT_BYTES = 64 * 1024  # of a command hook's output: the end, where the error is
# what a command hook gets of the listener's environment, besides the --pass-env names
HOOK_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DEBOUNCED_MODELS = 100_000  # per partition; the models whose last hook call is longest ago are forgotten first

# A drift event as read from the alerts topic (schemas/drift_event.schema.json); ``parse`` checked
# that alert_id, model_id and action are non-empty strings and detected_at a time
DriftEvent = dict[str, Any]
Hook = Callable[[DriftEvent], object]  # returns: success; raises: failure (retried)

# What the listener does with one record: TRIGGER (call the hook), or skip it as one of these. With
# --require-approval, a trigger is HELD until decided, and a REJECTED one is committed past (holding.py).
DUPLICATE, IGNORED, DEBOUNCED, MALFORMED = "duplicate", "ignored", "debounced", "malformed"


class HookError(StreamdriftError):
    """A hook call failed, or failed ``max_attempts`` times in a row."""


# -- the core: no Kafka ----------------------------------------------------

_FRACTION = re.compile(r"(\.\d{6})\d+")


def event_time(value: object) -> float:
    """``detected_at`` (RFC 3339 or epoch seconds) as epoch seconds; ``ValueError`` if neither.

    >>> event_time("2026-11-21T10:00:00.250Z"), event_time(1700000000), event_time("2026-11-21t11:00:00+01:00")
    (1795255200.25, 1700000000.0, 1795255200.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.upper()))  # fromisoformat: 6 digits at most
    if parsed.tzinfo is None:
        raise ValueError(f"no time zone: {value!r}")
    return parsed.timestamp()


def parse(value: bytes | None) -> tuple[DriftEvent | None, str]:
    """The drift event in a record, or ``None`` and why it is not one."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(event, dict):
        return None, "not a JSON object"
    for name in ("alert_id", "model_id", "action"):
        if not isinstance(event.get(name), str) or not event[name]:
            return None, f"{name!r} is missing or not a string"
        control = _CONTROL.search(event[name])
        if control is not None:  # bound for an environment variable, a header, a log line
            return None, f"{name!r} holds a control character ({control.group()!r})"
    try:
        event_time(event.get("detected_at"))
    except ValueError as exc:
        return None, f"'detected_at': {exc}"
    return event, ""


class AlertFilter:
    """Deduplication, action filter and debounce for the drift events of one alerts partition.

    ``decide`` says what to do with an event and changes nothing; ``settle``
    records the outcome once it is final (for a trigger: once the hook
    succeeded), so a failed hook call leaves the filter as it was.

    Parameters
    ----------
    actions
        Actions that trigger the hook.
    debounce_s
        Event-time seconds after a triggering event during which the same
        model's events are skipped; an event detected *before* that call (the
        alerts topic is not in event-time order) is within them. 0 never skips.
    remember
        Alert ids remembered for deduplication (the most recent ones).

    Examples
    --------
    >>> f = AlertFilter(actions={"retrain"}, debounce_s=3600, remember=1000)
    >>> events = [("a1", "m1", "retrain", 0), ("a1", "m1", "retrain", 0), ("a2", "m1", "investigate", 10),
    ...           ("a3", "m1", "retrain", 60), ("a4", "m2", "retrain", 30), ("a5", "m1", "retrain", 3600)]
    >>> verdicts = []
    >>> for alert_id, model_id, action, t in events:
    ...     e = {"alert_id": alert_id, "model_id": model_id, "action": action, "detected_at": t}
    ...     verdicts.append(f.decide(e))
    ...     f.settle(e, verdicts[-1])
    >>> verdicts
    ['trigger', 'duplicate', 'ignored', 'debounced', 'trigger', 'trigger']
    >>> late = {"alert_id": "a6", "model_id": "m1", "action": "retrain", "detected_at": 3590}  # before a5
    >>> f.decide(late), AlertFilter({"retrain"}, debounce_s=0, remember=10).decide(late)
    ('debounced', 'trigger')
    >>> f0 = AlertFilter({"retrain"}, debounce_s=0, remember=10)
    >>> f0.settle(e, f0.decide(e))
    >>> f0.decide(late)  # earlier than the last call, and no debounce: called all the same
    'trigger'
    """

    def __init__(self, actions: Iterable[str], debounce_s: float, remember: int):
        self.actions = frozenset(actions)
        self.debounce_s = debounce_s
        self.remember = remember
        self._reset()

    def _reset(self) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()  # alert ids, oldest first
        self.fired_at: OrderedDict[str, float] = OrderedDict()  # model -> event time of its last hook call

    def decide(self, event: DriftEvent) -> str:
        if event["alert_id"] in self.seen:
            return DUPLICATE
        # drift_resolved and rebaselined (action "none") are news, never a reason to retrain, whatever is chosen
        if event["action"] not in self.actions or event.get("kind") in NEWS:
            return IGNORED
        last = self.fired_at.get(event["model_id"])
        # drift events reach the topic out of event-time order (a concept drift found from late labels is
        # detected earlier than a data drift found before it): a negative gap is inside the window, and
        # no gap is inside a window of 0 s
        if last is not None and self.debounce_s > 0 and event_time(event["detected_at"]) - last < self.debounce_s:
            return DEBOUNCED
        return TRIGGER

    def settle(self, event: DriftEvent, verdict: str) -> None:
        if verdict == MALFORMED:
            return
        if self.remember:
            _remember(self.seen, event["alert_id"], None, self.remember)
        if verdict == TRIGGER:
            _remember(self.fired_at, event["model_id"], event_time(event["detected_at"]), MAX_DEBOUNCED_MODELS)

    def since_fired(self, event: DriftEvent) -> float:
        """Event-time seconds between ``event`` and its model's last hook call."""
        return event_time(event["detected_at"]) - self.fired_at[event["model_id"]]


def _remember(recent: OrderedDict[str, Any], key: str, value: object, size: int) -> None:
    recent[key] = value
    recent.move_to_end(key)
    while len(recent) > size:
        recent.popitem(last=False)


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based); no jitter.

    >>> [backoff_s(n, 1.0, 30.0) for n in range(1, 8)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    """
    return min(max_s, base_s * 2.0 ** min(attempt - 1, 60))


# -- hooks -----------------------------------------------------------------


class CommandHook:
    """Run a command with the drift event as JSON on stdin; exit status 0 is success.

    Parameters
    ----------
    command
        The command line, split like a shell would (no shell runs it).
    timeout_s
        Seconds after which the command's process group is killed and the call counts as failed.
    pass_env
        Names of the listener's environment variables the command gets too (beyond ``HOOK_ENV``).
    """

    def __init__(self, command: str | list[str], timeout_s: float = 120.0, pass_env: Iterable[str] = ()):
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        self.timeout_s = timeout_s
        self.pass_env = tuple(pass_env)
        if not self.argv:
            raise StreamdriftError("--command is empty")
        if shutil.which(self.argv[0]) is None:
            raise StreamdriftError(f"--command: {self.argv[0]!r} is not an executable file or on PATH")

    def environment(self, event: DriftEvent, attempt: int) -> dict[str, str]:
        """The command's whole environment: the documented variables, never the rest of the listener's."""
        inherited = {name: os.environ[name] for name in (*HOOK_ENV, *self.pass_env) if name in os.environ}
        return {
            **inherited,
            "STREAMDRIFT_HOOK_MODEL_ID": event["model_id"],
            "STREAMDRIFT_HOOK_ALERT_ID": event["alert_id"],
            "STREAMDRIFT_HOOK_ATTEMPT": str(attempt),
        }

    def __call__(self, event: DriftEvent, attempt: int = 1) -> None:
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.environment(event, attempt),
                start_new_session=True,  # its own process group: a timeout kills what it started too
            )
        except (OSError, ValueError) as exc:
            raise HookError(f"{self} could not run: {exc}") from None
        output = bytearray()
        returncode = _run(proc, orjson.dumps(event), output, time.monotonic() + self.timeout_s)
        if returncode is None:
            raise HookError(f"{self} was killed after {self.timeout_s:g}s")
        if returncode != 0:
            tail = output.decode(errors="replace").strip()[-2000:]
            raise HookError(f"{self} exited {returncode}: {tail}")

    def __str__(self) -> str:
        return f"command {os.path.basename(self.argv[0])}"  # the rest of the line may hold a secret


def _run(proc: subprocess.Popen[bytes], stdin: bytes, output: bytearray, deadline: float) -> int | None:
    """Feed ``stdin`` to ``proc`` and keep the last ``OUTPUT_KEPT_BYTES`` of its output in ``output``
    until it exits (its exit status) or ``deadline`` passes (its process group killed: None).

    The exit ends the call, not the end of its output: a command that started work in the background
    (which holds the pipe open) has succeeded; a thread reads the rest, discarded, so that work is
    never stopped by a closed pipe."""
    assert proc.stdin is not None and proc.stdout is not None
    pending = memoryview(stdin)
    writing, reading = True, True  # stdin still to be written, stdout still open
    with selectors.DefaultSelector() as selector:
        for pipe, event in ((proc.stdin, selectors.EVENT_WRITE), (proc.stdout, selectors.EVENT_READ)):
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, event)
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(proc)
                proc.stdin.close()
                proc.stdout.close()
                return None
            if not writing and not reading:  # only its exit to wait for
                try:
                    proc.wait(left)
                except subprocess.TimeoutExpired:
                    pass
                continue
            for key, _ in selector.select(min(left, 0.1)):  # (the short wait sees an exit that leaves the pipe open)
                if key.fileobj is proc.stdin:
                    pending = _feed(proc.stdin.fileno(), pending)
                    if not pending:
                        selector.unregister(proc.stdin)
                        proc.stdin.close()
                        writing = False
                elif not _read_into(output, proc.stdout.fileno()):
                    selector.unregister(proc.stdout)
                    reading = False
        proc.stdin.close()
        if reading and _read_into(output, proc.stdout.fileno(), until_empty=True):
            selector.unregister(proc.stdout)
            threading.Thread(target=_discard, args=(proc.stdout,), name="hook-output", daemon=True).start()
        else:
            proc.stdout.close()
    return proc.returncode


def _feed(fd: int, pending: memoryview) -> memoryview:
    """What is left of ``pending`` once written to ``fd`` as far as it takes it now."""
    try:
        return pending[os.write(fd, pending) :]
    except BrokenPipeError:  # it does not read its input: its business
        return pending[:0]
    except BlockingIOError:
        return pending


def _read_into(output: bytearray, fd: int, until_empty: bool = False) -> bool:
    """Read what ``fd`` has into ``output`` (its end kept); False at the end of the output."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output += chunk
        del output[:-OUTPUT_KEPT_BYTES]
        if not until_empty:
            return True


def _discard(pipe: Any) -> None:
    os.set_blocking(pipe.fileno(), True)
    with pipe:
        while pipe.read(65536):
            pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its pid is its group's id (start_new_session)
    except ProcessLookupError:
        pass
    proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib would re-send a POST as a GET without its body: a redirect is a failure


class WebhookHook:
    """POST the drift event as JSON to ``url``; a 2xx answer is success.

    Parameters
    ----------
    url
        ``http://`` or ``https://`` URL; ``user:password@`` in it is sent as basic authentication.
    timeout_s
        Seconds to wait for the answer.
    """

    def __init__(self, url: str, timeout_s: float = 30.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StreamdriftError(f"--webhook needs an http:// or https:// URL, not {url!r}")
        self.timeout_s = timeout_s
        netloc = parts.netloc.rpartition("@")[2]
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self.headers = {"Content-Type": "application/json"}
        if parts.username is not None:  # user:password@host is sent as HTTP basic authentication
            credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        # The query may hold a token too: logs name scheme, host and path only.
        self.safe_url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self._opener = urllib.request.build_opener(_NoRedirect)

    def refuses(self, event: DriftEvent) -> str:
        """Why ``event`` cannot be sent (its ids go in headers, which are latin-1 only), or ``""``."""
        for name in ("alert_id", "model_id"):
            try:
                event[name].encode("latin-1")
            except UnicodeEncodeError:
                return f"{name!r} is not latin-1: it cannot be a webhook header"
        return ""

    def __call__(self, event: dict, attempt: int = 1) -> None:
        request = urllib.request.Request(
            self.url,
            data=orjson.dumps(event),
            method="POST",
            headers={
                **self.headers,
                "X-Streamdrift-Alert-Id": event["alert_id"],
                "X-Streamdrift-Model-Id": event["model_id"],
                "X-Streamdrift-Hook-Attempt": str(attempt),
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            raise HookError(f"{self}: {getattr(exc, 'reason', exc)}") from None
        if not 200 <= status < 300:
            raise HookError(f"{self} answered HTTP {status}")

    def __str__(self) -> str:
        return f"webhook {self.safe_url}"


# -- the Kafka shell -------------------------------------------------------


@dataclass
class _Partition:
    """What the listener holds for one assigned alerts partition."""

    filter: AlertFilter
    holding: Holding  # the events waiting for a decision, and what a previous owner handled beyond its commit
    replay_until: int = -1  # records before this offset were handled by a previous owner: replay, no hook
    position: int | None = None  # next offset to read: every record before it handled or held
    dirty: bool = False  # handled since the last commit
    failed_offset: int | None = None  # the record whose hook call is being retried
    attempts: int = 0
    retry_at: float | None = None  # monotonic time to resume fetching after a failed hook call


@dataclass
class Counts:
    triggered: int = 0
    duplicate: int = 0
    ignored: int = 0
    debounced: int = 0
    malformed: int = 0
    hook_failures: int = 0
    replayed: int = 0
    held: int = 0  # retrain events that waited for a decision (--require-approval)
    approved: int = 0
    rejected: int = 0
    timed_out: int = 0  # decided by --on-timeout


class RetrainListener:
    """Consume drift events and call a hook, per the module docstring.

    Parameters
    ----------
    settings
        Connection and topic names (``settings.topics.alerts``); ``group_id`` is not used.
    hook
        Called with each triggering drift event (a dict); success if it returns, failure if it raises.
        ``CommandHook`` and ``WebhookHook`` are hooks.
    group_id
        Consumer group of the listener; each group gets every drift event.
    actions
        Actions that trigger the hook.
    debounce_s
        Event-time seconds during which a model's later events are skipped after a hook call.
    remember
        Alert ids remembered per partition for deduplication; also how many records before the
        committed offset are re-read on assignment to rebuild that memory.
    backoff_base_s, backoff_max_s
        Retry delays: ``backoff_base_s`` doubling up to ``backoff_max_s``.
    max_attempts
        Stop (without committing) after that many failed calls of one event; 0 retries forever.
    start
        Where a group with no committed offset starts: ``earliest`` (no drift event is missed) or ``latest``.
    require_approval
        Hold every triggering event until a decision on the approvals topic says approve (call the hook) or
        reject (commit past it); see ``retrain/approvals.py``.
    approvals_topic
        The approvals topic; default ``settings.topics.approvals``.
    approval_timeout_s
        Wall-clock seconds after an event was published (its record's Kafka timestamp) after which the
        listener decides ``on_timeout`` itself, and records it; None waits for ever.
    on_timeout
        ``approve`` or ``reject``.
    max_held
        Undecided events held per partition; one more pauses the partition until one is decided.
    """

    def __init__(
        self,
        settings: Settings,
        hook: Hook,
        *,
        group_id: str = DEFAULT_GROUP,
        actions: Iterable[str] = ("retrain",),
        debounce_s: float = 3600.0,
        remember: int = 100_000,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        max_attempts: int = 0,
        start: str = "earliest",
        require_approval: bool = False,
        approvals_topic: str | None = None,
        approval_timeout_s: float | None = None,
        on_timeout: str = REJECT,
        max_held: int = MAX_HELD,
    ):
        self.settings = settings
        self.hook = hook
        self.group_id = group_id
        self.actions = frozenset(actions)
        self.debounce_s = debounce_s
        self.remember = remember
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.start = start
        self.require_approval = require_approval
        self.approval_timeout_s = approval_timeout_s
        self.on_timeout = on_timeout
        self.max_held = max_held
        if on_timeout not in DECIDED:
            raise StreamdriftError(f"--on-timeout is approve or reject, not {on_timeout!r}")
        self.decisions = Decisions()
        self.approvals = DecisionLog(settings, approvals_topic or settings.topics.approvals, self.decisions)
        self.topic = settings.topics.alerts
        self.partitions: dict[int, _Partition] = {}
        self.counts = Counts()
        self.stopping = False
        self.consumer: Consumer | None = None

    def stop(self) -> None:
        """Ask ``run`` to return after the record in hand (thread-safe, signal-safe)."""
        self.stopping = True

    def run(self) -> int:
        """Consume until ``stop()``, SIGTERM or SIGINT; return 0. Raises ``HookError`` after ``max_attempts``."""
        # A hook call blocks the poll loop: the group must not think the member died meanwhile.
        poll_interval_s = max(300.0, getattr(self.hook, "timeout_s", 0.0) + 60.0)
        self.consumer = Consumer(
            kafka.consumer_config(
                self.settings,
                **{
                    "group.id": self.group_id,
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": self.start,
                    "max.poll.interval.ms": int(poll_interval_s * 1000),
                    "logger": logging.getLogger("streamdrift.retrain.kafka"),
                },
            )
        )  # librdkafka's lines as JSON too
        if self.require_approval:
            self.approvals.open()  # every decision made so far is known before any event is read
        previous = self._install_signal_handlers()
        log.info(
            "retrain listener started",
            extra={
                "fields": {
                    "topic": self.topic,
                    "group": self.group_id,
                    "hook": str(self.hook),
                    "actions": sorted(self.actions),
                    "debounce_s": self.debounce_s,
                    "require_approval": self.require_approval,
                    **(
                        {
                            "approvals_topic": self.approvals.topic,
                            "decisions_known": len(self.decisions),
                            "approval_timeout_s": self.approval_timeout_s,
                            "on_timeout": self.on_timeout,
                        }
                        if self.require_approval
                        else {}
                    ),
                    "settings": self.settings.redacted(),
                }
            },
        )
        self.consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self.stopping:
                self._resume_due()
                for msg in self.consumer.consume(100, self._poll_timeout()):
                    if self.stopping:
                        break  # the rest is read again from the committed offsets
                    self._handle(msg)
                if self.require_approval and not self.stopping:
                    self.approvals.poll()
                    self._decide_held()
                self._commit()
        finally:
            try:
                self._commit()
            finally:
                self.consumer.close()
                self.approvals.close()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                log.info("retrain listener stopped", extra={"fields": vars(self.counts)})
        return 0

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # library use in a thread: the caller calls stop()
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: self.stop())
        return previous

    def _poll_timeout(self) -> float:
        timeout = self.settings.poll_timeout_s
        for state in self.partitions.values():
            if state.retry_at is not None:
                timeout = min(timeout, max(0.0, state.retry_at - time.monotonic()))
            for held in state.holding.held.values():
                if held.retry_at is not None:
                    timeout = min(timeout, max(0.0, held.retry_at - time.monotonic()))
                if self.approval_timeout_s is not None:
                    timeout = min(timeout, max(0.0, held.published_at + self.approval_timeout_s - time.time()))
        return timeout

    # -- rebalance ---------------------------------------------------------

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        assigned = consumer.committed(assigned, timeout=30)  # offsets: where the group stands
        for tp in assigned:
            state = self.partitions[tp.partition] = _Partition(
                AlertFilter(self.actions, self.debounce_s, self.remember), Holding(self.max_held)
            )
            if tp.offset >= 0:
                state.holding.restore(tp.offset, tp.metadata)
            if tp.offset >= 0 and self.remember:
                low, _ = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
                state.replay_until = tp.offset
                tp.offset = max(low, tp.offset - self.remember)
        consumer.assign(assigned)
        log.info(
            "partitions assigned",
            extra={
                "fields": {
                    "topic": self.topic,
                    "partitions": sorted(self.partitions),
                    "read_from": {str(tp.partition): tp.offset for tp in assigned},  # negative: no commit yet, --start
                    "replay_until": {str(p): s.replay_until for p, s in sorted(self.partitions.items())},
                    "handled_to": {
                        str(p): s.holding.done_to for p, s in sorted(self.partitions.items()) if s.holding.done_held
                    },
                }
            },
        )

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self._commit({tp.partition for tp in revoked})
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        self._forget(lost)  # another member owns them now: commit nothing

    def _running(self) -> Consumer:
        """The consumer of ``run``, the only caller of what follows (its loop and rebalance callbacks)."""
        assert self.consumer is not None, "the listener is not running"
        return self.consumer

    def _forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.partitions.pop(tp.partition, None)
        self._running().resume(tps)  # a partition paused for a retry must not stay paused if it comes back
        log.info(
            "partitions revoked",
            extra={"fields": {"topic": self.topic, "partitions": sorted(tp.partition for tp in tps)}},
        )

    # -- one record --------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise StreamdriftError(f"fatal consumer error: {err}")
            log.warning("consumer error", extra={"fields": {"error": str(err)}})
            return
        topic, p, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and p is not None and offset is not None  # a record, not an error: it has all three
        state = self.partitions.get(p)
        if state is None or state.retry_at is not None or state.holding.full:
            return  # revoked, or this partition waits (a retry, or for decisions): it will be read again
        if offset in state.holding.held:
            return  # read again after a rewind: it is held already
        where = {"partition": p, "offset": offset}
        event, reason = parse(msg.value())
        if event is not None and isinstance(self.hook, WebhookHook):
            reason = self.hook.refuses(event)  # decided before any call: retrying would fail the same way
            event = None if reason else event
        verdict = MALFORMED if event is None else state.filter.decide(event)
        if offset < state.replay_until or state.holding.handled_before(offset):
            if event is not None:  # handled by a previous owner: the hook had succeeded, or it was skipped
                state.filter.settle(event, self._decided(event, verdict))
            if offset >= state.replay_until:  # after the commit: the next one's metadata must still cover it
                state.position = offset + 1
            self.counts.replayed += 1
            return
        ids = {} if event is None else {"model_id": event["model_id"], "alert_id": event["alert_id"]}
        if verdict == TRIGGER and event is not None and self.require_approval:
            verdict = state.holding.admit(event, offset, _published_at(msg), self.decisions.get(event["alert_id"]))
            if verdict == WAIT:
                self._wait_for_decisions(state, TopicPartition(topic, p, offset), ids)
                return
        if (
            verdict == TRIGGER
            and event is not None
            and not self._call(state, event, TopicPartition(topic, p, offset), {**ids, **where})
        ):
            return
        if event is not None:
            state.filter.settle(event, verdict)
        state.position, state.dirty = offset + 1, True
        self._count(verdict, state, event, reason, {**ids, **where})
        if verdict == TRIGGER:
            self._commit()

    def _decided(self, event: DriftEvent, verdict: str) -> str:
        """With --require-approval, what the decision read so far makes of a triggering event."""
        if verdict != TRIGGER or not self.require_approval:
            return verdict
        return approval_verdict(self.decisions.get(event["alert_id"]))

    def _wait_for_decisions(self, state: _Partition, record: TopicPartition, ids: dict[str, Any]) -> None:
        """Pause the partition, rewound to the event ``Holding`` refused: it is read again once one is decided."""
        self._running().pause([record])
        self._running().seek(record)
        log.warning(
            "approval: too many events waiting, partition paused until one is decided",
            extra={"fields": {**ids, "partition": record.partition, "held": len(state.holding.held)}},
        )

    def _decide_held(self) -> None:
        """Act on the held events that have a decision (or whose approval timeout passed), oldest first."""
        for p, state in list(self.partitions.items()):
            waiting = state.holding.full
            for held, decided in state.holding.due(self.decisions.get, time.time(), self.approval_timeout_s):
                if held.retry_at is not None and time.monotonic() < held.retry_at:
                    continue  # approved, and its hook call failed: retried later
                event = held.event
                decision = decided or self._time_out(event)
                fields = {
                    "model_id": event["model_id"],
                    "alert_id": event["alert_id"],
                    "partition": p,
                    "offset": held.offset,
                }
                if decision["decision"] == APPROVE and not self._call_held(held, fields):
                    continue
                state.holding.release(held.offset)
                verdict = approval_verdict(decision)
                state.filter.settle(event, verdict)
                state.dirty = True
                self._count(verdict, state, event, "", fields, decision)
                if verdict == TRIGGER:
                    self._commit()
            if waiting and not state.holding.full:
                self._running().resume([TopicPartition(self.topic, p)])

    def _time_out(self, event: DriftEvent) -> dict[str, Any]:
        """Decide ``on_timeout`` for an event nobody decided on in time, and record it as any decision."""
        assert self.approval_timeout_s is not None, "called only once the approval timeout passed"
        record = timeout_decision(event, self.on_timeout, self.approval_timeout_s, rfc3339(time.time()))
        self.approvals.poll()  # the latest word first: somebody may just have decided
        if self.decisions.get(event["alert_id"]) is not None:
            return self.decisions.get(event["alert_id"])  # type: ignore[return-value]
        self.approvals.write(record)  # before acting: a restart finds the decision the listener acted on
        if not self.decisions.add(record):  # a person decided meanwhile, and it was read first
            return self.decisions.get(event["alert_id"]) or record
        self.counts.timed_out += 1
        return record

    def _call_held(self, held: Held, fields: dict[str, Any]) -> bool:
        """One hook call for an approved held event; on failure, retry it later (the partition flows on)."""
        held.attempts += 1
        error = self._invoke(held.event, held.attempts, fields)
        if error is None:
            return True
        delay = backoff_s(held.attempts, self.backoff_base_s, self.backoff_max_s)
        log.warning(
            "hook failed: will retry",
            extra={"fields": {**fields, "attempt": held.attempts, "retry_in_s": delay, "error": error}},
        )
        held.retry_at = time.monotonic() + delay
        return False

    def _invoke(self, event: DriftEvent, attempt: int, fields: dict[str, Any]) -> str | None:
        """Call the hook: None on success, else the error (``HookError`` raised after ``max_attempts``)."""
        try:
            if isinstance(self.hook, (CommandHook, WebhookHook)):
                self.hook(event, attempt)
            else:
                self.hook(event)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is a failed call, retried
            self.counts.hook_failures += 1
            if self.max_attempts and attempt >= self.max_attempts:
                log.error(
                    "hook failed: giving up, nothing committed",
                    extra={"fields": {**fields, "attempt": attempt, "error": str(exc)}},
                )
                raise HookError(
                    f"{self.hook} failed {attempt} times for alert {event['alert_id']} of "
                    f"model {event['model_id']}: {exc}. The event is not committed: the next "
                    f"start retries it (--max-attempts 0 retries forever)."
                ) from None
            return str(exc)
        return None

    def _call(self, state: _Partition, event: DriftEvent, record: TopicPartition, fields: dict[str, Any]) -> bool:
        """One hook call for the record at ``record``; on failure, pause the partition and rewind it to the record."""
        if state.failed_offset != record.offset:
            state.failed_offset, state.attempts = record.offset, 0
        state.attempts += 1
        error = self._invoke(event, state.attempts, fields)
        if error is not None:
            delay = backoff_s(state.attempts, self.backoff_base_s, self.backoff_max_s)
            log.warning(
                "hook failed: will retry",
                extra={"fields": {**fields, "attempt": state.attempts, "retry_in_s": delay, "error": error}},
            )
            self._running().pause([record])
            self._running().seek(record)  # drops what was fetched after it: read again once resumed
            state.retry_at = time.monotonic() + delay
            return False
        state.failed_offset, state.attempts = None, 0
        return True

    def _count(
        self,
        verdict: str,
        state: _Partition,
        event: DriftEvent | None,
        reason: str,
        fields: dict[str, Any],
        decision: dict[str, Any] | None = None,
    ) -> None:
        if decision is None and event is not None and self.require_approval:
            decision = self.decisions.get(event["alert_id"]) if verdict in (TRIGGER, REJECTED) else None
        decided = {} if decision is None else {"decision": decision["decision"], "decided_by": decision["by"]}
        if verdict == MALFORMED or event is None:  # a malformed record is the only one without an event
            self.counts.malformed += 1
            log.warning("not a drift event: skipped", extra={"fields": {**fields, "reason": reason}})
        elif verdict == TRIGGER:
            self.counts.triggered += 1
            self.counts.approved += bool(decided)
            log.info(
                "hook succeeded",
                extra={"fields": {**fields, **decided, "kind": event.get("kind"), "hook": str(self.hook)}},
            )
        elif verdict == HELD:
            self.counts.held += 1
            log.info("waiting for approval", extra={"fields": {**fields, "kind": event.get("kind")}})
        elif verdict == REJECTED:
            self.counts.rejected += 1
            log.info("rejected: skipped", extra={"fields": {**fields, **decided}})
        elif verdict == DEBOUNCED:
            self.counts.debounced += 1
            log.info(
                "debounced",
                extra={
                    "fields": {
                        **fields,
                        "since_last_call_s": state.filter.since_fired(event),
                        "debounce_s": self.debounce_s,
                    }
                },
            )
        elif verdict == DUPLICATE:
            self.counts.duplicate += 1
            log.info("duplicate alert_id: skipped", extra={"fields": fields})
        elif verdict == IGNORED:
            self.counts.ignored += 1
            log.debug("action not chosen: skipped", extra={"fields": {**fields, "action": event["action"]}})

    def _resume_due(self) -> None:
        now = time.monotonic()
        for p, state in self.partitions.items():
            if state.retry_at is not None and state.retry_at <= now:
                state.retry_at = None
                self._running().resume([TopicPartition(self.topic, p)])

    def _commit(self, partitions: set[int] | None = None) -> None:
        """Commit each partition's progress: up to its first held event, with what was handled beyond it
        in the metadata (``holding.commit_point``)."""
        offsets = []
        for p, s in sorted(self.partitions.items()):
            if s.dirty and s.position is not None and (partitions is None or p in partitions):
                offset, metadata = s.holding.commit_point(s.position)
                offsets.append(TopicPartition(self.topic, p, offset, metadata=metadata))
        if not offsets:
            return
        try:
            self._running().commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance under way: kept pending, or the new owner re-reads
            log.warning(
                "commit failed",
                extra={"fields": {"error": str(exc), "offsets": {str(tp.partition): tp.offset for tp in offsets}}},
            )
            return
        for tp in offsets:
            self.partitions[tp.partition].dirty = False


def _published_at(msg: Message) -> float:
    """The record's Kafka timestamp in epoch seconds, where an approval timeout counts from (now without one)."""
    kind, ms = msg.timestamp()
    return ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE else time.time()


# -- command line ----------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    doc = "Call a command or webhook for drift events: deduplicated, debounced per model, retried, never lost."
    p = subparsers.add_parser("retrain-listener", help=doc, description=doc, parents=[common])
    hook = p.add_mutually_exclusive_group(required=True)
    hook.add_argument(
        "--command",
        dest="hook_command",
        metavar="CMD",  # dest: `command` names the subcommand
        help="run CMD with the drift event JSON on stdin; exit 0 = success",
    )
    hook.add_argument("--webhook", metavar="URL", help="POST the drift event JSON here; 2xx = success")
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group (default {DEFAULT_GROUP})")
    p.add_argument(
        "--actions",
        default="retrain",
        type=_actions,
        help="comma-separated actions that trigger the hook (default retrain)",
    )
    p.add_argument(
        "--debounce-s",
        type=_non_negative,
        default=3600.0,
        help="event-time seconds after a hook call during which the model's events are skipped",
    )
    p.add_argument(
        "--remember",
        type=int,
        default=100_000,
        help="alert ids remembered per partition to drop duplicates (default 100000)",
    )
    p.add_argument("--backoff-base-s", type=_non_negative, default=1.0, help="first retry delay (doubles)")
    p.add_argument("--backoff-max-s", type=_non_negative, default=300.0, help="longest retry delay")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=0,
        help="give up (exit 2, nothing committed) after this many failed calls; 0 = never",
    )
    p.add_argument(
        "--timeout-s",
        type=_positive,
        default=120.0,
        help="hook timeout (default 120): the command is killed, the request dropped; counts as a failure",
    )
    p.add_argument(
        "--pass-env",
        type=_names,
        default=(),
        metavar="NAME,...",
        help="environment variables the --command hook gets besides STREAMDRIFT_HOOK_*, PATH, HOME, LANG... "
        "(never the rest of the listener's environment: its Kafka credentials stay its own)",
    )
    p.add_argument(
        "--start",
        choices=["earliest", "latest"],
        default="earliest",
        help="where a new group starts reading (default earliest: no drift event missed)",
    )
    approval = p.add_argument_group("human approval")
    approval.add_argument(
        "--require-approval",
        action="store_true",
        help="hold each triggering event until `streamdrift approve` (hook called) or `reject` (skipped) decides",
    )
    approval.add_argument(
        "--approvers-topic",
        metavar="TOPIC",
        help="the decisions' compacted topic (default topics.approvals, streamdrift.approvals)",
    )
    approval.add_argument(
        "--approval-timeout-s",
        type=_positive,
        help="wall-clock seconds after an event's publication after which --on-timeout decides (default: wait)",
    )
    approval.add_argument(
        "--on-timeout",
        choices=[APPROVE, REJECT],
        default=REJECT,
        help="the decision recorded for an event nobody decided on in time (default reject)",
    )
    return p


def run(settings: Settings, args: argparse.Namespace) -> int:
    if (args.approval_timeout_s is not None or args.approvers_topic) and not args.require_approval:
        raise StreamdriftError("--approval-timeout-s and --approvers-topic need --require-approval")
    hook: Hook = (
        CommandHook(args.hook_command, args.timeout_s, args.pass_env)
        if args.hook_command
        else WebhookHook(args.webhook, args.timeout_s)
    )
    return RetrainListener(
        settings,
        hook,
        group_id=args.group,
        actions=args.actions,
        debounce_s=args.debounce_s,
        remember=args.remember,
        backoff_base_s=args.backoff_base_s,
        backoff_max_s=args.backoff_max_s,
        max_attempts=args.max_attempts,
        start=args.start,
        require_approval=args.require_approval,
        approvals_topic=args.approvers_topic,
        approval_timeout_s=args.approval_timeout_s,
        on_timeout=args.on_timeout,
    ).run()


def _actions(value: str) -> frozenset[str]:
    actions = frozenset(a.strip() for a in value.split(",") if a.strip())
    unknown = actions - {"retrain", "investigate", "rollback", "none"}
    if not actions or unknown:
        raise argparse.ArgumentTypeError(f"actions are retrain, investigate, rollback, none; got {value!r}")
    return actions


def _names(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if bad:
        raise argparse.ArgumentTypeError(f"not environment variable names: {', '.join(bad)}")
    return names


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return number
