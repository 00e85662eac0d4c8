"""Registry credentials read from docker config files the way the docker CLI writes them."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from agent.scanners.docker_config import RegistryCredentials, config_file, registry_host


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def written(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_credentials_are_found_by_registry_host_as_docker_login_writes_them(
    tmp_path: Path,
) -> None:
    config = written(
        tmp_path / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth("hub-user", "hub-pass")},
                "ghcr.io": {"auth": auth("gh", "token:with:colons")},
                "registry.test:5000": {"auth": auth("local", "")},
            }
        },
    )
    credentials = RegistryCredentials(config)

    assert credentials.for_registry("docker.io") == ("hub-user", "hub-pass")
    assert credentials.for_registry("ghcr.io") == ("gh", "token:with:colons")
    assert credentials.for_registry("registry.test:5000") == ("local", "")
    assert credentials.for_registry("quay.io") is None
    assert credentials.engine_auth("ghcr.io") == {
        "username": "gh",
        "password": "token:with:colons",
        "serveraddress": "ghcr.io",
    }
    assert credentials.engine_auth("quay.io") == {}


def test_docker_config_in_the_environment_comes_before_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written(tmp_path / "home/.docker/config.json", {"auths": {"ghcr.io": {"auth": auth("a", "1")}}})
    written(tmp_path / "elsewhere/config.json", {"auths": {"ghcr.io": {"auth": auth("b", "2")}}})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert RegistryCredentials().for_registry("ghcr.io") == ("a", "1")

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "elsewhere"))
    assert config_file() == tmp_path / "elsewhere/config.json"
    assert RegistryCredentials().for_registry("ghcr.io") == ("b", "2")


def test_a_legacy_dockercfg_is_all_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written(tmp_path / ".dockercfg", {"registry.test": {"auth": auth("old", "school")}})
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert RegistryCredentials().for_registry("registry.test") == ("old", "school")


def test_an_explicit_path_that_does_not_exist_means_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written(tmp_path / ".docker/config.json", {"auths": {"ghcr.io": {"auth": auth("a", "1")}}})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert RegistryCredentials(tmp_path / "absent.json").for_registry("ghcr.io") is None


def test_helpers_and_identity_tokens_give_no_password_and_say_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = written(
        tmp_path / "config.json",
        {
            "auths": {"ghcr.io": {}, "azurecr.test": {"identitytoken": "opaque"}},
            "credsStore": "desktop",
            "credHelpers": {"gcr.io": "gcloud"},
        },
    )
    credentials = RegistryCredentials(config)
    with caplog.at_level(logging.WARNING):
        assert credentials.for_registry("gcr.io") is None
        assert credentials.for_registry("ghcr.io") is None
        assert credentials.for_registry("azurecr.test") is None
    messages = [record.getMessage() for record in caplog.records]
    assert any("docker-credential-gcloud" in m for m in messages)
    assert any("docker-credential-desktop" in m for m in messages)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '["a list"]',
        '{"auths": {"ghcr.io": "text"}}',
        '{"auths": {"x": {"auth": "%%"}}}',
    ],
)
def test_an_unreadable_config_is_a_warning_and_no_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    with caplog.at_level(logging.WARNING):
        credentials = RegistryCredentials(config)
    assert credentials.for_registry("ghcr.io") is None
    assert any("docker config unreadable" in r.getMessage() for r in caplog.records)


def test_registry_keys_are_reduced_to_their_host() -> None:
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("http://registry.test:5000/v2/") == "registry.test:5000"
    assert registry_host("ghcr.io") == "ghcr.io"
