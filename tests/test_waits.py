"""The cheap waits and task groups the connection runs on (``_waits``,
``_tasks``): the same behaviour as anyio's events and task groups, on both
backends."""

from __future__ import annotations

import math
import socket
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from trio_ws._tasks import cancel_scope, create_task_group, move_on_after, running_on_trio
from trio_ws._waits import Latch, new_event, wait_functions

pytestmark = pytest.mark.anyio


async def test_backend_is_detected(anyio_backend: tuple[str, object]) -> None:
    assert running_on_trio() is (anyio_backend[0] == "trio")
    waits = wait_functions()
    assert wait_functions() is waits  # chosen once per backend
    assert waits.new_wakeup is not anyio.Event
    if anyio_backend[0] == "trio":
        assert waits.checkpoint is trio.lowlevel.checkpoint  # trio's own, no layers


def test_backend_detection_agrees_with_sniffio_everywhere() -> None:
    import asyncio

    import sniffio

    def check() -> str | None:
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        assert running_on_trio() is (library == "trio")
        return library

    seen: list[str | None] = [check()]  # outside any event loop

    async def in_trio() -> None:
        seen.append(check())

    async def host() -> None:
        # trio as a guest of asyncio: both run in this thread, by turns.
        seen.append(check())
        loop = asyncio.get_running_loop()
        done: asyncio.Future[object] = loop.create_future()
        trio.lowlevel.start_guest_run(
            in_trio,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        outcome = await asyncio.wait_for(done, 10)
        outcome.unwrap()  # type: ignore[attr-defined]
        seen.append(check())

    asyncio.run(host())
    trio.run(in_trio)
    assert seen == [None, "asyncio", "trio", "asyncio", "trio"]


async def test_wakeup_set_before_wait_returns_at_once() -> None:
    wakeup = wait_functions().new_wakeup()
    assert not wakeup.is_set()
    wakeup.set()
    wakeup.set()  # idempotent
    assert wakeup.is_set()
    with anyio.fail_after(1):
        await wakeup.wait()
        await wakeup.wait()  # sticky


async def test_wakeup_wakes_its_waiter() -> None:
    wakeup = wait_functions().new_wakeup()
    woken: list[str] = []

    async def waiter() -> None:
        await wakeup.wait()
        woken.append("yes")

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            wakeup.set()
    assert woken == ["yes"]


async def test_cancelled_wait_leaves_the_wakeup_usable() -> None:
    wakeup = wait_functions().new_wakeup()
    with anyio.move_on_after(0.01) as scope:
        await wakeup.wait()
    assert scope.cancelled_caught
    assert not wakeup.is_set()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                await wakeup.wait()

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            wakeup.set()


async def test_wait_on_a_set_wakeup_is_still_a_checkpoint() -> None:
    wakeup = wait_functions().new_wakeup()
    wakeup.set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await wakeup.wait()
        pytest.fail("not a cancel point")  # pragma: no cover


async def test_wakeup_refuses_a_second_waiter() -> None:
    wakeup = wait_functions().new_wakeup()

    async def waiter() -> None:
        await wakeup.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already waiting"):
            await wakeup.wait()
        wakeup.set()  # let the first waiter go


async def test_latch_wakes_every_waiter_and_stays_set() -> None:
    latch = Latch()
    assert not latch.is_set()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await latch.wait()
        woken.append(number)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as task_group:
            for number in range(3):
                task_group.start_soon(waiter, number)
            # A waiter that gives up leaves the latch as it was for the others.
            with anyio.move_on_after(0.01) as scope:
                await latch.wait()
            assert scope.cancelled_caught
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            latch.set()
        assert sorted(woken) == [0, 1, 2]
        assert latch.is_set()
        with anyio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(anyio.get_cancelled_exc_class()):
                await latch.wait()  # set, and still a checkpoint


async def test_wait_until_returns_when_woken_or_at_the_deadline() -> None:
    waits = wait_functions()
    with anyio.fail_after(5):
        # Woken long before the deadline.
        wakeup = waits.new_wakeup()

        async def wait() -> None:
            await waits.wait_until(wakeup, waits.current_time() + 60)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            wakeup.set()
        # Not woken: returns, without raising, once the deadline passed.
        wakeup = waits.new_wakeup()
        deadline = waits.current_time() + 0.05
        await waits.wait_until(wakeup, deadline)
        assert waits.current_time() >= deadline
        # Cancelled from outside: the cancellation goes through.
        with anyio.move_on_after(0.01) as scope:
            await waits.wait_until(waits.new_wakeup(), waits.current_time() + 60)
        assert scope.cancelled_caught


async def test_wait_readable_and_its_closed_error() -> None:
    waits = wait_functions()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.send(b"x")
        with anyio.fail_after(1):
            await waits.wait_readable(a)
        assert a.recv(1) == b"x"
    if running_on_trio():
        # Closed by trio while a task waits: the error is one we catch.
        c, d = socket.socketpair()
        with d:
            c.setblocking(False)
            got: list[BaseException] = []

            async def reader() -> None:
                try:
                    await waits.wait_readable(c)
                except waits.io_errors as exc:
                    got.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                trio.lowlevel.notify_closing(c)
            c.close()
            assert len(got) == 1


async def test_task_group_runs_tasks_to_the_end() -> None:
    done: list[int] = []

    async def task(n: int) -> None:
        await anyio.lowlevel.checkpoint()
        done.append(n)

    async with create_task_group() as tg:
        tg.start_soon(task, 1, name="one")
        tg.start_soon(task, 2)
    assert sorted(done) == [1, 2]
    with pytest.raises(RuntimeError, match="not active"):
        tg.start_soon(task, 3)


async def test_outside_cancellation_leaves_the_task_group_as_one_cancellation() -> None:
    # Not an exception group: a scope outside catches it, and the code between
    # sees the backend's cancellation exception, as with anyio's task groups.
    seen: list[type[BaseException]] = []
    with anyio.move_on_after(0.01) as scope:
        try:
            async with create_task_group() as tg:
                tg.start_soon(anyio.sleep_forever)
                tg.start_soon(anyio.sleep_forever)
                await anyio.sleep_forever()
        except BaseException as exc:
            seen.append(type(exc))
            raise
    assert scope.cancelled_caught
    assert seen == [anyio.get_cancelled_exc_class()]


async def test_task_group_lets_other_errors_through_in_a_group() -> None:
    async def boom() -> None:
        raise ValueError("boom")

    async def run() -> None:
        async with create_task_group() as tg:
            tg.start_soon(boom)
            await anyio.sleep_forever()

    with pytest.raises(BaseExceptionGroup) as info:
        await run()
    assert info.group_contains(ValueError)


async def test_cancel_scopes_are_the_backends_own(anyio_backend: tuple[str, object]) -> None:
    # On asyncio the very class anyio.CancelScope() makes, without its look-up.
    expected = trio.CancelScope if anyio_backend[0] == "trio" else type(anyio.CancelScope())
    assert type(cancel_scope()) is expected
    assert type(move_on_after(1)) is expected
    shielded: Any = cancel_scope(shield=True)
    assert shielded.shield
    assert cancel_scope(deadline=5.0).deadline == 5.0
    assert move_on_after(None).deadline == math.inf
    assert move_on_after(10).deadline - anyio.current_time() == pytest.approx(10, abs=1)


async def test_move_on_after_cancels_its_block_once_the_time_is_up() -> None:
    reached: list[str] = []
    with anyio.fail_after(1), move_on_after(0.01) as scope:
        reached.append("inside")
        await anyio.sleep_forever()
    assert reached == ["inside"]
    assert scope.cancelled_caught


async def test_move_on_after_none_never_expires() -> None:
    scope = move_on_after(None)
    assert scope.deadline == math.inf
    with scope:
        await anyio.lowlevel.checkpoint()
    assert not scope.cancel_called


async def test_a_shielded_scope_keeps_an_outer_cancellation_out_until_it_ends() -> None:
    reached: list[str] = []
    with anyio.CancelScope() as outer:
        outer.cancel()
        with cancel_scope(shield=True):
            await anyio.lowlevel.checkpoint()
            reached.append("shielded")
        await anyio.lowlevel.checkpoint()
        reached.append("after")  # pragma: no cover  # cancelled above
    assert reached == ["shielded"]
    assert outer.cancelled_caught


async def test_a_deadline_set_inside_the_scope_still_expires() -> None:
    scope = cancel_scope()
    with scope:
        scope.deadline = anyio.current_time() + 0.01
        assert not scope.cancel_called
        with anyio.fail_after(1):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    scope.cancel()  # idempotent once done


async def test_events_are_the_backends_own(anyio_backend: tuple[str, object]) -> None:
    # On asyncio the very class anyio.Event() makes, made without its look-up.
    expected = trio.Event if anyio_backend[0] == "trio" else type(anyio.Event())
    assert type(new_event()) is expected


async def test_an_event_wakes_every_waiter() -> None:
    event = new_event()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
            assert not event.is_set()
            event.set()
        await event.wait()  # sticky
    assert sorted(woken) == [0, 1, 2]
