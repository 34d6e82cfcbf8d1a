"""A free connection of an asyncpg pool taken and given back in asyncpg's own steps, inline.

A request takes one of the pool's free holders and gives it back once answered.
asyncpg does that through ``Queue.get_nowait`` (its LIFO ``_get`` asks each
holder ``is_connected``), ``PoolConnectionHolder.acquire`` (a coroutine, the
proxy's ``__init__`` and ``Connection._set_proxy``), then ``_on_release``,
``_check_listeners`` twice, ``_release``, ``_detach``, ``Queue.put_nowait`` (with
``full``, ``qsize``, ``_put``, ``Event.clear``, ``_wakeup_next``) and
``_setup_inactive_callback``: some twenty Python calls a request (counted with
``sys.setprofile`` on a primary-key read), more than the engine's own flow
spends on routing, binding and shaping together.

:func:`take` and :func:`give_back` do the same state changes for the common
case only: a free holder whose connection is open, of the pool's generation,
with no ``setup`` callback, and given back with no listener on it, no
transaction and nothing to reset. Anything else, and any asyncpg whose holders,
proxies, connections or queue do not have the fields these steps touch
(``INLINE`` is False), takes asyncpg's own path, which engine/database.py calls.

:func:`wait_free` is ``Queue.get``'s wait for a holder when none is free, with its
futures made on the pool's loop: on 3.11 ``Queue.get`` looks the running loop up
for each, and that look-up is a ``getpid`` system call (strace under wrk on a
primary-key read: four a request, as many as the reads and writes together).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from asyncpg import pool as asyncpg_pool

_HOLDER_FIELDS = {
    "_con",
    "_pool",
    "_proxy",
    "_setup",
    "_in_use",
    "_inactive_callback",
    "_max_inactive_time",
    "_max_queries",
    "_timeout",
    "_generation",
}
_PROXY_FIELDS = {"_con", "_holder"}
_CONNECTION_FIELDS = {
    "_aborted",
    "_protocol",
    "_proxy",
    "_pool_release_ctr",
    "_listeners",
    "_log_listeners",
}
_POOL_FIELDS = {"_loop", "_initialized", "_closing", "_closed", "_generation"}
_QUEUE_FIELDS = ("_queue", "_getters", "_putters", "_unfinished_tasks", "_finished")


def _inline_possible() -> bool:
    def slots(cls: type) -> set[str]:
        return {name for c in cls.__mro__ for name in getattr(c, "__slots__", ())}

    queue = asyncio.LifoQueue()  # type: ignore[var-annotated]
    return (
        _HOLDER_FIELDS.issubset(slots(asyncpg_pool.PoolConnectionHolder))
        and _PROXY_FIELDS.issubset(slots(asyncpg_pool.PoolConnectionProxy))
        and _CONNECTION_FIELDS.issubset(slots(asyncpg.Connection))
        and all(hasattr(queue, name) for name in _QUEUE_FIELDS)
        and hasattr(queue._finished, "_value")
        and hasattr(queue, "_wakeup_next")
        and _POOL_FIELDS.issubset(slots(asyncpg_pool.Pool))
    )


INLINE = _inline_possible()
_Proxy = asyncpg_pool.PoolConnectionProxy


def is_open(conn: asyncpg.Connection) -> bool:
    """``not conn.is_closed()`` without its frame."""
    if not INLINE:
        return not conn.is_closed()
    return not conn._aborted and conn._protocol.is_connected()


def connected(pool: asyncpg.Pool, queue: Any) -> bool:
    """Whether the holder the next acquisition takes (asyncpg's queue is LIFO) has an open
    connection of the pool's generation, so acquiring it cannot wait on a connect."""
    try:
        holder = queue._queue[-1]
        conn = holder._con
        return (
            conn is not None
            and not conn._aborted  # is_open's test, without its frame
            and conn._protocol.is_connected()
            and holder._generation == pool._generation
            and not pool._closing
        )
    except (AttributeError, IndexError):  # another asyncpg: take the timed path
        return False


def take(pool: asyncpg.Pool, queue: Any) -> Any:
    """The proxy of the free holder :func:`connected` found, checked out as
    ``queue.get_nowait()`` and ``holder.acquire()`` check it out; None (nothing taken)
    when those steps must run themselves: a setup callback, a waiting putter, a connection
    still proxied, or an asyncpg these steps do not know."""
    if not INLINE or queue._putters:
        return None
    holder = queue._queue[-1]
    conn = holder._con
    if holder._setup is not None or conn._proxy is not None:
        return None
    queue._queue.pop()
    callback = holder._inactive_callback
    if callback is not None:
        callback.cancel()
        holder._inactive_callback = None
    proxy = object.__new__(_Proxy)
    proxy._con = conn
    proxy._holder = holder
    conn._proxy = proxy
    holder._proxy = proxy
    holder._in_use = pool._loop.create_future()
    holder._timeout = None
    return proxy


def on_release(conn: asyncpg.Connection) -> None:
    """``conn._on_release()``: its counter, and its warnings only when a listener was left."""
    if INLINE and not conn._listeners and not conn._log_listeners:
        conn._pool_release_ctr += 1
    else:
        conn._on_release()


def give_back(pool: asyncpg.Pool, holder: Any, conn: asyncpg.Connection) -> bool:
    """``PoolConnectionHolder.release`` for a read session with nothing to wait for and
    nothing to reset (no transaction, no cancellation, ``_keep_session``): ``_release``,
    ``put_nowait`` and ``_setup_inactive_callback`` in their own order, without their
    coroutines, timeout context and calls. False (nothing done) when anything else holds: a
    closed connection, one past its query budget or of an expired generation, one with
    listeners; the holder's own release then decides."""
    protocol = conn._protocol
    if (
        holder._in_use is None
        or conn._aborted
        or not protocol.is_connected()  # is_open's own test, without its frame
        or protocol.queries_count >= holder._max_queries
        or holder._generation != pool._generation
        or conn._listeners
        or conn._log_listeners
    ):
        return False
    holder._timeout = None
    if not INLINE or holder._inactive_callback is not None:
        holder._release()
        holder._setup_inactive_callback()
        return True
    in_use = holder._in_use
    if not in_use.done():
        in_use.set_result(None)
    holder._in_use = None
    proxy = holder._proxy
    if proxy is not None:  # the proxy's _detach: it no longer reaches the connection
        detached = proxy._con
        if detached is not None:
            proxy._con = None
            detached._proxy = None
        holder._proxy = None
    queue = pool._queue
    queue._queue.append(holder)  # put_nowait: a holder given back never finds it full
    queue._unfinished_tasks += 1
    queue._finished._value = False
    if queue._getters:
        queue._wakeup_next(queue._getters)
    if holder._max_inactive_time:
        holder._inactive_callback = pool._loop.call_later(
            holder._max_inactive_time, holder._deactivate_inactive_connection
        )
    return True


def can_wait(pool: asyncpg.Pool, queue: Any) -> bool:
    """Whether :func:`wait_free` may wait on ``queue``: a pool in use (not closing, closed or
    still starting: asyncpg's own path raises its error for those) of an asyncpg these
    steps know."""
    try:
        closing = pool._closing or pool._closed
        return INLINE and queue is not None and pool._initialized and not closing
    except AttributeError:  # not an asyncpg pool
        return False


async def wait_free(pool: asyncpg.Pool, queue: Any) -> None:
    """Until ``queue`` holds a free holder: ``Queue.get``'s wait, in line behind the
    getters before it (woken in turn by ``put_nowait``), with its futures made on the
    pool's loop. 3.11's ``Queue.get`` looks the running loop up for each, and that look-up
    is a ``getpid`` system call."""
    while not queue._queue:
        getter = pool._loop.create_future()
        queue._getters.append(getter)
        try:
            await getter
        except BaseException:
            getter.cancel()  # as Queue.get: not done yet, perhaps
            with contextlib.suppress(ValueError):  # put_nowait may have taken it out
                queue._getters.remove(getter)
            if queue._queue and not getter.cancelled():
                queue._wakeup_next(queue._getters)  # woken but leaving: the next in line
            raise
