"""The ICS Python client: one connection, every wire-v1 operation.

    from icsclient import Client, NotFound
    with Client("127.0.0.1", 11311, user="admin", secret="...") as c:
        c.map("fridge-1", "https://shop.example/orders", "uti-1")
        rows = c.inquire_device("fridge-1")

Semantics (the same as the C library's, docs/clients.md):
- every call has a timeout (Timeout); a refusal raises its StatusError
  subclass (NotFound, Exists, AccessDenied, ...);
- a broken connection is reopened (and re-authenticated, WATCH re-armed) on
  the next call; a read is retried once on the new connection, but a change
  whose bytes were written is never re-sent: it raises UnknownOutcome;
- a Client is not thread-safe: use one per thread.
"""
from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from collections import deque
from typing import (Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

from . import wire as w
from .errors import (IcsConnectionError, IcsError, ProtocolError, StatusError, Timeout,
                     UnknownOutcome, error_for)
from .wire import Bytesish, Event, HistoryEntry, KeyBatch, Prefs, Principal, Row, b, s

_WANT = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Client:
    """A connection to icsd. See the module docstring for the semantics."""

    def __init__(self, host: str = "127.0.0.1", port: int = 11311, user: Optional[str] = None,
                 secret: Optional[str] = None, *, tls_ca: Optional[str] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 server_name: Optional[str] = None, timeout: float = 5.0,
                 reconnect: bool = True, connect: bool = True):
        self.host, self.port = host, int(port)
        self.user, self.secret = user, secret
        self.tls_ca, self.tls_cert, self.tls_key = tls_ca, tls_cert, tls_key
        self.server_name = server_name
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnects = 0
        self.last_lsn = 0
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        # recv_into a reused buffer: recv(N) would allocate N bytes per call,
        # and above malloc's mmap threshold that costs page faults each time.
        self._rx = bytearray(65536)
        self._rxv = memoryview(self._rx)
        self._opaque = 0
        self._watch_mask = 0
        self._events: Deque[Event] = deque(maxlen=65536)
        self._ever = False
        if connect:
            self._open()

    # ---- connection --------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection (a later call would reopen it)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf.clear()

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx

    def _open(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout as e:
            raise Timeout(f"connect to {self.host}:{self.port} timed out") from e
        except OSError as e:
            raise IcsConnectionError(f"cannot connect to {self.host}:{self.port}: {e.strerror or e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_ca:
            try:
                sock = self._ssl_context().wrap_socket(sock, server_hostname=self.server_name or self.host)
            except (ssl.SSLError, OSError) as e:
                sock.close()
                raise IcsConnectionError(f"TLS handshake with {self.host}:{self.port} failed: {e}") from e
        self._sock = sock
        self._buf.clear()
        try:
            if self.user is not None:
                self._exchange(w.SASL_AUTH, b"PLAIN", b"",
                               b"\0" + b(self.user) + b"\0" + b(self.secret), 0, deadline, check=True)
            if self._watch_mask:
                self._exchange(w.WATCH, b"", struct.pack(">I", self._watch_mask), b"", 0, deadline,
                               check=True)
        except BaseException:
            self.close()
            raise
        if self._ever:
            self.reconnects += 1
        self._ever = True

    def _peer_closed(self) -> bool:
        """True when the server closed our idle connection (e.g. restarted)."""
        sock = self._sock
        if sock is None:
            return True
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            raw = sock if not isinstance(sock, ssl.SSLSocket) else socket.socket(fileno=sock.fileno())
            try:
                data = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            finally:
                if raw is not sock:
                    raw.detach()
            return data == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _ensure_open(self) -> None:
        if self._sock is not None and not self._peer_closed():
            return
        if self._sock is not None:
            self.close()
        if self._ever and not self.reconnect:
            raise IcsConnectionError("connection closed (reconnect is off)")
        self._open()

    # ---- frames ------------------------------------------------------------

    def _next_opaque(self) -> int:
        self._opaque = (self._opaque + 1) & 0xFFFFFFFF
        return self._opaque

    def _send_all(self, data: bytes, deadline: float) -> int:
        """Sends data; returns bytes sent. Raises on failure (with .sent)."""
        sock = self._sock
        assert sock is not None
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            left = deadline - time.monotonic()
            if left <= 0:
                err: IcsError = Timeout("send timed out")
                err.sent = sent  # type: ignore[attr-defined]
                raise err
            sock.settimeout(left)
            try:
                sent += sock.send(view[sent:sent + 262144])
            except socket.timeout:
                continue
            except OSError as e:
                err = IcsConnectionError(f"send failed: {e}")
                err.sent = sent  # type: ignore[attr-defined]
                raise err from e
        return sent

    def _read_frame(self, deadline: float, until_event: bool = False) -> Optional[w.Frame]:
        """Next response frame; events on the way are queued. With
        until_event, returns None as soon as an event was queued."""
        sock = self._sock
        assert sock is not None
        while True:
            while self._buf:
                try:
                    f, n = w.decode_frame(self._buf)
                except w.DecodeError as e:
                    raise ProtocolError(str(e)) from e
                if f is None:
                    break
                del self._buf[:n]
                if f.magic == w.MAGIC_EVT:
                    self._on_event(f)
                    if until_event and self._events:
                        return None
                    continue
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"no answer within {self.timeout:g} s")
            sock.settimeout(left)
            try:
                n = sock.recv_into(self._rx)
            except socket.timeout:
                continue
            except OSError as e:
                raise IcsConnectionError(f"receive failed: {e}") from e
            if not n:
                raise IcsConnectionError("connection closed by the server")
            self._buf += self._rxv[:n]

    def _on_event(self, f: w.Frame) -> None:
        try:
            self._events.append(w.parse_event(f))
        except w.DecodeError:
            pass  # an event we cannot parse is dropped, as the C client does

    def _exchange(self, op: int, key: bytes, extras: bytes, value: bytes, cas: int,
                  deadline: float, check: bool = False) -> w.Frame:
        opaque = self._next_opaque()
        self._send_all(w.encode_request(op, key, extras, value, opaque, cas), deadline)
        while True:
            f = self._read_frame(deadline)
            if f.opaque == opaque:
                break
        self.last_lsn = f.cas
        if check and f.status:
            raise error_for(f.status, s(f.value))
        return f

    def call(self, op: int, key: Bytesish = b"", extras: bytes = b"", value: bytes = b"",
             cas: int = 0) -> w.Frame:
        """Sends one request and returns its response frame (raises on a non-OK
        status). Reconnects when needed; retries a read once; never re-sends a
        change that was written (UnknownOutcome)."""
        key = b(key)
        change = op in w.CHANGES
        for attempt in range(2):
            self._ensure_open()
            deadline = time.monotonic() + self.timeout
            try:
                f = self._exchange(op, key, extras, value, cas, deadline)
            except ProtocolError:
                self.close()
                raise
            except IcsConnectionError as e:
                sent = getattr(e, "sent", None)
                self.close()
                if change and sent != 0:
                    raise UnknownOutcome(f"{e}; the change may or may not be applied") from e
                if isinstance(e, Timeout) or not self.reconnect or attempt == 1:
                    raise
                continue
            if f.status:
                raise error_for(f.status, s(f.value))
            return f
        raise AssertionError("unreachable")

    # ---- memcached-compatible ---------------------------------------------

    def noop(self) -> None:
        self.call(w.NOOP)

    def version(self) -> str:
        return s(self.call(w.VERSION).value)

    def sasl_auth(self, user: str, secret: str) -> None:
        """Authenticates (again) on this connection; kept for reconnects."""
        self.user, self.secret = user, secret
        self.call(w.SASL_AUTH, b"PLAIN", b"", b"\0" + b(user) + b"\0" + b(secret))

    def stat(self, group: Optional[str] = None) -> Dict[str, str]:
        """STAT: {name: value} (values are ASCII numbers, kept as strings)."""
        self._ensure_open()
        deadline = time.monotonic() + self.timeout
        out: Dict[str, str] = {}
        try:
            f = self._exchange(w.STAT, b(group), b"", b"", 0, deadline)
            opaque = self._opaque
            while True:
                if f.status:
                    raise error_for(f.status, s(f.value))
                if not f.key:
                    return out
                out[s(f.key)] = s(f.value)
                f = self._read_frame(deadline)
                while f.opaque != opaque:
                    f = self._read_frame(deadline)
        except (IcsConnectionError, ProtocolError):
            self.close()
            raise

    def get(self, device: Bytesish) -> List[Row]:
        """memcached GET: the rows of a device (as INQUIRE_DEVICE)."""
        return w.parse_rows(self.call(w.GET, device).value)[1]

    # ---- identity correlation ---------------------------------------------

    @staticmethod
    def _ttl(ttl: int) -> bytes:
        return struct.pack(">I", ttl) if ttl else b""

    def map(self, device: Bytesish, uri: Bytesish, uti: Bytesish, ttl: int = 0,
            owner: Optional[str] = None, cas: int = 0) -> int:
        """MAP (admin): creates the row; returns its LSN."""
        v = w.str16(uri) + w.str16(uti) + (w.str16(owner) if owner is not None else b"")
        return self.call(w.MAP, device, self._ttl(ttl), v, cas).cas

    def map_request(self, serial: Bytesish, uri: Bytesish, uti: Bytesish, ttl: int = 0) -> bytes:
        """MAP_REQUEST (tpsp): returns the 16-byte request ID."""
        v = self.call(w.MAP_REQUEST, serial, self._ttl(ttl), w.str16(uri) + w.str16(uti)).value
        if len(v) != 16:
            raise ProtocolError("MAP_REQUEST answer is not a 16-byte request ID")
        return v

    def map_confirm(self, request_id: bytes, device: Bytesish) -> int:
        """MAP_CONFIRM (iot_sp): creates the row; returns its LSN."""
        return self.call(w.MAP_CONFIRM, request_id, b"", w.str16(device)).cas

    def map_reject(self, request_id: bytes, reason: str = "") -> None:
        self.call(w.MAP_REJECT, request_id, b"", w.str16(reason))

    def demap(self, device: Bytesish, uri: Bytesish, uti: Bytesish, cas: int = 0) -> int:
        return self.call(w.DEMAP, device, b"", w.str16(uri) + w.str16(uti), cas).cas

    def demap_device(self, device: Bytesish) -> int:
        """Removes every row of a device; returns how many."""
        return w.Reader(self.call(w.DEMAP_DEVICE, device).value).u32()

    def demap_binding(self, uri: Bytesish, uti: Bytesish) -> None:
        self.call(w.DEMAP_BINDING, uri, b"", w.str16(uti))

    def demap_service(self, uri: Bytesish) -> int:
        """Removes every row of a service URI; returns how many."""
        return w.Reader(self.call(w.DEMAP_SERVICE, uri).value).u32()

    def inquire_device(self, device: Bytesish) -> List[Row]:
        return w.parse_rows(self.call(w.INQUIRE_DEVICE, device).value)[1]

    def inquire_binding(self, uri: Bytesish, uti: Bytesish) -> str:
        """The device ID bound to (uri, uti)."""
        return s(self.call(w.INQUIRE_BINDING, uri, b"", w.str16(uti)).value)

    def export(self, cursor: int = 0, max_rows: int = 1000) -> Tuple[int, List[Row]]:
        """One EXPORT page: (next cursor, 0 when done; rows with .device)."""
        f = self.call(w.EXPORT, struct.pack(">Q", cursor), struct.pack(">I", max_rows))
        return w.parse_rows(f.value, with_device=True)

    def export_all(self, page: int = 1000) -> Iterator[Row]:
        """Every row, page by page."""
        cursor = 0
        while True:
            cursor, rows = self.export(cursor, page)
            yield from rows
            if cursor == 0:
                return

    # ---- WATCH -------------------------------------------------------------

    def watch(self, mask: int = w.W_ALL) -> None:
        """Asks for events (W_MAP_PENDING | W_MAP_RESULT | W_DEMAPPED); re-armed
        on reconnect. Read them with events() or poll_event()."""
        self.call(w.WATCH, b"", struct.pack(">I", mask))
        self._watch_mask = mask

    def poll_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """One event, waiting up to timeout seconds (None: the client's
        timeout); None when none came."""
        if self._events:
            return self._events.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pause = 0.05
        while True:
            try:
                # Inside the try: while the server restarts, reopening is
                # refused for a while, and a watcher waits that out (to its
                # deadline) instead of ending.
                self._ensure_open()
                self._read_frame(deadline, until_event=True)
            except Timeout:
                return self._events.popleft() if self._events else None
            except IcsConnectionError:
                self.close()  # reopened (and WATCH re-armed) on the next round
                if not self.reconnect:
                    raise
                if time.monotonic() >= deadline:
                    return None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if self._events:
                return self._events.popleft()

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Iterates over events; stops after `timeout` seconds without one
        (None: never stops)."""
        while True:
            ev = self.poll_event(3600.0 if timeout is None else timeout)
            if ev is None:
                if timeout is None:
                    continue
                return
            yield ev

    # ---- identity authority, transparency, administration -----------------

    def key_issue(self, count: int) -> KeyBatch:
        return w.parse_key_batch(self.call(w.KEY_ISSUE, b"", struct.pack(">H", count)).value)

    def key_validate(self, batch: Union[KeyBatch, bytes]) -> None:
        """Raises KeyRotated, BadSignature or InvalidRequest unless valid."""
        raw = batch.raw if isinstance(batch, KeyBatch) else bytes(batch)
        self.call(w.KEY_VALIDATE, b"", b"", raw)

    def history(self, device: Bytesish, max_entries: int = 100) -> List[HistoryEntry]:
        return w.parse_history(self.call(w.HISTORY, device, struct.pack(">I", max_entries)).value)

    def snapshot(self) -> int:
        """Makes a durable snapshot; returns the LSN it covers."""
        return self.call(w.SNAPSHOT).cas

    def whoami(self) -> Tuple[str, str]:
        r = w.Reader(self.call(w.WHOAMI).value)
        return s(r.str16()), s(r.str16())

    def prefs_set(self, device: Bytesish, prefs: Prefs) -> int:
        return self.call(w.PREFS_SET, device, b"", w.encode_prefs(prefs)).cas

    def prefs_get(self, device: Bytesish) -> Prefs:
        return w.parse_prefs(self.call(w.PREFS_GET, device).value)

    def principal_set(self, name: str, roles: Union[int, str, Sequence[str]],
                      secret: str = "", fingerprint: str = "",
                      scopes: Sequence[str] = ()) -> int:
        """Creates or replaces a principal; returns the LSN."""
        v = w.encode_principal(w.roles_mask(roles), secret, fingerprint, list(scopes))
        return self.call(w.PRINCIPAL_SET, name, b"", v).cas

    def principal_del(self, name: str) -> None:
        self.call(w.PRINCIPAL_DEL, name)

    def principal_list(self) -> List[Principal]:
        return w.parse_principals(self.call(w.PRINCIPAL_LIST).value)

    # ---- pipelining --------------------------------------------------------

    def pipeline(self) -> "Pipeline":
        """`with c.pipeline() as p: p.map(...); ...` sends everything at once
        when the block ends; p.results then holds each result in order (a
        value, or the exception instance for that request)."""
        return Pipeline(self)


class Pipeline:
    """Queues requests and sends them in one go (see Client.pipeline)."""

    def __init__(self, client: Client):
        self.client = client
        self._reqs: List[Tuple[int, bytes, bytes, bytes, int, Callable[[w.Frame], Any]]] = []
        self.results: List[Any] = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.execute()

    def __len__(self) -> int:
        return len(self._reqs)

    def add(self, op: int, key: Bytesish = b"", extras: bytes = b"", value: bytes = b"",
            cas: int = 0, parse: Callable[[w.Frame], Any] = lambda f: f.cas) -> "Pipeline":
        self._reqs.append((op, b(key), extras, value, cas, parse))
        return self

    def map(self, device: Bytesish, uri: Bytesish, uti: Bytesish, ttl: int = 0,
            owner: Optional[str] = None) -> "Pipeline":
        v = w.str16(uri) + w.str16(uti) + (w.str16(owner) if owner is not None else b"")
        return self.add(w.MAP, device, Client._ttl(ttl), v)

    def demap(self, device: Bytesish, uri: Bytesish, uti: Bytesish) -> "Pipeline":
        return self.add(w.DEMAP, device, b"", w.str16(uri) + w.str16(uti))

    def inquire_device(self, device: Bytesish) -> "Pipeline":
        return self.add(w.INQUIRE_DEVICE, device, parse=lambda f: w.parse_rows(f.value)[1])

    def inquire_binding(self, uri: Bytesish, uti: Bytesish) -> "Pipeline":
        return self.add(w.INQUIRE_BINDING, uri, b"", w.str16(uti), parse=lambda f: s(f.value))

    def noop(self) -> "Pipeline":
        return self.add(w.NOOP, parse=lambda f: None)

    def execute(self) -> List[Any]:
        """Sends every queued request and reads every answer. Results are in
        request order: a value or an exception instance. A connection that
        breaks mid-way leaves UnknownOutcome (changes that were written) or
        IcsConnectionError in the slots it could not answer."""
        c = self.client
        reqs, self._reqs = self._reqs, []
        self.results = []
        if not reqs:
            return self.results
        c._ensure_open()
        sock = c._sock
        assert sock is not None
        first = c._opaque + 1
        chunks, offsets, off = [], [], 0
        for op, key, ex, val, cas, _ in reqs:
            fr = w.encode_request(op, key, ex, val, c._next_opaque(), cas)
            offsets.append(off)
            off += len(fr)
            chunks.append(fr)
        out = memoryview(b"".join(chunks))
        sent = 0
        deadline = time.monotonic() + c.timeout
        err: Optional[IcsError] = None
        sock.setblocking(False)
        try:
            # Write and read together, or both sides' buffers fill and stall.
            while len(self.results) < len(reqs):
                progress = False
                if sent < len(out):
                    try:
                        n = sock.send(out[sent:sent + 262144])
                        sent += n
                        progress = n > 0
                    except _WANT:
                        pass
                try:
                    n = sock.recv_into(c._rx)
                    if not n:
                        raise IcsConnectionError("connection closed by the server")
                    c._buf += c._rxv[:n]
                    progress = True
                except _WANT:
                    pass
                while len(self.results) < len(reqs):
                    f, n = w.decode_frame(c._buf)
                    if f is None:
                        break
                    del c._buf[:n]
                    if f.magic == w.MAGIC_EVT:
                        c._on_event(f)
                        continue
                    i = len(self.results)
                    if f.opaque != (first + i) & 0xFFFFFFFF:
                        raise ProtocolError("response out of order")
                    c.last_lsn = f.cas
                    if f.status:
                        self.results.append(error_for(f.status, s(f.value)))
                    else:
                        try:
                            self.results.append(reqs[i][5](f))
                        except w.DecodeError as e:
                            self.results.append(ProtocolError(str(e)))
                if progress:
                    deadline = time.monotonic() + c.timeout
                    continue
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"pipeline stalled for {c.timeout:g} s")
                select.select([sock], [sock] if sent < len(out) else [], [], left)
        except (IcsError, OSError, w.DecodeError) as e:
            err = e if isinstance(e, IcsError) else IcsConnectionError(str(e))
            c.close()
            for i in range(len(self.results), len(reqs)):
                if reqs[i][0] in w.CHANGES and sent > offsets[i]:
                    self.results.append(UnknownOutcome(str(err)))
                else:
                    self.results.append(err)
        finally:
            if c._sock is not None:
                c._sock.settimeout(c.timeout)
        return self.results

    def raise_first(self) -> List[Any]:
        """The results, raising the first exception among them."""
        for r in self.results:
            if isinstance(r, BaseException):
                raise r
        return self.results


__all__ = ["Client", "Pipeline", "StatusError"]
