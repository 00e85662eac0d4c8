"""`redflag-agent register` names the cause of each failure and what to do, in one line,
with an exit code per cause (agent/register_failures.py); each cause is made for real on
loopback: a name that does not resolve, a closed port, a TLS server with a self-signed
certificate, a clock set back (libfaketime), another appliance's token, a token that is
unknown, expired, revoked or used up, a token that refuses host tags."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.enrol import ClockSkewed, register
from tests.integration.conftest import Fleet, host_facts

pytestmark = pytest.mark.slow

AGENT = [sys.executable, "-m", "agent"]
# A well-formed token for the cases that fail before any token is looked at.
SOME_TOKEN = "rf_reg_" + "s" * 32 + "." + "a" * 32
ERROR = "redflag-agent: error: "
NEW_TOKEN = "ask your admin for a new one ('redflag-appliance token create')"


def agent_register(
    state_dir: Path,
    server: str,
    token: str,
    *more: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *prefix,
            *AGENT,
            "register",
            "--state-dir",
            str(state_dir),
            "--server",
            server,
            *(
                "--token",
                token,
                *more,
            ),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_refused(done: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert (done.returncode, done.stderr) == (code, f"{ERROR}{line}\n"), done.stdout
    assert done.stdout == ""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_name_that_does_not_resolve_is_exit_code_3(tmp_path: Path) -> None:
    with pytest.raises(socket.gaierror) as lookup:
        socket.getaddrinfo("nonexistent.invalid", 8080)

    done = agent_register(tmp_path / "state", "http://nonexistent.invalid:8080", SOME_TOKEN)

    assert_refused(
        done,
        3,
        f"cannot resolve nonexistent.invalid: {lookup.value.strerror}: check the host name "
        "in --server, or use the appliance's IP address",
    )
    assert not (tmp_path / "state" / "identity.json").exists()


def test_a_closed_port_is_exit_code_4(tmp_path: Path) -> None:
    port = closed_port()

    done = agent_register(tmp_path / "state", f"http://127.0.0.1:{port}", SOME_TOKEN)

    assert_refused(
        done,
        4,
        f"connection refused by http://127.0.0.1:{port}: check the address and port in "
        "--server, that the appliance runs, and that it listens on an address this host "
        "reaches (it listens on 127.0.0.1 unless told otherwise)",
    )
    assert not (tmp_path / "state" / "identity.json").exists()


@contextlib.contextmanager
def tls_server(certificate: Path, key: Path) -> Iterator[int]:
    """A TLS server on loopback (the standard library's ssl) that completes handshakes
    with whoever trusts its certificate and then closes; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name appliance.test (and no other)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "2", "-subj", "/CN=appliance.test"),
            *("-addext", "subjectAltName=DNS:appliance.test"),
            *("-keyout", str(key), "-out", str(certificate)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return certificate, key


def test_a_self_signed_certificate_is_exit_code_5(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    with tls_server(*self_signed) as port:
        done = agent_register(tmp_path / "state", f"https://127.0.0.1:{port}", SOME_TOKEN)

    assert_refused(
        done,
        5,
        f"TLS certificate of https://127.0.0.1:{port} not trusted: self-signed certificate: "
        "install the CA that signed the appliance's certificate on this host (Debian: copy "
        "it to /usr/local/share/ca-certificates/ and run update-ca-certificates) or point "
        "SSL_CERT_FILE at it",
    )


def test_a_trusted_certificate_for_another_name_is_exit_code_5_naming_the_mismatch(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    certificate, _ = self_signed
    with tls_server(*self_signed) as port:
        done = agent_register(
            tmp_path / "state",
            f"https://localhost:{port}",
            SOME_TOKEN,
            env={"SSL_CERT_FILE": str(certificate)},  # trusted, as docs/agent.md says
        )

    assert_refused(
        done,
        5,
        f"TLS certificate of https://localhost:{port} is not for that name: Hostname "
        "mismatch, certificate is not valid for 'localhost': use the name the certificate "
        "was issued for in --server",
    )


def faketime_prefix(offset: str) -> tuple[str, ...]:
    """Run a process with its wall clock moved by `offset` (libfaketime); the monotonic
    clock stays true, so its timeouts do."""
    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed (run-tests.sh installs it)")
    return ("faketime", "-f", offset)


def test_a_clock_ten_minutes_behind_is_exit_code_6_with_the_skew_in_seconds(
    fleet: Fleet,
) -> None:
    token = fleet.registration_token()
    state_dir = fleet.state_dir()

    done = agent_register(
        state_dir,
        fleet.appliance.url,
        token,
        prefix=faketime_prefix("-600"),
        env={"FAKETIME_DONT_FAKE_MONOTONIC": "1"},
    )

    # The Date header has whole seconds: the skew measured is 600 s, give or take one.
    lines = {
        f"{ERROR}this host's clock is {seconds} s behind the appliance's (the appliance "
        "accepts 300 s either way): set this host's clock right (timedatectl set-ntp true, "
        "or chrony) and register again\n"
        for seconds in (599, 600, 601)
    }
    assert done.returncode == 6, done.stderr
    assert done.stderr in lines
    assert not (state_dir / "identity.json").exists()
    # Refused before anything was sent: no seat taken, nothing on record.
    assert fleet.db_rows("SELECT seats_used FROM registration_tokens") == [(0,)]


class DateDropping(httpx.HTTPTransport):
    """A proxy that drops the Date header, so only the appliance can see the skew."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
        return httpx.Response(response.status_code, headers=headers, content=response.content)


def test_without_a_date_header_the_appliances_own_refusal_gives_the_skew(fleet: Fleet) -> None:
    token = fleet.registration_token()
    state_dir = fleet.state_dir()

    with pytest.raises(ClockSkewed) as refused:
        register(
            state_dir,
            fleet.appliance.url,
            token,
            host_facts(),
            transport=DateDropping(),
            clock=lambda: time.time() - 900,
        )

    assert refused.value.skew_s in (-900, -901)
    assert refused.value.__cause__.errors[0]["field"] == "timestamp"  # type: ignore[union-attr]
    assert not (state_dir / "identity.json").exists()


def test_a_token_of_another_appliance_is_exit_code_7(fleet: Fleet) -> None:
    secret = fleet.registration_token().split(".")[0]
    state_dir = fleet.state_dir()

    done = agent_register(state_dir, fleet.appliance.url, f"{secret}.{'a' * 32}")

    assert_refused(
        done,
        7,
        "the appliance's root key does not match the fingerprint in the registration "
        "token: this is not the appliance the token came from (or someone is in between). "
        "Nothing was saved: check that --server is the appliance that made the token (the "
        "part after the dot must equal the fingerprint 'redflag-appliance keys export-root' "
        "prints there), or ask for a token from this one",
    )
    assert fleet.db_rows("SELECT seats_used FROM registration_tokens") == [(0,)]


@pytest.mark.parametrize(
    ("problem", "line"),
    [
        (
            "unknown",
            "the appliance does not know this registration token (mistyped, cut short, or "
            f"made by another appliance): copy it again whole, or {NEW_TOKEN}",
        ),
        ("expired", f"the registration token has expired: {NEW_TOKEN}"),
        ("revoked", f"the registration token was revoked: {NEW_TOKEN}"),
    ],
)
def test_a_token_that_is_unknown_expired_or_revoked_is_exit_code_8(
    fleet: Fleet, problem: str, line: str
) -> None:
    token = fleet.registration_token()
    if problem == "unknown":
        secret, fingerprint = token.split(".")
        token = f"{secret[:-4]}AAAA.{fingerprint}"
    elif problem == "expired":
        fleet.db_execute("UPDATE registration_tokens SET expires_at = '2020-01-01T00:00:00Z'")
    else:
        assert fleet.api("POST", f"/tokens/{fleet.tokens()[0]['id']}/revoke").status_code == 200
    state_dir = fleet.state_dir()

    done = agent_register(state_dir, fleet.appliance.url, token)

    assert_refused(done, 8, line)
    assert not state_dir.exists() or not any(state_dir.iterdir())


def test_a_token_with_one_seat_used_twice_is_exit_code_9(fleet: Fleet) -> None:
    token = fleet.registration_token(seats=1)
    first = agent_register(fleet.state_dir(), fleet.appliance.url, token)
    assert first.returncode == 0, first.stderr

    second = agent_register(fleet.state_dir(), fleet.appliance.url, token)

    assert_refused(
        second,
        9,
        "every seat of the registration token is taken: ask your admin for a token with "
        "more seats ('redflag-appliance token create --seats N')",
    )
    assert fleet.db_rows("SELECT count(*) FROM agents") == [(1,)]


def test_a_token_that_refuses_host_tags_is_exit_code_10_and_takes_no_seat(
    fleet: Fleet,
) -> None:
    token = fleet.registration_token(seats=1, tags=["kiosk"], allow_host_tags=False)

    done = agent_register(fleet.state_dir(), fleet.appliance.url, token, "--tag", "web")

    assert_refused(
        done,
        10,
        "this registration token gives hosts its own tags only: register without --tag (an "
        "admin can tag the host afterwards), or ask for a token that allows host tags",
    )
    assert fleet.db_rows("SELECT seats_used FROM registration_tokens") == [(0,)]
    reasons = fleet.db_rows(
        "SELECT json_extract(details, '$.reason') FROM audit_log "
        "WHERE action = 'agent.registration_refused'"
    )
    assert reasons == [("host tags not allowed",)]
    # Without --tag the same token works, and the host gets the token's tag.
    again = agent_register(fleet.state_dir(), fleet.appliance.url, token)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1] == "tags: kiosk"


@pytest.mark.parametrize("tag", ["Web Server", "-o", "a" * 41, "web/1", ""])
def test_a_tag_that_is_not_a_tag_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path, tag: str
) -> None:
    # The closed port proves it: had anything been sent, the answer would be exit code 4.
    done = agent_register(
        tmp_path / "state", f"http://127.0.0.1:{closed_port()}", SOME_TOKEN, f"--tag={tag}"
    )

    assert_refused(
        done,
        2,
        f"--tag {tag!r}: a tag is 1-40 letters, digits and . _ : - and starts with a letter "
        "or digit",
    )
