"""icsclient — the Python client for icsd (ICS wire protocol v1, ITU-T Y.4462).

Standard library only. See Client for the operations, errors for the
exception per wire status, wire for the pure codec, and docs/clients.md.
"""
from .client import Client, Pipeline
from .errors import (AccessDenied, AuthError, BadSignature, Exists, IcsConnectionError, IcsError,
                     InternalError, InvalidRequest, KeyRotated, NotFound, NotSupported,
                     OutOfMemory, ProtocolError, StatusError, TempFail, Timeout, TooLarge,
                     UnknownCommand, UnknownOutcome, UnknownStatus, error_for)
from .wire import (W_ALL, W_DEMAPPED, W_MAP_PENDING, W_MAP_RESULT, Event, HistoryEntry, KeyBatch,
                   Prefs, Principal, Row, Window)
from .cred import Credential, find_credential

__version__ = "1.0.0"
__all__ = [
    "Client", "Pipeline", "Credential", "find_credential",
    "IcsError", "StatusError", "NotFound", "Exists", "TooLarge", "InvalidRequest", "AuthError",
    "AccessDenied", "UnknownCommand", "OutOfMemory", "NotSupported", "InternalError", "TempFail",
    "KeyRotated", "BadSignature", "UnknownStatus", "IcsConnectionError", "Timeout",
    "UnknownOutcome", "ProtocolError", "error_for",
    "Event", "HistoryEntry", "KeyBatch", "Prefs", "Principal", "Row", "Window",
    "W_ALL", "W_DEMAPPED", "W_MAP_PENDING", "W_MAP_RESULT",
]
