"""Rate-limit counters shared by the worker processes of one host, with no Redis.

``serve --workers N`` without ``ENGINE_REDIS_URL``: the parent makes one file
(:func:`shared_file`), every worker maps it, and a call counts against the same
counter whichever worker answers it, so a row's ``rate_limit_per_minute`` holds for
the whole server, not per worker.

The file is a fixed table of :data:`SLOTS` slots of 32 bytes (2 MiB), each a caller's
sliding-window counter: the key's digest, the minute it counts, the calls of that
minute and of the one before. A call is allowed when ``previous x (the share of the
minute still to run) + current`` stays under the limit: the moving window's answer
without keeping every call's time, the algorithm Redis-backed limiters use as well.
Slots are found by open addressing (at most :data:`PROBES` looked at); a slot whose
minute is two or more behind is free again, and a table with no free slot among the
probes gives up the least recent of them (that caller starts again from zero: it
errs towards letting calls through, as a counter outage does).

Each change holds an exclusive ``flock`` on the file for a few microseconds, never
across an ``await``; the lock is the file's, so a worker that dies holding it
releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import mmap
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

WINDOW_S = 60
SLOTS = 1 << 16
PROBES = 64
_SLOT = struct.Struct("<16sqii")  # digest, minute (0: never used), current, previous
SIZE = SLOTS * _SLOT.size
FILE_NAME = "rate-limits"


@dataclass(frozen=True)
class Counted:
    """One call's outcome: allowed or not, calls left, seconds until the next one is let in
    (allowed: until the minute ends)."""

    allowed: bool
    remaining: int
    reset_s: int


def _retry_in(limit: int, current: int, previous: int, elapsed: float) -> float:
    """Seconds until one more call fits: while this minute runs, the previous minute's
    weight falls; past it, this minute's calls become the previous ones and fall too."""
    room = limit - 1 - current  # what the previous minute's weighted calls may still be
    if room >= 0 and previous > 0:
        at = WINDOW_S * (1 - room / previous)  # the moment in this minute they weigh `room`
        if at < WINDOW_S:
            return max(0.0, at - elapsed)
    if current == 0:
        return 0.0
    later = WINDOW_S * (1 - (limit - 1) / current) if current > limit - 1 else 0.0
    return (WINDOW_S - elapsed) + max(0.0, later)


def count(
    limit: int, minute: int, current: int, previous: int, now: float
) -> tuple[Counted, int, int]:
    """A call at ``now`` against a counter last used in ``minute``: the outcome and the
    counter's new (current, previous). Pure: the table only stores what it returns."""
    this = int(now // WINDOW_S)
    if minute != this:
        previous = current if minute == this - 1 else 0
        current = 0
    elapsed = now - this * WINDOW_S
    weighted = previous * (1 - elapsed / WINDOW_S) + current
    if weighted + 1 > limit:
        wait = _retry_in(limit, current, previous, elapsed)
        return Counted(False, 0, max(1, math.ceil(wait - 1e-9))), current, previous
    current += 1
    remaining = max(0, math.floor(limit - weighted - 1))
    reset = max(1, math.ceil(WINDOW_S - elapsed - 1e-9))  # 1e-9: float dust is no second
    return Counted(True, remaining, reset), current, previous


class SharedCounters:
    """The table in the file at ``path`` (made by :func:`shared_file`), opened on first use
    in each process; ``clock`` is the wall clock (a test's own)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._fd: int | None = None
        self._map: mmap.mmap | None = None

    def _open(self) -> tuple[int, mmap.mmap]:
        fd = os.open(self.path, os.O_RDWR)
        table = mmap.mmap(fd, SIZE)
        self._fd, self._map = fd, table
        return fd, table

    def hit(self, key: str, limit: int) -> Counted:
        """Count one call of ``key`` against ``limit`` calls a minute."""
        fd, table = (self._fd, self._map) if self._map is not None else self._open()
        assert fd is not None
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % SLOTS
        now = self._clock()
        this = int(now // WINDOW_S)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            slot, minute, current, previous = self._find(table, digest, start, this)
            counted, current, previous = count(limit, minute, current, previous, now)
            _SLOT.pack_into(table, slot * _SLOT.size, digest, this, current, previous)
            return counted
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _find(table: mmap.mmap, digest: bytes, start: int, this: int) -> tuple[int, int, int, int]:
        """The key's slot and what it holds; else a free one (or the least recent probed)."""
        free = None
        oldest, oldest_minute = start, None
        for step in range(PROBES):
            slot = (start + step) % SLOTS
            held, minute, current, previous = _SLOT.unpack_from(table, slot * _SLOT.size)
            if held == digest:
                return slot, minute, current, previous
            if minute == 0:  # never used: the key is in no later slot either
                return (slot if free is None else free), 0, 0, 0
            if free is None and minute < this - 1:
                free = slot  # stale: reusable, but the key may still be further on
            if oldest_minute is None or minute < oldest_minute:
                oldest, oldest_minute = slot, minute
        return (oldest if free is None else free), 0, 0, 0

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def shared_file() -> Iterator[str]:
    """A fresh table's path for the workers (zeros: every slot unused), removed at the end."""
    folder = tempfile.mkdtemp(prefix="engine-rate-")
    path = os.path.join(folder, FILE_NAME)
    with open(path, "wb") as out:
        out.truncate(SIZE)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
