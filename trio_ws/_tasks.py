"""Task groups for a connection's own tasks.

A connection runs up to three tasks (reader, writer, heartbeat) for as long
as it is open, and a server runs one more per connection for its handler.
On trio these go straight into a trio nursery: anyio's task group wraps each
task it starts in a handle with a cancel scope, an event and a coroutine of
its own, which costs about 2.7 KiB of memory per task for as long as the
task lives (4.7 KiB against 2.0 for a bare trio task) and a few microseconds
to start and to finish. Our tasks never report results and never need cancelling one
by one, so they have no use for the handle. On asyncio the same goes:
:class:`_AsyncioTaskGroup` is anyio's own task group, whose ``start_soon``
puts the coroutine straight into an asyncio task registered with the group's
cancel scope, as anyio registers the tasks it starts, minus the handle (about
1.7 KiB per task). Where anyio's internals are not the ones it was written
for, anyio's task group is used as it is.

Either way the group behaves as anyio's does on exit: when every task was
cancelled by a scope outside the group, the group raises one plain
cancellation, not an exception group wrapping several.

A connection's own tasks, beside the block or handler that uses it, go in
:func:`connection_task_group`: on asyncio a group that runs them in the
block's own cancel scope and only waits for them at exit, since the block
always closes the connection before it leaves (see ``_ConnectionTasks``).

Cancel scopes likewise: a connection enters half a dozen in its life (one
per task, the timers, the shielded close), and on trio anyio's scope is a
wrapper around trio's, made through a lookup of the running backend, with a
call of its own for every entry, exit and cancel. :func:`cancel_scope` makes
trio's own on trio, anyio's elsewhere.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

    import trio

__all__ = [
    "CancelScope",
    "TaskGroup",
    "TaskStarter",
    "cancel_scope",
    "connection_task_group",
    "create_task_group",
    "move_on_after",
    "running_on_trio",
]


class TaskStarter(Protocol):
    """What a connection needs of a task group or nursery."""

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any, name: object = None
    ) -> object: ...


class TaskGroup(TaskStarter, Protocol):
    """A task group that is entered with ``async with``."""

    async def __aenter__(self) -> TaskStarter: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


def running_on_trio() -> bool:
    """Whether the current task runs on trio.

    What :func:`sniffio.current_async_library` answers ``"trio"`` to, minus
    its last resort, a look-up of asyncio's current task: trio names itself
    in sniffio's thread-local (or context variable) while it runs, and a
    connection asks this a dozen times in its life.
    """
    name = sniffio.thread_local.name
    if name is None:
        name = sniffio.current_async_library_cvar.get()
    return name == "trio"


class CancelScope(Protocol):
    """What we use of a cancel scope, anyio's or trio's."""

    @property
    def deadline(self) -> float: ...

    @deadline.setter
    def deadline(self, value: float) -> None: ...

    @property
    def cancel_called(self) -> bool: ...

    @property
    def cancelled_caught(self) -> bool: ...

    def cancel(self, reason: str | None = None) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...


def cancel_scope(*, deadline: float = math.inf, shield: bool = False) -> CancelScope:
    """A new cancel scope: trio's own on trio, anyio's elsewhere."""
    if running_on_trio():
        import trio

        return trio.CancelScope(deadline=deadline, shield=shield)
    return _AnyioScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float | None) -> CancelScope:
    """A cancel scope whose deadline is ``seconds`` from now (None: never),
    as :func:`anyio.move_on_after` makes, minus its layers."""
    if running_on_trio():
        import trio

        deadline = math.inf if seconds is None else trio.current_time() + seconds
        return trio.CancelScope(deadline=deadline)
    deadline = math.inf if seconds is None else asyncio.get_running_loop().time() + seconds
    return _AnyioScope(deadline=deadline)


# anyio's cancel scope on asyncio, made directly: through anyio.CancelScope
# each one costs a look-up of the running backend (and, through sniffio, of
# the running library). anyio runs on trio and asyncio only.
try:
    from anyio._backends._asyncio import CancelScope as _AnyioScope
except ImportError:  # pragma: no cover  # another anyio
    _AnyioScope = anyio.CancelScope  # type: ignore[assignment,misc]


def create_task_group() -> TaskGroup:
    """A new task group: a trio nursery on trio, anyio's elsewhere (with
    cheaper tasks on asyncio)."""
    if running_on_trio():
        return _TrioTaskGroup()
    if _AsyncioTaskGroup is not None and sniffio.current_async_library() == "asyncio":
        return _AsyncioTaskGroup()
    return anyio.create_task_group()


def connection_task_group() -> TaskGroup:
    """A task group for a connection's own tasks, beside the block or handler
    that uses the connection, which closes it before leaving the group: a
    trio nursery on trio, :class:`_ConnectionTasks` on asyncio."""
    if running_on_trio():
        return _TrioTaskGroup()
    if _ConnectionTasks is not None and sniffio.current_async_library() == "asyncio":
        return _ConnectionTasks()
    return anyio.create_task_group()


class _TrioTaskGroup:
    """A trio nursery, entered and left like anyio's task group."""

    __slots__ = ("_manager", "_nursery")

    def __init__(self) -> None:
        import trio  # only ever created on trio

        self._manager = trio.open_nursery()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> _TrioTaskGroup:
        self._nursery = await self._manager.__aenter__()
        return self

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any, name: object = None
    ) -> None:
        if self._nursery is None:
            raise RuntimeError("This task group is not active; no new tasks can be started.")
        self._nursery.start_soon(func, *args, name=name)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        import trio

        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            cancelled, rest = group.split(trio.Cancelled)
            if cancelled is None or rest is not None:
                raise
            # Only cancellations: raise one, as a scope outside expects.
            raise _first_leaf(cancelled) from None
        finally:
            self._nursery = None
            del exc, tb


