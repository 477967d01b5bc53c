"""The waits a connection's tasks spend their lives in, made cheap.

A connection hands work between its tasks and the user's on every message:
the reader wakes ``recv()``, ``send()`` wakes the writer. ``anyio.Event``
does that through three layers on trio (anyio's event, trio's event, its
parking lot), each with an object and a coroutine frame of its own, and a
connection keeps several such waits parked for as long as it is idle. A
:class:`Wakeup` is the one-waiter case done with trio's low-level API: one
object of two slots, one frame. On asyncio it is a future, made only when
somebody waits, where ``anyio.Event`` makes an ``asyncio.Event`` (with its
queue of waiters) through a lookup of the running backend every time.

Semantics are those of ``anyio.Event`` for a single waiting task: ``set()``
is sticky and idempotent, ``wait()`` returns at once (after a checkpoint)
once set, and a cancelled ``wait()`` leaves the wakeup as it was.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import anyio
import anyio.lowlevel

from ._tasks import running_on_trio

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    import trio

__all__ = ["Event", "Latch", "Wakeup", "Waits", "new_event", "wait_functions"]


class Wakeup(Protocol):
    """A one-shot event for one waiting task."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


class Event(Wakeup, Protocol):
    """A one-shot event for any number of waiting tasks."""


def new_event() -> Event:
    """A new event: trio's own on trio, where anyio's wraps one, made through
    a lookup of the running backend, with a call of its own for every use;
    anyio's elsewhere."""
    if running_on_trio():
        import trio

        return trio.Event()
    return _AnyioEvent()


