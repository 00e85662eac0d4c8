"""What can go wrong in a use case, by kind: each kind is one HTTP status, mapped in
one place (appliance/api/errors.py for the API, web/errors.py for pages). A service
raises a subclass that names the case (`UpdateNotFound`, `MoveRefused`); the edge
answers by its kind."""

from __future__ import annotations


class DomainError(Exception):
    status = 400


class NotFound(DomainError, LookupError):
    """What the request names does not exist."""

    status = 404


class Invalid(DomainError, ValueError):
    """The input is wrong; `field` names which part, when one does."""

    status = 422

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def described(self) -> str:
        """The message with the field it is about, for a line of text ('seats: ...')."""
        return f"{self.field}: {self.message}" if self.field else self.message


class Conflict(DomainError):
    """The input is fine, but the current state does not allow it (already revoked,
    an update that is installing, the last admin...)."""

    status = 409


class Forbidden(DomainError):
    """Who asked may not do this."""

    status = 403
