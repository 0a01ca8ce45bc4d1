#!/usr/bin/env python3
"""netsetup.py — wire-v1 setup steps for bench/policy/net.sh (standard
library only), run as admin against a local icsd:

  netsetup.py PORT SECRET tpsp NAME PASSWORD SCOPE   PRINCIPAL_SET a tpsp
  netsetup.py PORT SECRET prefs KEYS                 PREFS_SET on dev-00000000..KEYS-1
  netsetup.py PORT SECRET inquiries DEV...           prints the number of
                                                     inquiry entries (event 3)
                                                     in these devices' HISTORY

The prefs blob is the one bench/policy/policy_bench.c sets (an allow
prefix, a deny prefix, one window covering the whole week), with prefixes
that match ics-loadgen's URIs (https://svcN.example.com/api) so that every
inquiry is still answered and still recorded: only the evaluation costs.
"""
import socket
import struct
import sys

OP_SASL_AUTH, OP_HISTORY, OP_PREFS_SET, OP_PRINCIPAL_SET = 0x21, 0xD2, 0xD5, 0xD7


def req(op, opaque=0, key=b"", val=b"", ext=b""):
    return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(ext), 0, 0,
                       len(ext) + len(key) + len(val), opaque, 0) + ext + key + val


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def read(self):
        """One response: (status, opaque, value)."""
        while True:
            if len(self.buf) >= 24:
                n = struct.unpack(">I", self.buf[8:12])[0]
                if len(self.buf) >= 24 + n:
                    h, body = self.buf[:24], self.buf[24:24 + n]
                    self.buf = self.buf[24 + n:]
                    el, kl = h[4], struct.unpack(">H", h[2:4])[0]
                    return (struct.unpack(">H", h[6:8])[0], struct.unpack(">I", h[12:16])[0],
                            body[el + kl:])
            d = self.s.recv(1 << 16)
            if not d:
                sys.exit("netsetup: connection closed by the server")
            self.buf += d

    def call(self, op, key=b"", val=b"", ext=b""):
        self.s.sendall(req(op, 0, key, val, ext))
        return self.read()


def s16(b):
    return struct.pack(">H", len(b)) + b


def main():
    port, secret, what = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
    c = Conn(port)
    st, _, _ = c.call(OP_SASL_AUTH, b"PLAIN", b"\0admin\0" + secret)
    if st:
        sys.exit(f"netsetup: admin login: status {st:#x}")
    if what == "tpsp":
        name, pw, scope = (a.encode() for a in sys.argv[4:7])
        val = bytes([4]) + s16(pw) + s16(b"") + struct.pack(">H", 1) + s16(scope)
        st, _, v = c.call(OP_PRINCIPAL_SET, name, val)
        if st:
            sys.exit(f"netsetup: PRINCIPAL_SET: status {st:#x} {v!r}")
    elif what == "prefs":
        keys = int(sys.argv[4])
        blob = (struct.pack(">I", 86400 * 30) + struct.pack(">H", 1) + s16(b"https://svc")
                + struct.pack(">H", 1) + s16(b"https://svc0.example.com/ads/")
                + struct.pack(">H", 1) + bytes([0x7f]) + struct.pack(">HH", 0, 1440))
        window, sent, got = 256, 0, 0
        while got < keys:
            out = []
            while sent < keys and sent - got < window:
                out.append(req(OP_PREFS_SET, sent, b"dev-%08u" % sent, blob))
                sent += 1
            if out:
                c.s.sendall(b"".join(out))
            st, opaque, v = c.read()
            if st:
                sys.exit(f"netsetup: PREFS_SET dev-{opaque:08}: status {st:#x} {v!r}")
            got += 1
    elif what == "inquiries":
        inq = 0
        for dev in sys.argv[4:]:
            st, _, v = c.call(OP_HISTORY, dev.encode(), b"", struct.pack(">I", 0))
            if st:
                sys.exit(f"netsetup: HISTORY {dev}: status {st:#x} {v!r}")
            n, off = struct.unpack(">I", v[:4])[0], 4
            for _ in range(n):
                inq += v[off + 8] == 3
                off += 9
                for _ in range(3):
                    off += 2 + struct.unpack(">H", v[off:off + 2])[0]
        print(inq)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
