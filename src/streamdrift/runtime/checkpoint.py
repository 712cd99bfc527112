"""Checkpoint storage on this host: snapshot files and the forked writer.

``LocalSnapshotStore.save`` writes atomically: a temporary file in the same
directory, fsync, rename over the old snapshot, fsync of the directory.
``ForkedWrite`` runs the capture, encoding and writing in a forked copy of
the process, as Redis's BGSAVE does: the copy sees the state frozen at the
fork, copy-on-write, so the caller pauses only for the fork itself.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from streamdrift.core import state
from streamdrift.core.errors import ConfigError, SnapshotError
from streamdrift.core.state import Snapshot


class LocalSnapshotStore:
    """One snapshot file per input partition in a local directory.

    Parameters
    ----------
    directory
        Where the files live; created by the first save.
    config
        What files are written under and checked against: a ``state.Seal`` (settings, cluster, group
        and topics, ``snapshot_key``), or a bare hash of the detection settings.

    Files are ``0600``: they hold model ids, feature names and segment values.
    """

    def __init__(self, directory: Path, config: str | state.Seal):
        self.directory = Path(directory)
        self.config = config

    def path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.snapshot"

    def load(self, partition: int) -> Snapshot | None:
        path = self.path(partition)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        snapshot = state.decode(data, self.config, str(path))
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
    """

    def __init__(self, write: Callable[[], int]):
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

    def wait(self) -> int:
        """Block until the child is done (safe in a thread: the reads and ``waitpid`` release the GIL).

        Returns the bytes written; raises ``SnapshotError`` with the child's reason if it failed.
        """
        with open(self._report, "rb") as f:
            raw = f.read()
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            report = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            report = {}
        if code == 0 and "bytes" in report:
            self.private_bytes = report["private_bytes"]
            return report["bytes"]
        reason = report.get("error") or (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
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


def _private_bytes() -> int:
    """This process's private resident memory, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    except OSError:
        return 0
