"""The doorbell that held check-ins wait on: armed first, rung per agent, capped,
closed on stop."""

from __future__ import annotations

import asyncio
import time

from appliance.services.doorbell import Doorbell, file_limit_room


def never() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def hold(bell: Doorbell, agent_id: str, timeout_s: float, gone: object = None) -> bool:
    with bell.armed(agent_id) as armed:
        assert armed is not None
        return await armed.wait(timeout_s, gone or never())


def test_a_ring_wakes_only_the_agent_it_is_for() -> None:
    async def scenario() -> tuple[bool, bool]:
        bell = Doorbell(max_held=10)
        mine = asyncio.create_task(hold(bell, "a", 5))
        other = asyncio.create_task(hold(bell, "b", 0.3))
        await asyncio.sleep(0.05)
        assert bell.held == 2
        assert bell.ring(["a"]) == 1
        return await mine, await other

    started = time.monotonic()
    assert asyncio.run(scenario()) == (True, False)
    assert time.monotonic() - started < 2


def test_a_command_made_between_arming_and_waiting_is_not_missed() -> None:
    """The check-in looks for commands after arming; one created while it looks rings
    the armed bell, so the wait that follows returns at once."""

    async def scenario() -> bool:
        bell = Doorbell(max_held=10)
        with bell.armed("a") as armed:
            assert armed is not None
            bell.ring(["a"])  # the command came while the check-in read the database
            started = time.monotonic()
            rung = await armed.wait(5, never())
            assert time.monotonic() - started < 0.5
            return rung

    assert asyncio.run(scenario()) is True


def test_an_unrung_wait_ends_after_its_time_and_frees_its_place() -> None:
    async def scenario() -> tuple[bool, int, bool]:
        bell = Doorbell(max_held=10)
        rung = await hold(bell, "a", 0.1)
        return rung, bell.held, bell.is_holding("a")

    assert asyncio.run(scenario()) == (False, 0, False)


def test_beyond_the_cap_a_check_in_is_answered_at_once() -> None:
    async def scenario() -> tuple[int, int]:
        bell = Doorbell(max_held=1)
        first = asyncio.create_task(hold(bell, "a", 5))
        await asyncio.sleep(0.05)
        with bell.armed("b") as refused:
            assert refused is None
        bell.ring(["a"])
        assert await first
        return bell.refused, bell.held

    assert asyncio.run(scenario()) == (1, 0)


def test_a_client_that_goes_away_frees_its_place_at_once() -> None:
    async def scenario() -> tuple[bool, int]:
        bell = Doorbell(max_held=10)
        gone = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(hold(bell, "a", 5, gone))
        await asyncio.sleep(0.05)
        gone.set_result(None)
        rung = await asyncio.wait_for(waiting, 1)
        return rung, bell.held

    assert asyncio.run(scenario()) == (False, 0)


def test_closing_answers_every_held_check_in_and_refuses_new_ones() -> None:
    async def scenario() -> tuple[list[bool], bool]:
        bell = Doorbell(max_held=10)
        held = [asyncio.create_task(hold(bell, agent, 30)) for agent in "abc"]
        await asyncio.sleep(0.05)
        bell.close()
        answers = await asyncio.wait_for(asyncio.gather(*held), 1)
        with bell.armed("d") as late:
            return answers, late is None

    answers, refused = asyncio.run(scenario())
    # Woken by the stop, not by a command: nothing to deliver.
    assert answers == [False, False, False] and refused


def test_the_open_files_limit_leaves_room_for_everything_else() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert file_limit_room() < soft
