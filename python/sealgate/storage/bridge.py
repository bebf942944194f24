"""Blocking storage code run on the asyncio event loop without blocking it.

The attestation hot path is synchronous code (verification, appraisal, storage calls).
On SQLite its storage calls take microseconds and it runs inline on the event loop. On
PostgreSQL each call waits for network round trips; run in the thread pool instead, every
call paid a thread hand-off and GIL contention between the pool's threads (measured with
``scripts/bench_service.py`` on a 2-core Xeon: the same SQLite service run through the pool
lost 29 % of its flows/s and spent 0.8 ms more CPU per flow).

So on a remote database the hot path runs in a greenlet on the loop's own thread (``run``).
Where a storage call would block — a round trip, a wait for a pool connection or for the
group committer — it hands an awaitable to the loop (``wait``) and is resumed with its
result once the loop has it; meanwhile the loop serves other calls. This is the technique
of SQLAlchemy's asyncio extension (``greenlet_spawn`` / ``await_only``), written here in a
few lines on the ``greenlet`` library rather than depending on SQLAlchemy for it.

The rule this imposes: no ``threading`` lock may be held across a storage call or ``wait``
on the hot path — another call on the same thread waiting for that lock would block the
loop, and with it the holder, forever. Per-call state that would live in a
``threading.local`` lives in a ``contextvars.ContextVar`` instead: each call's greenlet runs
in its own copy of the caller's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import greenlet

T = TypeVar("T")

#: Calls under ``run`` at once per event loop; more wait for a turn. Each holds at most one
#: database connection at a time, so a pool this much larger than the thread pool's share
#: never makes a loop call wait for a connection (``sealgate.storage.url.open_storage``).
MAX_CALLS = 16


class _Turns:
    """One loop's bound on bounded calls, and how many are running."""

    def __init__(self) -> None:
        self.sem = asyncio.Semaphore(MAX_CALLS)
        self.running = 0


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


class _Call(greenlet.greenlet):
    """A synchronous call running on the event loop's thread."""


def active() -> bool:
    """Whether the caller runs under ``run`` (its waits must go through ``wait``)."""
    return isinstance(greenlet.getcurrent(), _Call)


def wait(aw: Awaitable[T]) -> T:
    """Suspend the calling ``run`` call until the event loop has awaited ``aw``; its result
    (or exception). Only valid when ``active()``."""
    current = greenlet.getcurrent()
    parent = current.parent if isinstance(current, _Call) else None
    if parent is None:
        raise RuntimeError("bridge.wait outside bridge.run")
    return cast(T, parent.switch(aw))


def offload(fn: Callable[[], T]) -> T:
    """``fn()``, run in a worker thread when under ``run`` (CPU-heavy, rare work such as a
    cold signature verification, which must not stall the loop), else directly."""
    if not active():
        return fn()
    return wait(asyncio.to_thread(fn))


async def run(fn: Callable[[], T], *, bounded: bool = True) -> T:
    """Run ``fn()`` on this thread, awaiting on its behalf whatever it passes to ``wait``
    (at most ``MAX_CALLS`` at once on this loop, unless not ``bounded``: work the bounded
    calls wait for, such as the group committer's batches, must never wait for a turn)."""
    if not bounded:
        return await _drive(fn)
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns()
    async with turns.sem:
        turns.running += 1
        try:
            return await _drive(fn)
        finally:
            turns.running -= 1


def settle(fut: asyncio.Future[None]) -> None:
    """Resolve ``fut`` unless it already is (loop callbacks that may fire more than once)."""
    if not fut.done():
        fut.set_result(None)


def running() -> int:
    """Bounded calls running on this thread's event loop now (0 without a running loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return 0
    turns = _turns.get(loop)
    return 0 if turns is None else turns.running


async def _drive(fn: Callable[[], T]) -> T:
    call = _Call(fn)
    call.gr_context = contextvars.copy_context()
    value = call.switch()
    while not call.dead:
        try:
            result = await value
        except BaseException as e:  # incl. cancellation: it unwinds the call's own code
            value = call.throw(e)
        else:
            value = call.switch(result)
    return cast(T, value)


__all__ = ["active", "offload", "run", "running", "settle", "wait"]