def _first_leaf(group: BaseExceptionGroup[trio.Cancelled]) -> trio.Cancelled:
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _light_asyncio_task_group() -> type[anyio.abc.TaskGroup] | None:
    """anyio's asyncio task group with a ``start_soon`` minus the task handle,
    or None if this anyio is not laid out as the subclass expects."""
    try:
        from anyio._backends import _asyncio as backend
    except ImportError:  # pragma: no cover  # anyio always has it
        return None
    try:
        base: type[Any] = backend.TaskGroup
        task_states: Any = backend._task_states
        task_state: Callable[..., Any] = backend.TaskState
        probe = base()
    except (AttributeError, TypeError):  # pragma: no cover  # another anyio
        return None
    if not all(
        hasattr(probe, name) for name in ("_tasks", "_exceptions", "_on_completed_fut", "_entered")
    ) or not all(
        hasattr(probe.cancel_scope, name)
        for name in ("_tasks", "_host_task", "_active", "_effectively_cancelled")
    ):
        return None  # pragma: no cover

    add_awaited_by = getattr(asyncio, "future_add_to_awaited_by", None)
    discard_awaited_by = getattr(asyncio, "future_discard_from_awaited_by", None)

    class _AsyncioTaskGroup(base):  # type: ignore[misc]
        """anyio's asyncio task group; ``start_soon`` returns no handle."""

        def start_soon(
            self,
            func: Callable[..., Coroutine[Any, Any, Any]],
            /,
            *args: Any,
            name: object = None,
        ) -> None:
            scope = self.cancel_scope
            if not self._entered or not scope._active:
                raise RuntimeError("This task group is not active; no new tasks can be started.")
            coro = func(*args)
            task = asyncio.get_running_loop().create_task(
                coro, name=None if name is None else str(name)
            )
            host = scope._host_task
            # As anyio's own start_soon registers a task: in the group's
            # scope, so that cancelling the scope (or one around it)
            # reaches the task, and shields inside it are respected.
            task_states[task] = task_state(parent_id=id(host), cancel_scope=scope)
            scope._tasks.add(task)
            self._tasks.add(task)
            if add_awaited_by is not None and host is not None:  # pragma: no cover  # 3.14
                add_awaited_by(task, host)
            task.add_done_callback(self._task_done)

        def _task_done(self, task: asyncio.Task[Any]) -> None:
            scope = self.cancel_scope
            if discard_awaited_by is not None and scope._host_task is not None:  # pragma: no cover
                discard_awaited_by(task, scope._host_task)
            state = task_states.pop(task)
            state.cancel_scope._tasks.discard(task)
            self._tasks.discard(task)
            waiter = self._on_completed_fut
            if waiter is not None and not self._tasks and not waiter.done():
                waiter.set_result(None)
            # As anyio does: a task that failed, or was cancelled other than
            # by a scope (task.cancel()), cancels the rest of the group.
            if task.cancelled():
                failed = True
            elif (exc := task.exception()) is not None:
                self._exceptions.append(exc)
                failed = True
            else:
                failed = False
            if failed and not scope._effectively_cancelled:
                scope.cancel()

    return _AsyncioTaskGroup


