"""The task groups a connection and a server run their tasks in: a trio
nursery on trio, anyio's asyncio task group with handle-free tasks on
asyncio, and for a connection's own tasks on asyncio a group that runs them
in the block's cancel scope. They behave as anyio's task group does, except
that the connection's group never cancels its tasks on its own."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from trio_ws import _tasks
from trio_ws._tasks import TaskGroup, connection_task_group, create_task_group

pytestmark = pytest.mark.anyio

#: Both task groups: anyio's (with handle-free tasks), and the group of a
#: connection's own tasks. Behaviour they share is tested on both.
GROUPS = pytest.mark.parametrize(
    "make_group", [create_task_group, connection_task_group], ids=["group", "connection"]
)


async def sleep_forever(cancelled: list[Any], name: object) -> None:
    """Sleep until cancelled; then say so in ``cancelled``."""
    try:
        await anyio.sleep(math.inf)
    except anyio.get_cancelled_exc_class():
        cancelled.append(name)
        raise


async def test_the_light_asyncio_group_is_used_on_asyncio(anyio_backend: tuple[str, Any]) -> None:
    group = create_task_group()
    if anyio_backend[0] == "asyncio":
        # The installed anyio is one the light group was written for.
        assert _tasks._AsyncioTaskGroup is not None
        assert type(group) is _tasks._AsyncioTaskGroup
        assert isinstance(group, anyio.abc.TaskGroup)
    else:
        assert type(group) is _tasks._TrioTaskGroup


@GROUPS
async def test_children_run_and_the_group_waits_for_them(
    make_group: Callable[[], TaskGroup],
) -> None:
    done: list[int] = []

    async def child(n: int) -> None:
        await anyio.sleep(0.01 * n)
        done.append(n)

    with anyio.fail_after(5):
        async with make_group() as group:
            for n in (3, 1, 2):
                group.start_soon(child, n, name="child")
    assert done == [1, 2, 3]


async def test_a_failing_child_cancels_the_others_and_is_raised() -> None:
    cancelled: list[Any] = []

    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    async def run() -> None:
        async with create_task_group() as group:
            group.start_soon(sleep_forever, cancelled, "sleeper")
            group.start_soon(failing)

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as info:
        await run()
    assert info.group_contains(ValueError, match="boom")
    assert cancelled == ["sleeper"]


@GROUPS
async def test_a_scope_outside_cancels_the_children_and_catches_one_cancellation(
    make_group: Callable[[], TaskGroup],
) -> None:
    cancelled: list[Any] = []

    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            async with make_group() as group:
                group.start_soon(sleep_forever, cancelled, 1)
                group.start_soon(sleep_forever, cancelled, 2)
        assert scope.cancelled_caught
    assert sorted(cancelled) == [1, 2]


@GROUPS
async def test_a_shield_inside_a_child_holds_against_a_cancelled_group(
    make_group: Callable[[], TaskGroup],
) -> None:
    finished: list[str] = []

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)
            finished.append("shielded")

    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with make_group() as group:
                group.start_soon(shielded)
                await anyio.sleep(0.01)
                outer.cancel()
    assert finished == ["shielded"]


@GROUPS
async def test_a_child_knows_its_task_and_leaves_nothing_behind(
    make_group: Callable[[], TaskGroup],
    anyio_backend: tuple[str, Any],
) -> None:
    seen: list[anyio.TaskInfo] = []

    async def child() -> None:
        seen.append(anyio.get_current_task())

    with anyio.fail_after(5):
        async with make_group() as group:
            group.start_soon(child, name="named child")
    assert seen[0].name == "named child"
    if anyio_backend[0] == "asyncio":
        assert all(task.get_name() != "named child" for task in asyncio.all_tasks())
        with pytest.raises(RuntimeError, match="not active"):
            group.start_soon(child)


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {}), id="asyncio")], indirect=True
)
async def test_a_child_cancelled_directly_cancels_the_group() -> None:
    # task.cancel() is asyncio's; anyio's group takes it for a failure too.
    cancelled: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []

    async def victim() -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        await anyio.sleep(math.inf)

    with anyio.fail_after(5):
        async with create_task_group() as group:
            group.start_soon(victim)
            group.start_soon(sleep_forever, cancelled, "sleeper")
            await anyio.sleep(0.01)
            tasks[0].cancel()
    assert cancelled == ["sleeper"]


# -- the group of a connection's own tasks -----------------------------------


async def test_the_connection_group_on_each_backend(anyio_backend: tuple[str, Any]) -> None:
    group = connection_task_group()
    if anyio_backend[0] == "asyncio":
        assert _tasks._ConnectionTasks is not None
        assert type(group) is _tasks._ConnectionTasks
    else:
        assert type(group) is _tasks._TrioTaskGroup


async def test_a_scope_inside_the_block_leaves_the_connection_tasks_alone() -> None:
    finished: list[str] = []
    release = anyio.Event()

    async def child() -> None:
        await release.wait()
        finished.append("child")

    with anyio.fail_after(5):
        async with connection_task_group() as group:
            group.start_soon(child)
            with anyio.move_on_after(0.01) as inner:
                await anyio.sleep(math.inf)
            assert inner.cancelled_caught
            release.set()
    assert finished == ["child"]


async def test_a_failing_connection_task_is_raised_at_exit() -> None:
    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    async def run() -> None:
        async with connection_task_group() as group:
            group.start_soon(failing)

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as info:
        await run()
    assert info.group_contains(ValueError, match="boom")


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {}), id="asyncio")], indirect=True
)
async def test_cancelled_while_it_waits_the_connection_group_still_waits() -> None:
    # task.cancel() of the block's task while the group waits at exit: the
    # group waits for its tasks all the same (a connection's end within its
    # close_timeout), then the cancellation goes on.
    order: list[str] = []
    release = anyio.Event()

    async def child() -> None:
        await release.wait()
        order.append("child")

    async def block() -> None:
        try:
            async with connection_task_group() as group:
                group.start_soon(child)
        finally:
            order.append("block")

    with anyio.fail_after(5):
        task = asyncio.get_running_loop().create_task(block())
        await anyio.sleep(0.01)
        task.cancel()
        await anyio.sleep(0.01)
        assert order == []
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert order == ["child", "block"]
