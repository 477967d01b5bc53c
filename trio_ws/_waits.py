"""The waits a connection's tasks spend their lives in, made cheap.

A connection hands work between its tasks and the user's on every message:
the reader wakes ``recv()``, ``send()`` wakes the writer. ``anyio.Event``
does that through three layers on trio (anyio's event, trio's event, its
parking lot), each with an object and a coroutine frame of its own, and a
connection keeps several such waits parked for as long as it is idle. A
:class:`Wakeup` is the one-waiter case done with trio's low-level API: one
object of two slots, one frame. On other backends it is ``anyio.Event``.

Semantics are those of ``anyio.Event`` for a single waiting task: ``set()``
is sticky and idempotent, ``wait()`` returns at once (after a checkpoint)
once set, and a cancelled ``wait()`` leaves the wakeup as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import anyio

from ._tasks import running_on_trio

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    import trio

__all__ = ["Wakeup", "Waits", "wait_functions"]


class Wakeup(Protocol):
    """A one-shot event for one waiting task."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    async def wait(self) -> Any: ...


class Waits(NamedTuple):
    """The waits of the running backend."""

    #: Makes a :class:`Wakeup`.
    new_wakeup: Callable[[], Wakeup]
    #: Sleeps until cancelled (on trio without a cancel scope of its own).
    sleep_forever: Callable[[], Awaitable[Any]]
    #: Waits until a socket that no stream reads from is readable.
    wait_readable: Callable[[socket.socket], Awaitable[None]]
    #: What ``wait_readable`` raises if the socket is closed meanwhile.
    closed_errors: tuple[type[Exception], ...]


def wait_functions() -> Waits:
    """The waits of the running backend."""
    global _lowlevel, _trio_waits
    if not running_on_trio():
        return _ANYIO_WAITS
    if _trio_waits is None:
        import trio
        import trio.lowlevel

        _lowlevel = trio.lowlevel
        _trio_waits = Waits(
            _TrioWakeup,
            trio.sleep_forever,
            trio.lowlevel.wait_readable,
            (trio.ClosedResourceError, anyio.ClosedResourceError),
        )
    return _trio_waits


_ANYIO_WAITS = Waits(
    anyio.Event, anyio.sleep_forever, anyio.wait_readable, (anyio.ClosedResourceError,)
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

    async def wait(self) -> None:
        if self._flag:
            await _lowlevel.checkpoint()
            return
        if self._task is not None:
            raise RuntimeError("another task is already waiting for this wakeup")
        self._task = _lowlevel.current_task()
        await _lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return _lowlevel.Abort.SUCCEEDED  # type: ignore[no-any-return]
