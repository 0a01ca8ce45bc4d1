"""Pure encoder/decoder for ICS wire protocol v1 (shared/spec/wire-v1.md).

No sockets here: every function maps bytes to values or values to bytes, so
the client, the fake test server and the CLI share one codec.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

HDR = struct.Struct(">BBHBBHIIQ")
HDR_LEN = 24
MAX_BODY = 1 << 20

MAGIC_REQ, MAGIC_RES, MAGIC_EVT = 0x80, 0x81, 0x82

# opcodes
GET, QUIT, GETQ, NOOP, VERSION, GETK, GETKQ, QUITQ, STAT = 0x00, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x17, 0x10
SASL_LIST_MECHS, SASL_AUTH = 0x20, 0x21
MAP, MAP_REQUEST, MAP_CONFIRM, MAP_REJECT = 0xC0, 0xC1, 0xC2, 0xC3
DEMAP, DEMAP_DEVICE, DEMAP_BINDING, DEMAP_SERVICE = 0xC4, 0xC5, 0xC6, 0xC7
INQUIRE_DEVICE, INQUIRE_BINDING, WATCH, EXPORT = 0xC8, 0xC9, 0xCA, 0xCB
KEY_ISSUE, KEY_VALIDATE, HISTORY, SNAPSHOT, WHOAMI = 0xD0, 0xD1, 0xD2, 0xD3, 0xD4
PREFS_SET, PREFS_GET, PRINCIPAL_SET, PRINCIPAL_DEL, PRINCIPAL_LIST = 0xD5, 0xD6, 0xD7, 0xD8, 0xD9

# Changes are never re-sent by the client once written (unknown outcome).
CHANGES = frozenset({MAP, MAP_REQUEST, MAP_CONFIRM, MAP_REJECT, DEMAP, DEMAP_DEVICE,
                     DEMAP_BINDING, DEMAP_SERVICE, SNAPSHOT, PREFS_SET, PRINCIPAL_SET,
                     PRINCIPAL_DEL, KEY_ISSUE, QUIT, QUITQ})

EV_MAP_PENDING, EV_MAP_RESULT, EV_DEMAPPED = 0xE0, 0xE1, 0xE2
W_MAP_PENDING, W_MAP_RESULT, W_DEMAPPED = 1, 2, 4
W_ALL = 7
EVENT_NAMES = {EV_MAP_PENDING: "MAP_PENDING", EV_MAP_RESULT: "MAP_RESULT", EV_DEMAPPED: "DEMAPPED"}

ROLES = ("admin", "iot_sp", "tpsp", "generator", "validator")
HISTORY_EVENTS = {1: "map", 2: "demap", 3: "inquiry", 4: "expiry"}

Bytesish = Union[str, bytes]


def b(s: Optional[Bytesish]) -> bytes:
    """str (UTF-8, surrogateescape so any byte round-trips) or bytes -> bytes."""
    if s is None:
        return b""
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    return s.encode("utf-8", "surrogateescape")


def s(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogateescape")


def roles_mask(roles: Union[int, str, Sequence[str]]) -> int:
    """'admin,tpsp' or ['admin','tpsp'] or an int -> role bit mask."""
    if isinstance(roles, int):
        return roles
    if isinstance(roles, str):
        roles = [r for r in roles.split(",") if r]
    mask = 0
    for r in roles:
        r = r.strip()
        if r not in ROLES:
            raise ValueError(f"unknown role {r!r} (known: {', '.join(ROLES)})")
        mask |= 1 << ROLES.index(r)
    return mask


def roles_names(mask: int) -> List[str]:
    return [r for i, r in enumerate(ROLES) if mask & (1 << i)]


# ---- framing ---------------------------------------------------------------

@dataclass
class Frame:
    magic: int
    opcode: int
    status: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes


class DecodeError(ValueError):
    """The peer sent bytes that are not a valid frame or value."""


def encode_request(opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"",
                   opaque: int = 0, cas: int = 0) -> bytes:
    body = len(extras) + len(key) + len(value)
    if len(extras) > 255 or len(key) > 0xFFFF or body > MAX_BODY:
        raise ValueError("request over the wire limits (key <= 65535, body <= 1 MiB)")
    return HDR.pack(MAGIC_REQ, opcode, len(key), len(extras), 0, 0, body,
                    opaque & 0xFFFFFFFF, cas) + extras + key + value


def encode_frame(magic: int, opcode: int, key: bytes = b"", extras: bytes = b"",
                 value: bytes = b"", status: int = 0, opaque: int = 0, cas: int = 0) -> bytes:
    """Any frame (the fake test server uses it for responses and events)."""
    body = len(extras) + len(key) + len(value)
    return HDR.pack(magic, opcode, len(key), len(extras), 0, status, body, opaque, cas) + extras + key + value


def decode_frame(buf: Union[bytes, bytearray, memoryview], max_body: int = 16 * MAX_BODY,
                 magics: Tuple[int, ...] = (MAGIC_RES, MAGIC_EVT)) -> Tuple[Optional[Frame], int]:
    """(frame, bytes used) for a complete frame, (None, 0) when more is needed.

    Raises DecodeError on a bad magic, data type, or lengths."""
    if len(buf) < 1:
        return None, 0
    if buf[0] not in magics:
        raise DecodeError(f"bad magic 0x{buf[0]:02x}")
    if len(buf) < HDR_LEN:
        return None, 0
    magic, op, klen, elen, dtype, status, blen, opaque, cas = HDR.unpack_from(buf, 0)
    if dtype != 0 or klen + elen > blen:
        raise DecodeError("bad header (data type or lengths)")
    if blen > max_body:
        raise DecodeError(f"frame body of {blen} bytes is over the limit")
    if len(buf) < HDR_LEN + blen:
        return None, 0
    o = HDR_LEN
    ex = bytes(buf[o:o + elen])
    key = bytes(buf[o + elen:o + elen + klen])
    val = bytes(buf[o + elen + klen:o + blen])
    return Frame(magic, op, status, opaque, cas, ex, key, val), HDR_LEN + blen


# ---- values ----------------------------------------------------------------

class Reader:
    """Bounds-checked big-endian reader over a value."""

    def __init__(self, data: bytes):
        self.d = memoryview(data)
        self.o = 0

    def take(self, n: int) -> bytes:
        if self.o + n > len(self.d):
            raise DecodeError("value truncated")
        v = bytes(self.d[self.o:self.o + n])
        self.o += n
        return v

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def str16(self) -> bytes:
        return self.take(self.u16())

    def rest(self) -> bytes:
        return self.take(len(self.d) - self.o)


def str16(v: Bytesish) -> bytes:
    raw = b(v)
    if len(raw) > 0xFFFF:
        raise ValueError("string over 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


@dataclass
class Row:
    uri: str
    uti: str
    expires_at: int = 0
    device: Optional[str] = None  # set by EXPORT


@dataclass
class HistoryEntry:
    micros: int
    event: str
    principal: str
    uri: str
    uti: str


@dataclass
class Principal:
    name: str
    roles: List[str]
    scopes: List[str]


@dataclass
class Window:
    weekdays: int  # bit 0 = Monday
    start_min: int
    end_min: int


@dataclass
class Prefs:
    retention_s: int = 0
    allow: List[str] = field(default_factory=list)
    deny: List[str] = field(default_factory=list)
    windows: List[Window] = field(default_factory=list)


@dataclass
class Event:
    code: int
    name: str
    key: bytes           # request ID (MAP_PENDING/RESULT) or device ID (DEMAPPED)
    status: int = 0      # MAP_RESULT outcome
    lsn: int = 0
    serial: Optional[str] = None
    uri: Optional[str] = None
    uti: Optional[str] = None
    device: Optional[str] = None   # MAP_RESULT ok, DEMAPPED
    reason: Optional[str] = None   # MAP_RESULT failed


@dataclass
class KeyBatch:
    issued_at: int
    key_id: int
    keys: List[str]       # RFC 4122 UUID strings
    raw: bytes            # the signed batch, as KEY_VALIDATE wants it


def parse_rows(v: bytes, with_device: bool = False) -> Tuple[int, List[Row]]:
    r = Reader(v)
    cursor = r.u64() if with_device else 0
    n = r.u32()
    if n > len(v):
        raise DecodeError("row count over the value size")
    rows = []
    for _ in range(n):
        dev = s(r.str16()) if with_device else None
        uri, uti = s(r.str16()), s(r.str16())
        rows.append(Row(uri, uti, r.u32(), dev))
    return cursor, rows


def parse_history(v: bytes) -> List[HistoryEntry]:
    r = Reader(v)
    out = []
    for _ in range(min(r.u32(), len(v))):
        t, ev = r.u64(), r.u8()
        out.append(HistoryEntry(t, HISTORY_EVENTS.get(ev, str(ev)), s(r.str16()), s(r.str16()), s(r.str16())))
    return out


def parse_principals(v: bytes) -> List[Principal]:
    r = Reader(v)
    out = []
    for _ in range(min(r.u32(), len(v))):
        name, roles = s(r.str16()), r.u8()
        scopes = [s(r.str16()) for _ in range(r.u16())]
        out.append(Principal(name, roles_names(roles), scopes))
    return out


def encode_prefs(p: Prefs) -> bytes:
    out = [struct.pack(">IH", p.retention_s, len(p.allow))]
    out += [str16(x) for x in p.allow]
    out.append(struct.pack(">H", len(p.deny)))
    out += [str16(x) for x in p.deny]
    out.append(struct.pack(">H", len(p.windows)))
    out += [struct.pack(">BHH", w.weekdays, w.start_min, w.end_min) for w in p.windows]
    return b"".join(out)


def parse_prefs(v: bytes) -> Prefs:
    r = Reader(v)
    p = Prefs(r.u32())
    p.allow = [s(r.str16()) for _ in range(r.u16())]
    p.deny = [s(r.str16()) for _ in range(r.u16())]
    for _ in range(r.u16()):
        p.windows.append(Window(r.u8(), r.u16(), r.u16()))
    return p


def encode_principal(roles: int, secret: Bytesish = b"", fingerprint: Bytesish = b"",
                     scopes: Sequence[Bytesish] = ()) -> bytes:
    return (struct.pack(">B", roles) + str16(secret) + str16(fingerprint) +
            struct.pack(">H", len(scopes)) + b"".join(str16(x) for x in scopes))


def parse_key_batch(v: bytes) -> KeyBatch:
    r = Reader(v)
    t, kid, n = r.u64(), r.u8(), r.u16()
    keys = []
    for _ in range(n):
        h = r.take(16).hex()
        keys.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    r.take(32)
    return KeyBatch(t, kid, keys, bytes(v))


def parse_event(f: Frame) -> Event:
    r = Reader(f.value)
    ev = Event(f.opcode, EVENT_NAMES.get(f.opcode, f"0x{f.opcode:02x}"), f.key, f.status, f.cas)
    if f.opcode == EV_MAP_PENDING:
        ev.serial, ev.uri, ev.uti = s(r.str16()), s(r.str16()), s(r.str16())
    elif f.opcode == EV_MAP_RESULT:
        text = s(r.str16())
        if f.status == 0:
            ev.device = text
        else:
            ev.reason = text
    elif f.opcode == EV_DEMAPPED:
        ev.device = s(f.key)
        ev.uri, ev.uti = s(r.str16()), s(r.str16())
    else:
        raise DecodeError(f"unknown event code 0x{f.opcode:02x}")
    return ev
