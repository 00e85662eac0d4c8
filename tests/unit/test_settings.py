"""Start-up settings come from flags > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.settings import SettingsError, load_settings


def test_defaults_apply_when_nothing_is_given(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path}, environ={})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_path == tmp_path / "redflag.db"


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('host = "10.0.0.1"\nport = 9000\nlog_level = "debug"\n')
    env = {"REDFLAG_DATA_DIR": str(tmp_path), "REDFLAG_PORT": "9100"}
    settings = load_settings({"port": 9200}, environ=env)
    assert settings.data_dir == tmp_path
    assert settings.port == 9200
    assert load_settings({}, environ=env).port == 9100
    assert load_settings({}, environ=env).host == "10.0.0.1"
    assert load_settings({}, environ=env).log_level == "debug"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"port": 70000}, {}, "setting 'port'"),
        ({}, {"REDFLAG_PORT": "eighty"}, "setting 'port': cannot use 'eighty'"),
        ({"log_level": "loud"}, {}, "setting 'log_level'"),
    ],
)
def test_an_invalid_setting_is_named_in_the_error(
    tmp_path: Path, flags: dict, env: dict, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"data_dir": tmp_path, **flags}, environ=env)


def test_an_unknown_key_in_the_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("prot = 80\n")
    with pytest.raises(SettingsError, match=r"unknown setting.*prot"):
        load_settings({"data_dir": tmp_path}, environ={})


def test_a_key_file_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"'key_file'.*inside the data dir"):
        load_settings({"data_dir": tmp_path, "key_file": tmp_path / "master.key"}, environ={})
