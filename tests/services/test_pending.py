"""PendingWork: a call's CRM work, owned by a TaskGroup, waited for, ordered, drained."""
import asyncio

from agi_daemon.services.pending import PendingWork


async def test_settle_waits_for_every_task_of_the_call():
    done = []

    async def work(name, delay):
        await asyncio.sleep(delay)
        done.append(name)

    async with asyncio.TaskGroup() as group:
        pending = PendingWork(group.create_task)
        pending.start("L1", work("routing", 0.05))
        pending.start("L1", work("second routing of the same call", 0.1))
        pending.start("L2", work("other call", 0.3))
        assert await pending.settle("L1", 2)
        assert sorted(done) == ["routing", "second routing of the same call"]
        assert not await pending.settle("L2", 0.01)


async def test_in_order_work_starts_after_the_earlier_work_of_the_same_key():
    order = []

    async def effect(name, delay):
        await asyncio.sleep(delay)
        order.append(name)

    async with asyncio.TaskGroup() as group:
        pending = PendingWork(group.create_task)
        pending.start("tracking:L1", effect("transfer alice->bob", 0.2), in_order=True)
        pending.start("tracking:L1", effect("transfer bob->carol", 0.0), in_order=True)
        assert await pending.settle("tracking:L1", 2)
    assert order == ["transfer alice->bob", "transfer bob->carol"]


async def test_drain_cancels_work_that_outlives_the_timeout():
    finished = []

    async def stuck():
        await asyncio.sleep(3600)

    async def quick():
        finished.append(True)

    async with asyncio.TaskGroup() as group:
        pending = PendingWork(group.create_task)
        pending.start("L1", stuck())
        pending.start("L2", quick())
        assert await pending.drain(0.1) == 1
        assert pending.in_flight == 0
    assert finished == [True]


async def test_work_that_crashes_is_logged_and_leaves_the_other_calls_running(caplog):
    finished = []

    async def broken():
        raise RuntimeError("a bug")

    async def fine():
        await asyncio.sleep(0.05)
        finished.append(True)

    async with asyncio.TaskGroup() as group:  # would be cancelled whole if the error escaped
        pending = PendingWork(group.create_task)
        pending.start("L1", broken())
        pending.start("L2", fine())
        assert await pending.settle("L2", 2)
    assert finished == [True]
    assert any("CRM work L1 crashed" in r.getMessage() for r in caplog.records)