_AsyncioTaskGroup = _light_asyncio_task_group()


def _asyncio_connection_tasks() -> type[TaskGroup] | None:
    """The class of :func:`connection_task_group` on asyncio, or None if
    anyio's internals are not the ones it was written for."""
    if _AsyncioTaskGroup is None:  # pragma: no cover  # another anyio
        return None
    from anyio._backends import _asyncio as backend

    task_states: Any = backend._task_states
    task_state: Callable[..., Any] = backend.TaskState
    shield = backend.CancelScope

    class _ConnectionTasks:
        """A connection's tasks on asyncio, in the cancel scope of the block
        (or handler) that uses the connection rather than in one of their
        own.

        anyio's task group enters a cancel scope to run its tasks in and
        another to wait for them at exit, about 7 us a connection, for a
        group that is never cancelled on its own: the block always closes
        the connection before it leaves, the closing handshake is bounded by
        ``close_timeout``, and then the tasks end by themselves. So this
        group only waits. Its tasks are registered in the block's scope as
        anyio registers a group's tasks in the group's, so a scope outside
        that is cancelled (or times out) cancels them all the same, shields
        respected. A task that fails (it never should) is raised at exit in
        an exception group, as anyio's group would.
        """

        __slots__ = ("_active", "_errors", "_host", "_scope", "_tasks", "_waiter")

        def __init__(self) -> None:
            self._active = False
            self._tasks: set[asyncio.Task[Any]] = set()
            self._errors: list[BaseException] = []
            self._waiter: asyncio.Future[None] | None = None
            self._host: asyncio.Task[Any] | None = None
            self._scope: Any = None

        async def __aenter__(self) -> _ConnectionTasks:
            self._host = host = asyncio.current_task()
            state = task_states.get(host)
            self._scope = None if state is None else state.cancel_scope
            self._active = True
            return self

        def start_soon(
            self,
            func: Callable[..., Coroutine[Any, Any, Any]],
            /,
            *args: Any,
            name: object = None,
        ) -> None:
            if not self._active:
                raise RuntimeError("This task group is not active; no new tasks can be started.")
            task = asyncio.get_running_loop().create_task(
                func(*args), name=None if name is None else str(name)
            )
            scope = self._scope
            task_states[task] = task_state(parent_id=id(self._host), cancel_scope=scope)
            if scope is not None:
                scope._tasks.add(task)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

        def _task_done(self, task: asyncio.Task[Any]) -> None:
            state = task_states.pop(task, None)
            if state is not None and state.cancel_scope is not None:
                state.cancel_scope._tasks.discard(task)
            self._tasks.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                self._errors.append(exc)
            waiter = self._waiter
            if waiter is not None and not self._tasks and not waiter.done():
                waiter.set_result(None)

        async def __aexit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            try:
                if self._tasks:
                    try:
                        await self._wait()
                    except asyncio.CancelledError:
                        # Cancelled while the tasks finish: they finish
                        # anyway (see above); wait for them, deaf to the
                        # deliveries that anyio repeats, then go on with the
                        # cancellation.
                        with shield(shield=True):
                            while self._tasks:
                                await self._wait()
                        raise
                if self._errors:
                    raise BaseExceptionGroup("unhandled errors in a TaskGroup", self._errors)
            finally:
                self._active = False
                del exc, tb

        async def _wait(self) -> None:
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    return _ConnectionTasks


_ConnectionTasks = _asyncio_connection_tasks()
