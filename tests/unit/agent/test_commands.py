"""Command handlers: one module per kind, found through the registry; each does what
its command asks with the tools it is lent, and says what it lacks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.breaker import CircuitBreaker
from agent.commands import CommandContext, HostTools, RapidMode, handler_for, handles, run_command
from agent.commands.rapid_mode import RAPID_MAX_S
from agent.config import AgentConfig
from agent.outbox import Outbox
from agent.plugins import import_every_module
from agent.scanners.apt import AptInstaller
from agent.scanners.command import CommandScanner
from kernel.protocol import Command
from tests.fakes.apt import install_fake_apt, path_with
from tests.unit.agent.scanners.test_apt import STATE


def command(kind: str, **params: Any) -> Command:
    return Command(
        command_id=7,
        agent_id="0b7e7a5c-1111-4111-8111-000000000001",
        seq=1,
        kind=kind,
        issued_at=0,
        expires_at=60,
        key_id="a" * 16,
        params=params,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def session_only(outbox: Outbox, clock: Clock | None = None) -> CommandContext:
    clock = clock or Clock()
    return CommandContext(clock=clock, outbox=outbox, rapid=RapidMode(clock))


@pytest.mark.appliance
def test_every_command_kind_the_appliance_sends_has_a_handler() -> None:
    from appliance.services.commands import KINDS  # imported here: the appliance needs 3.11

    assert [kind for kind in KINDS if handler_for(kind) is None] == []


def test_a_command_kind_this_agent_does_not_know_fails_with_its_name(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="does not know command 'self_update'"):
        run_command(command("self_update"), session_only(outbox))


def test_a_second_handler_for_a_known_kind_is_refused() -> None:
    assert handler_for("echo") is not None
    with pytest.raises(ValueError, match="'echo' has two handlers"):
        handles("echo")(lambda command, context: {})


def test_echo_and_noop_answer_without_touching_the_host(outbox: Outbox) -> None:
    context = session_only(outbox)
    assert run_command(command("echo", text="hello"), context) == {"echo": "hello"}
    assert run_command(command("noop"), context) == {}


def test_rapid_mode_speeds_up_check_ins_for_a_while_and_ends_by_itself(outbox: Outbox) -> None:
    clock = Clock()
    context = session_only(outbox, clock)
    assert run_command(command("rapid_mode", seconds=60), context) == {
        "rapid_until": int(clock.now) + 60
    }
    assert context.rapid.active()
    clock.now += 61
    assert not context.rapid.active()
    for seconds in (-1, RAPID_MAX_S + 1, "60"):
        with pytest.raises(ValueError, match="rapid_mode seconds"):
            run_command(command("rapid_mode", seconds=seconds), context)


def test_a_session_without_the_daemons_tools_says_what_it_lacks(outbox: Outbox) -> None:
    context = session_only(outbox)
    assert run_command(command("scan"), context) == {"scanned": []}
    with pytest.raises(ValueError, match="no scanner 'apt' on this host"):
        run_command(command("scan", source="apt"), context)
    with pytest.raises(ValueError, match="no installer for 'apt'"):
        run_command(command("install", source="apt", packages=["openssl"]), context)
    with pytest.raises(RuntimeError, match="does not report on its host"):
        run_command(command("collect_system_info"), context)
    with pytest.raises(PermissionError, match="allow_reboot = true"):
        run_command(command("reboot"), context)


def test_scan_runs_the_named_scanner_through_the_daemons_runner(outbox: Outbox) -> None:
    ran: list[str] = []
    scanners = [CommandScanner(name, ("true",), 5) for name in ("mine", "theirs")]
    tools = HostTools(scanners=scanners, run_scanner=lambda scanner: ran.append(scanner.name))
    context = CommandContext(Clock(), outbox, RapidMode(Clock()), tools=tools)
    assert run_command(command("scan", source="theirs"), context) == {"scanned": ["theirs"]}
    assert run_command(command("scan"), context) == {"scanned": ["mine", "theirs"]}
    assert ran == ["theirs", "mine", "theirs"]


def apt_context(outbox: Outbox, breaker: CircuitBreaker, done: list[str]) -> CommandContext:
    tools = HostTools(
        config=AgentConfig(),
        installers={"apt": AptInstaller()},
        breakers={"install:apt": breaker},
        after_install=lambda: done.append("after install"),
    )
    delivered = lambda: done.append("delivered")  # noqa: E731
    return CommandContext(Clock(), outbox, RapidMode(Clock()), deliver=delivered, tools=tools)


def test_install_streams_the_output_and_answers_with_the_install_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox: Outbox
) -> None:
    install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    breaker = CircuitBreaker("install:apt")
    breaker.record_failure("earlier")
    done: list[str] = []

    result = run_command(
        command("install", source="apt", packages=["openssl"]), apt_context(outbox, breaker, done)
    )

    assert result["installed"] == [{"package": "openssl", "from": "3.0.11-1", "to": "3.0.13-1"}]
    assert result["failed"] == [] and "Setting up openssl" in result["output_tail"]
    chunks = [e for e in outbox.next_batch(100, 10_000_000) if e.kind == "command.output"]
    assert chunks and all(e.payload["command_id"] == 7 for e in chunks)
    assert "Setting up openssl (3.0.13-1)" in "\n".join(e.payload["text"] for e in chunks)
    assert breaker.consecutive_failures == 0
    assert done[0] == "delivered" and done[-1] == "after install"


def test_an_install_behind_an_open_breaker_is_refused_before_any_tool_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox: Outbox
) -> None:
    state_file = install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    breaker = CircuitBreaker("install:apt", failure_threshold=1)
    breaker.record_failure("dpkg was interrupted")
    context = apt_context(outbox, breaker, [])

    with pytest.raises(RuntimeError, match=r"paused after repeated failures.*dpkg was interrupted"):
        run_command(command("install", source="apt", packages=["openssl"]), context)
    assert not state_file.with_suffix(".calls").exists(), "a tool ran"


@pytest.mark.parametrize("kind", ["install", "dry_run"])
@pytest.mark.parametrize("packages", [["openssl", "-y"], "openssl", [], ["$(reboot)"]])
def test_hostile_or_missing_package_names_are_refused_before_any_tool_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox: Outbox, kind: str, packages: Any
) -> None:
    state_file = install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    context = apt_context(outbox, CircuitBreaker("install:apt"), [])
    with pytest.raises(ValueError):
        run_command(command(kind, source="apt", packages=packages), context)
    assert not state_file.with_suffix(".calls").exists(), "a tool ran"


def test_a_dry_run_answers_with_the_whole_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox: Outbox
) -> None:
    install_fake_apt(tmp_path / "bin", STATE)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    context = apt_context(outbox, CircuitBreaker("install:apt"), [])
    plan = run_command(command("dry_run", source="apt", packages=["openssl"]), context)
    assert [u["package"] for u in plan["upgrades"]] == ["openssl"]
    assert [r["package"] for r in plan["removals"]] == ["libold1"]


def test_every_module_of_a_plugin_package_is_loaded_once_and_a_broken_one_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    package = tmp_path / "toy_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("LOADED = []\n")
    (package / "first.py").write_text("from toy_plugins import LOADED\nLOADED.append('first')\n")
    (package / "broken.py").write_text("raise ImportError('needs a library this host lacks')\n")
    (package / "second.py").write_text("from toy_plugins import LOADED\nLOADED.append('second')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_plugins", raising=False)

    with caplog.at_level(logging.ERROR, logger="redflag.agent.plugins"):
        import_every_module("toy_plugins")
        import_every_module("toy_plugins")

    assert sys.modules["toy_plugins"].LOADED == ["first", "second"]
    [record] = caplog.records
    assert "toy_plugins.broken" in record.getMessage()
    assert "needs a library this host lacks" in record.getMessage()
    for name in ("toy_plugins", "toy_plugins.first", "toy_plugins.second"):
        monkeypatch.delitem(sys.modules, name)
