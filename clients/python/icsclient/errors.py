"""One exception class per ICS wire status, plus the transport errors.

Every server refusal raises an IcsError subclass carrying .status (the wire
code) and .message (the server's text), so callers catch exactly what they
mean: `except NotFound`, `except AccessDenied`.
"""
from __future__ import annotations

from typing import Dict, Type


class IcsError(Exception):
    """Base of every error this client raises."""
    status: int = -1
    name: str = "ERROR"

    def __init__(self, message: str = "", status: int = -1):
        super().__init__(message or self.name)
        self.message = message
        if status >= 0:
            self.status = status

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name


class StatusError(IcsError):
    """The server answered with a non-OK status."""


class NotFound(StatusError):
    status, name = 0x0001, "NOT_FOUND"


class Exists(StatusError):
    status, name = 0x0002, "EXISTS"


class TooLarge(StatusError):
    status, name = 0x0003, "TOO_LARGE"


class InvalidRequest(StatusError):
    status, name = 0x0004, "EINVAL"


class AuthError(StatusError):
    status, name = 0x0020, "AUTH_ERROR"


class AccessDenied(StatusError):
    status, name = 0x0024, "ACCESS_DENIED"


class UnknownCommand(StatusError):
    status, name = 0x0081, "UNKNOWN_COMMAND"


class OutOfMemory(StatusError):
    status, name = 0x0082, "ENOMEM"


class NotSupported(StatusError):
    status, name = 0x0083, "NOT_SUPPORTED"


class InternalError(StatusError):
    status, name = 0x0084, "INTERNAL"


class TempFail(StatusError):
    status, name = 0x0086, "TMPFAIL"


class KeyRotated(StatusError):
    status, name = 0x00C1, "KEY_ROTATED"


class BadSignature(StatusError):
    status, name = 0x00C2, "BAD_SIGNATURE"


class UnknownStatus(StatusError):
    name = "UNKNOWN_STATUS"


class IcsConnectionError(IcsError, ConnectionError):
    """Could not reach the server, or the connection broke."""
    name = "CONNECTION"


class Timeout(IcsConnectionError, TimeoutError):
    """No answer within the client's timeout."""
    name = "TIMEOUT"


class UnknownOutcome(IcsConnectionError):
    """A change was sent but no answer came: it may or may not be applied.

    The client never re-sends it by itself; check (inquire) and decide."""
    name = "UNKNOWN_OUTCOME"


class ProtocolError(IcsError):
    """The server sent bytes that are not valid wire v1."""
    name = "PROTOCOL"


BY_STATUS: Dict[int, Type[StatusError]] = {
    c.status: c for c in (NotFound, Exists, TooLarge, InvalidRequest, AuthError, AccessDenied,
                          UnknownCommand, OutOfMemory, NotSupported, InternalError, TempFail,
                          KeyRotated, BadSignature)
}


def error_for(status: int, message: str = "") -> StatusError:
    cls = BY_STATUS.get(status)
    if cls is None:
        e = UnknownStatus(message or f"status 0x{status:04x}", status)
        e.name = f"STATUS_0x{status:04X}"
        return e
    return cls(message)
