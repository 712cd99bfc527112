"""Checkpoint storage on this host: snapshot files and the forked writer.

``LocalSnapshotStore.save`` writes atomically: a temporary file in the same
directory, fsync, rename over the old snapshot, fsync of the directory.
``ForkedWrite`` runs the capture, encoding and writing in a forked copy of
the process, as Redis's BGSAVE does: the copy sees the state frozen at the
fork, copy-on-write, so the caller pauses only for the fork itself.
``ForkedPack`` does the same for a checkpoint to the state topic: the copy
packs the records and streams them back to the caller, whose producer writes
them, then writes the local cache once the caller says where they landed.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from streamdrift.core import state
from streamdrift.core.errors import ConfigError, SnapshotError
from streamdrift.core.state import Snapshot
from streamdrift.runtime import statecache


class LocalSnapshotStore:
    """One snapshot file per input partition in a local directory.

    Parameters
    ----------
    directory
        Where the files live; created by the first save.
    config
        What files are written under and checked against: a ``state.Seal`` (settings, cluster, group
        and topics, ``snapshot_key``), or a bare hash of the detection settings.

    recover
        ``source -> text``: how to recover from a file that cannot be loaded, the end of its refusal. By
        default: move it away (the file is the only state there is); the state topic's cache says that the
        worker rebuilds the partition from the topic instead (``rebuilt_from_the_topic``).

    Files are ``0600``: they hold model ids, feature names and segment values.
    """

    def __init__(
        self, directory: Path, config: str | state.Seal, recover: Callable[[str], str] = state.recover_by_moving
    ):
        self.directory = Path(directory)
        self.config = config
        self.recover = recover

    def path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.snapshot"

    def load(self, partition: int) -> Snapshot | None:
        path = self.path(partition)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        source = str(path)
        recover = self.recover(source)
        tree = state.decode_tree(data, self.config, source, recover)
        if statecache.is_cache(tree):  # the state topic's cache: its models kept as the topic's values
            snapshot = statecache.snapshot_of(tree, self.config, source, recover)
        else:
            snapshot = state.snapshot_of(tree, source, recover)
        if snapshot.partition != partition:
            raise SnapshotError(
                f"{path} holds partition {snapshot.partition}, not {partition}; "
                "was the file renamed? Move it away and restart."
            )
        return snapshot

    def check_writable(self) -> None:
        """Create the directory and write a file in it, or raise ``ConfigError`` naming the setting: a worker
        that could never checkpoint stops at start rather than failing every checkpoint."""
        probe = self.directory / ".streamdrift-write-check"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"snapshot_dir {self.directory} cannot be written ({exc.strerror or exc}); set snapshot_dir "
                "(env STREAMDRIFT_SNAPSHOT_DIR) to a directory this user can write, with room for the snapshots"
            ) from None

    def clean_temp(self) -> list[Path]:
        """Remove the temporary files a writer killed mid-write left behind; return them."""
        left = [tmp for tmp in sorted(self.directory.glob("partition-*.tmp")) if tmp.is_file()]
        for tmp in left:
            _remove_file(tmp)
        return left

    def remove(self, partition: int) -> None:
        """Remove the snapshot file of ``partition``, if there is one."""
        _remove_file(self.path(partition))

    def save(self, snapshot: Snapshot) -> int:
        """Write atomically; return the number of bytes written."""
        return self.write(*self.prepare(snapshot))

    def prepare(self, snapshot: Snapshot) -> tuple[int, list, str]:
        """The encoded body: everything ``write`` needs, no longer tied to the live state."""
        return snapshot.partition, *state.body(snapshot)

    def write(self, partition: int, body: list, marker: str) -> int:
        """Checksum and write ``prepare``'s body atomically (safe in another thread: zlib and the file
        writes let the consume loop run); return the bytes written."""
        pieces = state.file_pieces(body, marker, self.config)
        self.directory.mkdir(parents=True, exist_ok=True)  # here, not on open: readers never create it
        path = self.path(partition)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb", buffering=1 << 20, opener=_owner_only) as f:
                f.writelines(pieces)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            _remove_file(tmp)  # a full disk must not also keep a half-written file
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return sum(memoryview(p).nbytes for p in pieces)


def rebuilt_from_the_topic(source: str) -> str:
    """The recovery from a state-topic cache that cannot be loaded: none needed (``LocalSnapshotStore``'s recover)."""
    return f"The worker rebuilds the partition from the state topic; its next checkpoint writes {source} anew."


def _remove_file(path: Path) -> None:
    """Remove ``path`` if it is a file (never a directory someone put there)."""
    try:
        if path.is_file():
            path.unlink()
    except OSError:
        pass


def _owner_only(path: str, flags: int) -> int:
    """Open for ``open(opener=)``, readable by the owner only, a file left by an older version too."""
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# -- writing from a forked copy -------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


# How long a forked child may take over one step before it is killed and its checkpoint (or cache) fails: a
# packer from the fork to its last piece, a snapshot writer from the fork to its report, a packer from the
# parent's word to its cache written. Nothing else times them out: a child stopped (SIGSTOP, a stalled disk,
# swapped out) would hold every later checkpoint back, and with them the offsets' commits. 300 s is about 75
# times the slowest whole checkpoint measured (10,000 models with the local store, offsets committed after
# 3.98 s in `make bench`), with room for a pump slowed by a full producer queue; a healthy child never meets it.
PACK_DEADLINE_S = 300.0


class _Deadline:
    """Kills a forked child that is still at a step ``seconds`` after the step began (SIGKILL: a stopped
    process dies of it too). ``arm`` starts a step's clock, ``disarm`` stops it (the step is done, or the
    child now only waits on its parent), ``reaped`` stops it for good: a timer that fires late never signals
    a pid that was reaped (by then maybe another process's). ``expired`` names the step it killed in."""

    def __init__(self, pid: int):
        self.pid = pid
        self.expired: str | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._step = 0  # bumped by every arm: a timer of an earlier step that fires late does nothing
        self._reaped = False

    def arm(self, seconds: float, step: str) -> None:
        with self._lock:
            if self._reaped:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._step += 1
            timer = self._timer = threading.Timer(seconds, self._expire, (self._step, step))
            timer.daemon = True
            timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def reaped(self) -> bool:
        """Mark the child reaped; False if it was already."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            first, self._reaped = not self._reaped, True
            return first

    def kill(self) -> None:
        """Kill the child now, unless it was reaped."""
        with self._lock:
            if not self._reaped:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _expire(self, armed: int, step: str) -> None:
        with self._lock:
            if self._reaped or self._timer is None or armed != self._step:
                return  # disarmed, reaped or re-armed since this timer was started
            self.expired = step
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class ForkedWrite:
    """``write()`` run in a forked child: a copy-on-write image of this process at the fork.

    The child calls ``write`` (capture, encode, write, fsync: whatever it
    does with the state as it was at the fork), reports on a pipe and exits;
    the parent goes on at once and mutates its own pages. Only the fork itself
    (about 15 ms for 800 MiB resident) holds the parent up, whatever the size
    of the state. The child never returns into the caller's code: it runs no
    finalizers and flushes no buffers of the parent (``os._exit``), touches
    no Kafka client, keeps the cyclic garbage collector off (walking the heap
    would copy all of it) and dies with its parent, so a writer can never
    outlive a crashed worker and rename an old snapshot over a newer one.
    The cost is memory: every page either process writes while the child
    lives is copied, and reading a Python object writes its reference count,
    so the child may end up with a copy of most of the heap it reads.

    Parameters
    ----------
    write
        Runs in the child; returns the number of bytes written.
    deadline_s
        A child that has not reported this long after the fork is killed (SIGKILL): ``wait`` then fails,
        naming the deadline.
    """

    def __init__(self, write: Callable[[], int], deadline_s: float = PACK_DEADLINE_S):
        parent = os.getpid()
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()  # OSError where there is no memory to map a copy: the caller decides
        except OSError:
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:
            os.close(read_end)
            _child(write, write_end, parent)  # never returns
        os.close(write_end)
        self.pid = pid
        self._report = read_end
        self.private_bytes = 0  # memory the child had of its own at the end (pages copied or allocated)
        self.deadline_s = deadline_s
        self.deadline = _Deadline(pid)
        self.deadline.arm(deadline_s, "write")

    def wait(self) -> int:
        """Block until the child is done (safe in a thread: the reads and ``waitpid`` release the GIL).

        Returns the bytes written; raises ``SnapshotError`` with the child's reason if it failed.
        """
        with open(self._report, "rb") as f:
            raw = f.read()
        self.deadline.disarm()  # the report is in, or the child is gone: nothing left to wait for but the reaping
        _, status = os.waitpid(self.pid, 0)
        self.deadline.reaped()
        code = os.waitstatus_to_exitcode(status)
        try:
            report = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            report = {}
        if code == 0 and "bytes" in report:
            self.private_bytes = report["private_bytes"]
            return report["bytes"]
        reason = report.get("error") or (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        if self.deadline.expired:
            reason = f"not written within the deadline of {self.deadline_s:g} s (PACK_DEADLINE_S): killed"
        raise SnapshotError(
            f"writing the snapshot failed (writer process {self.pid}): {reason}. "
            "Nothing of this checkpoint is committed; check the snapshot directory."
        )


def _child(write: Callable[[], int], report: int, parent: int) -> None:
    code = 1
    try:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        gc.disable()
        out: dict[str, int | str] = {"bytes": write(), "private_bytes": _private_bytes()}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a reason
        out = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(report, orjson.dumps(out))
    finally:
        os._exit(code)


class ForkedPack:
    """``pack(send)`` run in a forked child that hands every piece it packs back to the parent as it goes;
    then, once the parent has used them, ``finish(word)`` with the parent's word.

    For a checkpoint to the state topic (``Worker``): the child captures, encodes and compresses the
    changed models' records, the expensive part, and the parent's producer writes them while its
    consume loop goes on; once they are acknowledged, the parent tells the child which partitions
    were committed at which state-topic offsets, and the child writes those partitions' local cache
    from the same image. The child keeps ``ForkedWrite``'s discipline: no Kafka client, no return
    into the caller's code, the garbage collector off, death with its parent.

    Parameters
    ----------
    pack
        Runs in the child; calls its argument, ``send``, with each piece (bytes) in order.
    finish
        Runs in the child once ``finish`` is called in the parent, with its word; returns the bytes
        written. An empty word: nothing to write (the checkpoint was not committed).
    deadline_s
        A child that has not packed everything this long after the fork is killed (SIGKILL): a reader of
        ``pieces`` then sees it fail, naming the deadline. The same for the cache: a child that has not
        written it this long after the word, ``finish`` then fails.
    """

    def __init__(
        self,
        pack: Callable[[Callable[[bytes], None]], None],
        finish: Callable[[bytes], int],
        deadline_s: float = PACK_DEADLINE_S,
    ):
        parent = os.getpid()
        pieces_read, pieces_write = os.pipe()
        word_read, word_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (pieces_read, pieces_write, word_read, word_write):
                os.close(fd)
            raise
        if pid == 0:
            os.close(pieces_read)
            os.close(word_write)
            _packing_child(pack, finish, pieces_write, word_read, parent)  # never returns
        os.close(pieces_write)
        os.close(word_read)
        self.pid = pid
        self._pieces = open(pieces_read, "rb", buffering=1 << 20)
        self._word: int | None = word_write
        self.private_bytes = 0  # memory the child had of its own at the end (pages copied or allocated)
        self.deadline_s = deadline_s
        self.deadline = _Deadline(pid)
        self.deadline.arm(deadline_s, "pack")

    def pieces(self) -> Iterator[bytes]:
        """What the child sends, in order, until it has packed everything (safe in a thread: reads release
        the GIL). Raises ``SnapshotError`` with the child's reason if it fails or dies before the end."""
        while True:
            head = self._pieces.read(_HEAD.size)
            kind, size = _HEAD.unpack(head) if len(head) == _HEAD.size else (b"", 0)
            body = self._pieces.read(size)
            if kind == _PIECE and len(body) == size:
                yield body
            elif kind == _PACKED:
                self.deadline.disarm()  # the child now waits for the word, as long as the parent takes
                return
            else:
                raise self._failed(body.decode(errors="replace") if kind == _FAILED else "")

    def finish(self, word: bytes) -> int:
        """Give the child its word (after ``pieces`` ended), wait for its ``finish``: the bytes it wrote
        (safe in a thread). Raises ``SnapshotError`` with its reason if it failed."""
        if word:
            self.deadline.arm(self.deadline_s, "cache")
        self._say(word)
        raw = self._pieces.read()
        self._reap()
        try:
            report = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            report = {}
        if "bytes" in report:
            self.private_bytes = report["private_bytes"]
            return int(report["bytes"])
        raise self._failed(report.get("error", ""))

    @property
    def expired(self) -> str | None:
        """The step the child was killed in for missing its deadline (``pack`` or ``cache``), if it was."""
        return self.deadline.expired

    def kill(self) -> None:
        """Stop the child wherever it is: a reader of ``pieces`` then sees it fail."""
        self.deadline.kill()

    def cancel(self) -> None:
        """Stop the child and reap it (a checkpoint given up; not while another thread reads ``pieces``)."""
        self.kill()
        self._reap()

    def _say(self, word: bytes) -> None:
        if self._word is None:
            return
        fd, self._word = self._word, None
        try:
            view = memoryview(word)
            while view:
                view = view[os.write(fd, view) :]
        except BrokenPipeError:
            pass  # the child is gone: finish reports why
        finally:
            os.close(fd)

    def _reap(self) -> int:
        if not self.deadline.reaped():
            return 0
        self._say(b"")
        _, status = os.waitpid(self.pid, 0)
        self._pieces.close()
        return os.waitstatus_to_exitcode(status)

    def _failed(self, reason: str) -> SnapshotError:
        code = self._reap()
        if self.expired == "pack":
            reason = f"not packed within the packing deadline of {self.deadline_s:g} s (PACK_DEADLINE_S): killed"
        elif self.expired == "cache":
            reason = (
                f"the local cache not written within the deadline of {self.deadline_s:g} s (PACK_DEADLINE_S) "
                "after the checkpoint committed: killed"
            )
        elif not reason:
            reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return SnapshotError(f"packing the checkpoint failed (packer process {self.pid}): {reason}")


_HEAD = struct.Struct(">cI")  # a piece's kind and length
_PIECE, _PACKED, _FAILED = b"P", b"E", b"X"


def _packing_child(
    pack: Callable[[Callable[[bytes], None]], None],
    finish: Callable[[bytes], int],
    pieces: int,
    word: int,
    parent: int,
) -> None:
    code = 1
    out = os.fdopen(pieces, "wb", buffering=1 << 20)
    packed = False
    try:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        gc.disable()

        def send(piece: bytes) -> None:
            out.write(_HEAD.pack(_PIECE, len(piece)))
            out.write(piece)

        pack(send)
        out.write(_HEAD.pack(_PACKED, 0))
        out.flush()
        packed = True
        chunks = []
        while chunk := os.read(word, 1 << 16):
            chunks.append(chunk)
        said = b"".join(chunks)
        report: dict[str, int | str] = {"bytes": finish(said) if said else 0, "private_bytes": _private_bytes()}
        out.write(orjson.dumps(report))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a reason
        reason = f"{type(exc).__name__}: {exc}"
        try:
            if packed:
                out.write(orjson.dumps({"error": reason}))
            else:
                encoded = reason.encode()
                out.write(_HEAD.pack(_FAILED, len(encoded)))
                out.write(encoded)
        except BaseException:  # noqa: BLE001 - the parent is gone or stopped reading: nothing to tell
            pass
    try:
        out.flush()
    except BaseException:  # noqa: BLE001
        pass
    finally:
        os._exit(code)


def _private_bytes() -> int:
    """This process's private resident memory, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    except OSError:
        return 0
