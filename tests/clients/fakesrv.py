"""A small in-process wire-v1 server for the Python client and CLI unit tests.

It keeps a real (if naive) table so that the client and the CLI can be tested
end to end before, and independently of, icsd: rows by device, the binding
index with EXISTS on a conflict, principals with SASL PLAIN, prefs, history,
EXPORT pages, the two-phase MAP_REQUEST flow with events. Modes:
  mode="answer"  normal;  mode="silent"  accepts and never replies.
Special keys: "status:N" answers wire status N; "drop" closes the connection
without answering; "dropread" does so only the first time.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Dict, List, Optional, Tuple

from icsclient import wire as w

ADMIN_SECRET = "s3cret"


class FakeServer:
    def __init__(self, mode: str = "answer"):
        self.mode = mode
        self.lock = threading.Lock()
        self.lsn = 0
        self.rows: Dict[bytes, Dict[Tuple[bytes, bytes], int]] = {}
        self.bind: Dict[Tuple[bytes, bytes], bytes] = {}
        self.principals: Dict[bytes, Tuple[int, bytes, List[bytes]]] = {
            b"admin": (1, ADMIN_SECRET.encode(), [])}
        self.prefs: Dict[bytes, bytes] = {}
        self.history: Dict[bytes, List[bytes]] = {}
        self.pending: Dict[bytes, Tuple[bytes, bytes, bytes, bytes, bytes]] = {}
        self.watchers: Dict[bytes, List[socket.socket]] = {}
        self.dropped_read = False
        self.connections = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.threads: List[threading.Thread] = []
        self.conns: List[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self) -> None:
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=5)

    def drop_all(self) -> None:
        """Closes every client connection (a server restart, seen from a client)."""
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        self.lsock.settimeout(0.1)
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c: socket.socket) -> None:
        buf = bytearray()
        state = {"user": None, "watch": 0, "sock": c}
        c.settimeout(0.2)
        try:
            while not self.stopping:
                try:
                    data = c.recv(1 << 20)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                if self.mode == "silent":
                    continue
                buf += data
                out = []
                while True:
                    f, n = w.decode_frame(buf, magics=(w.MAGIC_REQ,))
                    if f is None:
                        break
                    del buf[:n]
                    r = self._answer(f, state)
                    if r is None:
                        if out:
                            c.sendall(b"".join(out))
                        return
                    out.append(r)
                if out:
                    with self.lock:
                        c.sendall(b"".join(out))
        finally:
            try:
                self.conns.remove(c)
            except ValueError:
                pass
            c.close()

    def _event(self, principal: bytes, frame: bytes, bit: int) -> None:
        for s in self.watchers.get(principal, []):
            try:
                s.sendall(frame)
            except OSError:
                pass

    def _answer(self, f: w.Frame, st: dict) -> Optional[bytes]:
        def res(status: int = 0, value: bytes = b"", cas: int = 0, key: bytes = b"", extras: bytes = b"") -> bytes:
            return w.encode_frame(w.MAGIC_RES, f.opcode, key, extras, value, status, f.opaque, cas)

        def err(status: int, msg: str) -> bytes:
            return res(status, msg.encode())

        key = f.key
        if key == b"drop":
            return None
        if key == b"dropread" and f.opcode in (w.INQUIRE_DEVICE, w.GET) and not self.dropped_read:
            self.dropped_read = True
            return None
        if key.startswith(b"status:"):
            n = int(key[7:])
            return err(n, f"canned {n}")
        op = f.opcode
        if op == w.SASL_AUTH:
            parts = f.value.split(b"\0")
            if len(parts) == 3 and parts[1] in self.principals and self.principals[parts[1]][1] == parts[2] and parts[2]:
                st["user"] = parts[1]
                return res()
            return err(0x20, "bad credentials")
        if op == w.NOOP:
            return res()
        if op == w.VERSION:
            return res(value=b"1.0.0 fake")
        if op in (w.QUIT,):
            return None
        if st["user"] is None:
            return err(0x20, "authenticate first")
        user = st["user"]
        roles = self.principals.get(user, (0, b"", []))[0]
        admin = roles & 1
        r = w.Reader(f.value)
        with self.lock:
            if op == w.STAT:
                return (res(key=b"rows", value=str(sum(len(v) for v in self.rows.values())).encode()) +
                        res(key=b"pid", value=str(os.getpid()).encode()) + res())
            if op == w.WHOAMI:
                names = w.roles_names(roles)
                return res(value=w.str16(user) + w.str16(names[0] if names else ""))
            if op == w.MAP:
                uri, uti = r.str16(), r.str16()
                owner = b(r.str16()) if r.o < len(f.value) else None
                if not admin:
                    return err(0x24, "admin only")
                return self._map(key, uri, uti, user, res, err, f.cas)
            if op in (w.INQUIRE_DEVICE, w.GET):
                rows = self.rows.get(key)
                if not rows:
                    return err(1, "not found")
                self.history.setdefault(key, []).append(struct.pack(">QB", int(time.time() * 1e6), 3) + w.str16(user) + w.str16(b"") + w.str16(b""))
                v = struct.pack(">I", len(rows)) + b"".join(w.str16(u) + w.str16(t) + struct.pack(">I", e) for (u, t), e in rows.items())
                return res(value=v, cas=self.lsn, extras=b"\0\0\0\0" if op == w.GET else b"")
            if op == w.INQUIRE_BINDING:
                d = self.bind.get((key, r.str16()))
                return res(value=d) if d else err(1, "not found")
            if op == w.DEMAP:
                uri, uti = r.str16(), r.str16()
                if self.bind.get((uri, uti)) != key:
                    return err(1, "not found")
                return res(cas=self._demap(key, uri, uti))
            if op == w.DEMAP_DEVICE:
                rows = list(self.rows.get(key, {}))
                for (u, t) in rows:
                    self._demap(key, u, t)
                return res(value=struct.pack(">I", len(rows)), cas=self.lsn)
            if op == w.DEMAP_BINDING:
                uti = r.str16()
                d = self.bind.get((key, uti))
                if not d:
                    return err(1, "not found")
                return res(cas=self._demap(d, key, uti))
            if op == w.DEMAP_SERVICE:
                hits = [(d, u, t) for (u, t), d in self.bind.items() if u == key]
                for d, u, t in hits:
                    self._demap(d, u, t)
                return res(value=struct.pack(">I", len(hits)), cas=self.lsn)
            if op == w.EXPORT:
                cursor = struct.unpack(">Q", key)[0]
                mx = struct.unpack(">I", f.extras)[0]
                devs = sorted(self.rows)
                page = devs[cursor:cursor + mx]
                nxt = cursor + len(page) if cursor + len(page) < len(devs) else 0
                items = [(d, u, t, e) for d in page for (u, t), e in self.rows[d].items()]
                v = struct.pack(">QI", nxt, len(items)) + b"".join(
                    w.str16(d) + w.str16(u) + w.str16(t) + struct.pack(">I", e) for d, u, t, e in items)
                return res(value=v, cas=self.lsn)
            if op == w.WATCH:
                st["watch"] = struct.unpack(">I", f.extras)[0]
                self.watchers.setdefault(user, []).append(st["sock"])
                return res()
            if op == w.MAP_REQUEST:
                uri, uti = r.str16(), r.str16()
                owner = None
                for name, (rl, _, scopes) in self.principals.items():
                    if rl & 2 and any(key.startswith(p) for p in scopes):
                        owner = name
                if owner is None:
                    return err(1, "no IoT SP owns this serial")
                rid = os.urandom(16)
                self.pending[rid] = (user, owner, key, uri, uti)
                self._event(owner, w.encode_frame(w.MAGIC_EVT, w.EV_MAP_PENDING, rid, b"",
                                                  w.str16(key) + w.str16(uri) + w.str16(uti)), 1)
                return res(value=rid)
            if op in (w.MAP_CONFIRM, w.MAP_REJECT):
                p = self.pending.get(key)
                if not p or p[1] != user:
                    return err(1, "no such pending request")
                del self.pending[key]
                text = r.str16()
                if op == w.MAP_REJECT:
                    self._event(p[0], w.encode_frame(w.MAGIC_EVT, w.EV_MAP_RESULT, key, b"", w.str16(text), 1), 2)
                    return res()
                out = self._map(text, p[3], p[4], user, res, err, 0)
                self._event(p[0], w.encode_frame(w.MAGIC_EVT, w.EV_MAP_RESULT, key, b"", w.str16(text), 0, 0, self.lsn), 2)
                return out
            if op == w.KEY_ISSUE:
                n = struct.unpack(">H", f.extras)[0]
                if not 1 <= n <= 1000:
                    return err(4, "count out of range")
                body = struct.pack(">QBH", int(time.time()), 1, n) + os.urandom(16 * n)
                return res(value=body + self._sig(body))
            if op == w.KEY_VALIDATE:
                v = f.value
                if len(v) < 43:
                    return err(4, "malformed batch")
                return res() if self._sig(v[:-32]) == v[-32:] else err(0xC2, "bad signature")
            if op == w.HISTORY:
                h = list(reversed(self.history.get(key, [])))[:struct.unpack(">I", f.extras)[0]]
                return res(value=struct.pack(">I", len(h)) + b"".join(h)) if h or key in self.rows else err(1, "not found")
            if op == w.SNAPSHOT:
                return res(cas=self.lsn) if admin else err(0x24, "admin only")
            if op == w.PREFS_SET:
                self.lsn += 1
                self.prefs[key] = f.value
                return res(cas=self.lsn)
            if op == w.PREFS_GET:
                return res(value=self.prefs[key]) if key in self.prefs else err(1, "no prefs")
            if op == w.PRINCIPAL_SET:
                if not admin:
                    return err(0x24, "admin only")
                rl = r.u8()
                sec, _fp = r.str16(), r.str16()
                scopes = [r.str16() for _ in range(r.u16())]
                self.lsn += 1
                self.principals[key] = (rl, sec, scopes)
                return res(cas=self.lsn)
            if op == w.PRINCIPAL_DEL:
                if key not in self.principals:
                    return err(1, "no such principal")
                del self.principals[key]
                return res()
            if op == w.PRINCIPAL_LIST:
                items = sorted(self.principals.items())
                v = struct.pack(">I", len(items)) + b"".join(
                    w.str16(n) + bytes([rl]) + struct.pack(">H", len(sc)) + b"".join(w.str16(x) for x in sc)
                    for n, (rl, _, sc) in items)
                return res(value=v)
        return err(0x81, "unknown command")

    @staticmethod
    def _sig(body: bytes) -> bytes:
        import hashlib
        import hmac
        return hmac.new(b"fake-key", body, hashlib.sha256).digest()

    def _map(self, dev, uri, uti, user, res, err, cas):
        d = self.bind.get((uri, uti))
        if d is not None and d != dev:
            return err(2, "binding belongs to another device")
        if d == dev:
            return res(cas=self.lsn)
        self.lsn += 1
        self.rows.setdefault(dev, {})[(uri, uti)] = 0
        self.bind[(uri, uti)] = dev
        self.history.setdefault(dev, []).append(struct.pack(">QB", int(time.time() * 1e6), 1) + w.str16(user) + w.str16(uri) + w.str16(uti))
        return res(cas=self.lsn)

    def _demap(self, dev, uri, uti) -> int:
        self.lsn += 1
        self.rows.get(dev, {}).pop((uri, uti), None)
        if dev in self.rows and not self.rows[dev]:
            del self.rows[dev]
        self.bind.pop((uri, uti), None)
        ev = w.encode_frame(w.MAGIC_EVT, w.EV_DEMAPPED, dev, b"", w.str16(uri) + w.str16(uti), 0, 0, self.lsn)
        for name in list(self.watchers):
            self._event(name, ev, 4)
        return self.lsn


def b(x: bytes) -> bytes:
    return x


if __name__ == "__main__":  # a standalone fake for trying the CLI by hand
    s = FakeServer()
    print(f"fake icsd on 127.0.0.1:{s.port} (admin / {ADMIN_SECRET})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        s.stop()
