"""Why `redflag-agent register` failed: one line that names the cause and what to do,
and an exit code per cause, so that an install script can tell them apart. The codes are
part of the interface (docs/agent.md, "Register": exit codes)."""

from __future__ import annotations

from agent.enrol import ClockSkewed, HostTagsRefused, SeatsUsedUp, TokenRefused
from agent.http_client import (
    CertificateNameMismatch,
    ConnectFailed,
    NameNotResolved,
    NotAURL,
    TimedOut,
    TLSFailed,
)
from agent.trust import FingerprintMismatch

USAGE = 2
NAME_NOT_RESOLVED = 3
NO_CONNECTION = 4
TLS_FAILED = 5
CLOCK_SKEWED = 6
FINGERPRINT_MISMATCH = 7
TOKEN_REFUSED = 8
SEATS_USED_UP = 9
HOST_TAGS_REFUSED = 10

_ASK_ADMIN = "ask your admin for a new one ('redflag-appliance token create')"
_TOKEN_STATES = {
    "unknown": "the appliance does not know this registration token (mistyped, cut short, "
    "or made by another appliance): copy it again whole, or " + _ASK_ADMIN,
    "expired": "the registration token has expired: " + _ASK_ADMIN,
    "revoked": "the registration token was revoked: " + _ASK_ADMIN,
}


def explain(failure: BaseException) -> tuple[int, str] | None:
    """(exit code, the line to print) for a failure with a cause of its own; None for
    the rest, which the CLI reports as any other error."""
    if isinstance(failure, NameNotResolved):
        return NAME_NOT_RESOLVED, (
            f"{failure}: check the host name in --server, or use the appliance's IP address"
        )
    if isinstance(failure, TimedOut):
        return NO_CONNECTION, (
            f"{failure}: a firewall may drop the traffic, or the address is wrong; "
            "'curl URL/healthz' from this host shows which"
        )
    if isinstance(failure, ConnectFailed) and not isinstance(failure, NotAURL):
        return NO_CONNECTION, (
            f"{failure}: check the address and port in --server, that the appliance runs, "
            "and that it listens on an address this host reaches (it listens on "
            "127.0.0.1 unless told otherwise)"
        )
    if isinstance(failure, CertificateNameMismatch):
        return TLS_FAILED, f"{failure}: use the name the certificate was issued for in --server"
    if isinstance(failure, TLSFailed):
        return TLS_FAILED, (
            f"{failure}: install the CA that signed the appliance's certificate on this host "
            "(Debian: copy it to /usr/local/share/ca-certificates/ and run "
            "update-ca-certificates) or point SSL_CERT_FILE at it"
        )
    if isinstance(failure, ClockSkewed):
        return CLOCK_SKEWED, (
            f"{failure}: set this host's clock right (timedatectl set-ntp true, or chrony) "
            "and register again"
        )
    if isinstance(failure, FingerprintMismatch):
        return FINGERPRINT_MISMATCH, (
            f"{failure}: check that --server is the appliance that made the token (the part "
            "after the dot must equal the fingerprint 'redflag-appliance keys export-root' "
            "prints there), or ask for a token from this one"
        )
    if isinstance(failure, TokenRefused):
        return TOKEN_REFUSED, _TOKEN_STATES.get(failure.reason, _TOKEN_STATES["unknown"])
    if isinstance(failure, SeatsUsedUp):
        return SEATS_USED_UP, (
            f"{failure}: ask your admin for a token with more seats "
            "('redflag-appliance token create --seats N')"
        )
    if isinstance(failure, HostTagsRefused):
        return HOST_TAGS_REFUSED, (
            f"{failure}: register without --tag (an admin can tag the host afterwards), or "
            "ask for a token that allows host tags"
        )
    return None