class Latch:
    """An event for a flag that many may wait for but few ever do.

    The backend's event is made only when somebody waits: a connection that
    is never waited for keeps one small object instead of an event and its
    parking lot (on trio) or queue of waiters (on asyncio).
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._flag:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = new_event()
        await self._event.wait()


class Waits(NamedTuple):
    """The waits of the running backend."""

    #: Makes a :class:`Wakeup`.
    new_wakeup: Callable[[], Wakeup]
    #: Waits until a socket that no stream reads from is readable.
    wait_readable: Callable[[socket.socket], Awaitable[None]]
    #: What reading or writing a connection's stream or socket raises once
    #: the connection is lost or closed under the waiting task.
    io_errors: tuple[type[Exception], ...]
    #: The checkpoint of a call that did not have to wait: a cancel point,
    #: and a schedule point (on asyncio: one call in ``ASYNCIO_YIELD_EVERY``).
    checkpoint: Callable[[], Awaitable[None]]
    #: A cancel point only.
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    #: A schedule point only.
    cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
    #: Waits until a socket that no stream writes to is writable.
    wait_writable: Callable[[socket.socket], Awaitable[None]]
    #: The backend's clock, as ``anyio.current_time()``, but callable from
    #: the event loop's callbacks too (anyio's needs a running task).
    current_time: Callable[[], float]
    #: Waits for a wakeup, at most until a deadline on that clock: on asyncio
    #: with a timer that sets it, lighter than a cancel scope.
    wait_until: Callable[[Wakeup, float], Awaitable[None]]
    #: How long, in seconds, a task may run on between the schedule points of
    #: a connection's calls that need not wait (see ``TRIO_TURN``); 0 where
    #: ``checkpoint`` shares its schedule points itself (asyncio).
    turn: float


def wait_functions() -> Waits:
    """The waits of the running backend."""
    global _lowlevel, _trio_waits
    if not running_on_trio():
        return _ASYNCIO_WAITS if _on_asyncio() else _ANYIO_WAITS
    if _trio_waits is None:
        import trio
        import trio.lowlevel

        _lowlevel = trio.lowlevel
        _trio_waits = Waits(
            _TrioWakeup,
            trio.lowlevel.wait_readable,
            (*_ANYIO_IO_ERRORS, trio.ClosedResourceError),
            trio.lowlevel.checkpoint,
            trio.lowlevel.checkpoint_if_cancelled,
            trio.lowlevel.cancel_shielded_checkpoint,
            trio.lowlevel.wait_writable,
            trio.current_time,
            _trio_wait_until,
            TRIO_TURN,
        )
    return _trio_waits


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover  # another backend of anyio's
        return False
    return True


class _AsyncioWakeup:
    __slots__ = ("_flag", "_future")

    def __init__(self) -> None:
        self._flag = False
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        if self._flag:
            await _asyncio_full_checkpoint()
            return
        if self._future is not None:
            raise RuntimeError("another task is already waiting for this wakeup")
        self._future = future = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            self._future = None


#: On trio, how long a task may run on before a connection's call that need
#: not wait (a ``send()`` with room, a ``recv()`` with a message queued) is a
#: schedule point again: a pass of trio's scheduler (a system call, and a turn
#: for every task that is ready) costs more than the rest of a small message.
#: Every such call is still a cancel point, and a task that yields through
#: the connection, or comes back from waiting in it, starts a new turn. Trio
#: itself means to skip schedule points this way (python-trio/trio#1757,
#: "skip schedule points if we've done one recently enough", 0.5-5 ms).
TRIO_TURN = 0.0005

#: On asyncio, how many calls that need not wait share one schedule point.
#: asyncio's own streams, and the libraries built on them, yield only when
#: they must wait, and a pass through the event loop per message costs more
#: than the rest of the message; never yielding, though, would let a task
#: that sends (or receives) as fast as the socket takes it starve the others.
ASYNCIO_YIELD_EVERY = 32

_asyncio_calls = 0


async def _asyncio_checkpoint() -> None:
    global _asyncio_calls
    _asyncio_calls += 1
    if _asyncio_calls % ASYNCIO_YIELD_EVERY:
        await _asyncio_checkpoint_if_cancelled()
    else:
        await _asyncio_full_checkpoint()


def _asyncio_time() -> float:
    return asyncio.get_running_loop().time()


async def _asyncio_wait_until(wakeup: Wakeup, deadline: float) -> None:
    timer = asyncio.get_running_loop().call_at(deadline, wakeup.set)
    try:
        await wakeup.wait()
    finally:
        timer.cancel()


async def _anyio_wait_until(wakeup: Wakeup, deadline: float) -> None:
    with anyio.CancelScope(deadline=deadline):
        await wakeup.wait()


async def _trio_wait_until(wakeup: Wakeup, deadline: float) -> None:
    import trio  # imported already: only trio's waits use this

    with trio.CancelScope(deadline=deadline):
        await wakeup.wait()


_ANYIO_IO_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

# anyio's checkpoints and events on asyncio, called directly: anyio.lowlevel's
# and anyio.Event look up the running backend (and, through sniffio, the
# running library) each time. anyio runs on trio and asyncio only.
try:
    from anyio._backends._asyncio import AsyncIOBackend as _AsyncIOBackend
    from anyio._backends._asyncio import Event as _AnyioEvent
except ImportError:  # pragma: no cover  # another anyio
    _AnyioEvent = anyio.Event  # type: ignore[assignment,misc]
    _asyncio_full_checkpoint = anyio.lowlevel.checkpoint
    _asyncio_checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
    _asyncio_shielded_checkpoint = anyio.lowlevel.cancel_shielded_checkpoint
else:
    _asyncio_full_checkpoint = _AsyncIOBackend.checkpoint
    _asyncio_checkpoint_if_cancelled = _AsyncIOBackend.checkpoint_if_cancelled
    _asyncio_shielded_checkpoint = _AsyncIOBackend.cancel_shielded_checkpoint

_ASYNCIO_WAITS = Waits(
    _AsyncioWakeup,
    anyio.wait_readable,
    _ANYIO_IO_ERRORS,
    _asyncio_checkpoint,
    _asyncio_checkpoint_if_cancelled,
    _asyncio_shielded_checkpoint,
    anyio.wait_writable,
    _asyncio_time,
    _asyncio_wait_until,
    0.0,
)
_ANYIO_WAITS = Waits(
    anyio.Event,
    anyio.wait_readable,
    _ANYIO_IO_ERRORS,
    anyio.lowlevel.checkpoint,
    anyio.lowlevel.checkpoint_if_cancelled,
    anyio.lowlevel.cancel_shielded_checkpoint,
    anyio.wait_writable,
    anyio.current_time,
    _anyio_wait_until,
    0.0,
)
_trio_waits: Waits | None = None


_lowlevel: Any = None  # trio.lowlevel, once a connection ran on trio


class _TrioWakeup:
    __slots__ = ("_flag", "_task")

    def __init__(self) -> None:
        self._flag = False
        self._task: trio.lowlevel.Task | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        task = self._task
        if task is not None:
            self._task = None
            _lowlevel.reschedule(task)

    # Not a coroutine function: it returns trio's awaitable itself, so a task
    # parked here holds one coroutine frame less. It takes the calling task as
    # the waiter: call it where you await it (``await wakeup.wait()``).
    def wait(self) -> Awaitable[None]:
        if self._flag:
            return _lowlevel.checkpoint()  # type: ignore[no-any-return]
        if self._task is not None:
            raise RuntimeError("another task is already waiting for this wakeup")
        self._task = _lowlevel.current_task()
        return _lowlevel.wait_task_rescheduled(self._abort)  # type: ignore[no-any-return]

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return _lowlevel.Abort.SUCCEEDED  # type: ignore[no-any-return]
