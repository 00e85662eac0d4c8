"""The Backups page's restore steps fit how the appliance runs: a service of systemd's
system manager (as its own user), a user's service, a container, or a process started
by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.services.restore_help import HostFacts, restore_steps, systemd_unit
from appliance.settings import Settings, load_settings

SYSTEM_V2 = "0::/system.slice/redflag-appliance.service\n"
SYSTEM_V1 = (
    "12:pids:/system.slice/redflag-appliance.service\n"
    "1:name=systemd:/system.slice/redflag-appliance.service\n0::/\n"
)
USER = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/redflag.service\n"
TERMINAL = "0::/user.slice/user-1000.slice/session-4.scope\n"
CI_JOB = "0::/system.slice/runner.service\n"  # started by a CI runner, not by systemd


def _facts(
    cgroup: str, parent: str, user: str = "redflag", in_container: bool = False, **environ: str
) -> HostFacts:
    return HostFacts(
        cgroup=cgroup,
        parent=parent,
        user=user,
        executable="/opt/redflag/venv/bin/redflag-appliance",
        environ=environ,
        in_container=in_container,
    )


@pytest.fixture
def system_settings() -> Settings:
    return load_settings(
        {"data_dir": Path("/var/lib/redflag"), "key_file": Path("/etc/redflag/master.key")},
        environ={},
    )


@pytest.mark.parametrize(
    ("cgroup", "parent", "unit"),
    [
        (SYSTEM_V2, "systemd", ("redflag-appliance.service", False)),
        (SYSTEM_V1, "systemd", ("redflag-appliance.service", False)),
        (USER, "systemd", ("redflag.service", True)),
        (TERMINAL, "bash", ("", False)),
        (CI_JOB, "Runner.Worker", ("", False)),
        ("0::/\n", "tini", ("", False)),  # a container
        ("", "systemd", ("", False)),  # /proc not readable
    ],
)
def test_the_way_the_appliance_was_started_is_recognised(
    cgroup: str, parent: str, unit: tuple[str, bool]
) -> None:
    assert systemd_unit(_facts(cgroup, parent)) == unit


def test_a_system_service_restores_as_its_user_with_sudo(system_settings: Settings) -> None:
    facts = _facts(SYSTEM_V2, "systemd", REDFLAG_KEY_FILE="/etc/redflag/master.key")
    steps = restore_steps(system_settings, facts)
    assert (steps.how, steps.unit) == ("system service", "redflag-appliance.service")
    assert steps.commands == [
        "sudo systemctl stop redflag-appliance.service",
        "sudo runuser -u redflag -- env REDFLAG_KEY_FILE=/etc/redflag/master.key "
        "/opt/redflag/venv/bin/redflag-appliance restore /var/lib/redflag/backups/FILE.db "
        "--data-dir /var/lib/redflag",
        "sudo systemctl start redflag-appliance.service",
    ]


def test_a_user_service_restores_with_systemctl_user(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path / "data"}, environ={})
    steps = restore_steps(settings, _facts(USER, "systemd", user="me"))
    assert steps.how == "user service"
    assert steps.commands[0] == "systemctl --user stop redflag.service"
    assert "sudo" not in " ".join(steps.commands)
    assert steps.commands[1].endswith(f"--data-dir {(tmp_path / 'data').resolve()}")
    assert steps.commands[2] == "systemctl --user start redflag.service"


def test_by_hand_it_says_to_stop_the_process_and_start_it_again(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path / "my data"}, environ={})
    steps = restore_steps(settings, _facts(TERMINAL, "bash", user="me"))
    assert steps.how == "by hand" and steps.unit == ""
    assert "systemctl" not in " ".join(steps.commands)
    assert "Ctrl-C" in steps.commands[0]
    data_dir = (tmp_path / "my data").resolve()
    assert f"restore '{data_dir}/backups/FILE.db' --data-dir '{data_dir}'" in steps.commands[1]
    assert steps.commands[2].startswith(
        f"/opt/redflag/venv/bin/redflag-appliance serve --data-dir '{data_dir}'"
    )


def test_in_a_container_it_restores_from_a_one_off_container_of_the_service() -> None:
    # As packaging/Dockerfile runs it: data in /data, the key file from a secret.
    settings = load_settings(
        {"data_dir": Path("/data"), "key_file": Path("/run/secrets/redflag_master_key")},
        environ={},
    )
    facts = _facts(
        "0::/\n",
        "",
        user="redflag",
        in_container=True,
        REDFLAG_KEY_FILE="/run/secrets/redflag_master_key",
    )
    steps = restore_steps(settings, facts)
    assert steps.how == "container"
    assert steps.commands == [
        "docker compose stop appliance   # the service in packaging/compose.yaml",
        "docker compose run --rm appliance restore /data/backups/FILE.db",
        "docker compose start appliance",
    ]
