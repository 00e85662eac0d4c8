"""The doorbell that held check-ins wait on: rung per agent, capped, closed on stop."""

from __future__ import annotations

import asyncio
import time

from appliance.services.doorbell import Doorbell, file_limit_room


def never() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def test_a_ring_wakes_only_the_agent_it_is_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        bell = Doorbell(max_held=10)
        mine = asyncio.create_task(bell.wait("a", 5, never()))
        other = asyncio.create_task(bell.wait("b", 0.3, never()))
        await asyncio.sleep(0.05)
        assert bell.held == 2
        assert bell.ring(["a"]) == 1
        return await mine, await other

    started = time.monotonic()
    assert asyncio.run(scenario()) == (True, False)
    assert time.monotonic() - started < 2


def test_an_unrung_wait_ends_after_its_time_and_frees_its_place() -> None:
    async def scenario() -> tuple[bool, int]:
        bell = Doorbell(max_held=10)
        rung = await bell.wait("a", 0.1, never())
        return rung, bell.held

    assert asyncio.run(scenario()) == (False, 0)


def test_beyond_the_cap_a_check_in_is_answered_at_once() -> None:
    async def scenario() -> tuple[bool, int, int]:
        bell = Doorbell(max_held=1)
        first = asyncio.create_task(bell.wait("a", 5, never()))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        second = await bell.wait("b", 5, never())
        assert time.monotonic() - started < 0.5
        bell.ring(["a"])
        assert await first
        return second, bell.refused, bell.held

    assert asyncio.run(scenario()) == (False, 1, 0)


def test_a_client_that_goes_away_frees_its_place_at_once() -> None:
    async def scenario() -> tuple[bool, int]:
        bell = Doorbell(max_held=10)
        gone = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(bell.wait("a", 5, gone))
        await asyncio.sleep(0.05)
        gone.set_result(None)
        rung = await asyncio.wait_for(waiting, 1)
        return rung, bell.held

    assert asyncio.run(scenario()) == (False, 0)


def test_closing_answers_every_held_check_in_and_refuses_new_ones() -> None:
    async def scenario() -> tuple[list[bool], bool]:
        bell = Doorbell(max_held=10)
        held = [asyncio.create_task(bell.wait(agent, 30, never())) for agent in "abc"]
        await asyncio.sleep(0.05)
        bell.close()
        answers = await asyncio.wait_for(asyncio.gather(*held), 1)
        return answers, await bell.wait("d", 30, never())

    answers, late = asyncio.run(scenario())
    # Woken by the stop, not by a command: nothing to deliver.
    assert answers == [False, False, False] and late is False


def test_the_open_files_limit_leaves_room_for_everything_else() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert file_limit_room() < soft
