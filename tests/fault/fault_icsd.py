#!/usr/bin/env python3
"""fault_icsd.py — icsd on a failing disk (LD_PRELOAD fault shim).

1. Starts icsd with the shim preloaded, armed by a trigger file so start-up
   is clean, configured to fail every fsync/fdatasync under the data
   directory from the Nth one on (a disk that breaks and stays broken).
2. Maps rows one at a time until a MAP is refused: the first refusal may be
   TMPFAIL or INTERNAL (spec: "I/O fault; nothing acknowledged was lost"),
   every later change must answer TMPFAIL (read-only), none may be OK.
3. Inquiries keep working: every acknowledged row reads back.
4. SIGTERM: icsd exits by itself (no crash, no hang, no sanitizer report).
5. Restart on the same data directory without the shim: every acknowledged
   row is there, byte-identical; a new MAP succeeds.
Exit 0 pass, 1 fail, 77 skip (icsd does not yet do changes through the store).
"""
import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HDR = struct.Struct(">BBHBBHIIQ")
OP_NOOP, OP_SASL_AUTH, OP_MAP, OP_INQUIRE_DEVICE = 0x0A, 0x21, 0xC0, 0xC8
ST_OK, ST_UNKNOWN, ST_NOT_SUPPORTED, ST_INTERNAL, ST_TMPFAIL = 0, 0x81, 0x83, 0x84, 0x86


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def frame(op, key=b"", extras=b"", value=b"", opaque=0):
    body = extras + key + value
    return HDR.pack(0x80, op, len(key), len(extras), 0, 0, len(body), opaque, 0) + body


def str16(b):
    return struct.pack(">H", len(b)) + b


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise Fail("icsd closed the connection")
        buf += c
    return buf


def call(s, op, **kw):
    s.sendall(frame(op, **kw))
    while True:
        magic, rop, kl, el, dt, st, bl, opq, cas = HDR.unpack(recv_exact(s, 24))
        body = recv_exact(s, bl)
        if magic == 0x82:
            continue  # an event
        return st, body[el + kl:]


class Icsd:
    def __init__(self, path, data, env):
        self.tmp = tempfile.mkdtemp(prefix="ics-fault-run-")
        self.portfile = os.path.join(self.tmp, "port")
        self.errpath = os.path.join(self.tmp, "stderr")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen([path, "--data", data, "--port", "0", "--port-file", self.portfile],
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err, env=env)
        deadline = time.monotonic() + 60
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise Fail("icsd exited at start (%s):\n%s" % (self.proc.returncode, self.tail()))
            try:
                self.port = int(open(self.portfile).read().strip())
            except (OSError, ValueError):
                time.sleep(0.05)
        check(self.port is not None, "icsd wrote no port file:\n" + self.tail())
        kv = dict(l.split("=", 1) for l in open(os.path.join(data, "admin.cred")).read().splitlines() if "=" in l)
        self.user, self.secret = kv["principal"].encode(), kv["secret"].encode()

    def tail(self, n=40):
        self.err.flush()
        return "\n".join(open(self.errpath, "rb").read().decode(errors="replace").splitlines()[-n:])

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        st, _ = call(s, OP_SASL_AUTH, key=b"PLAIN", value=b"\0" + self.user + b"\0" + self.secret)
        if st in (ST_UNKNOWN, ST_NOT_SUPPORTED):
            raise Skip("SASL not implemented yet")
        check(st == ST_OK, "SASL_AUTH status 0x%04x" % st)
        return s

    def stop(self, want_zero):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail("icsd did not exit within 30 s of SIGTERM:\n" + self.tail())
        rc = self.proc.returncode
        text = self.tail(300)
        check("ERROR: AddressSanitizer" not in text and "ERROR: LeakSanitizer" not in text
              and "runtime error:" not in text, "sanitizer report from icsd:\n" + self.tail(80))
        check(rc >= 0, "icsd died of signal %d:\n%s" % (-rc, self.tail()))
        if want_zero:
            check(rc == 0, "icsd exit status %d after SIGTERM:\n%s" % (rc, self.tail()))
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc


class Skip(Exception):
    pass


def row(i):
    return (b"fault-dev-%04d" % i, b"https://svc.example/fault/%d" % i, b"uti-%d" % i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--icsd", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--nth", type=int, default=4, help="first failing sync after arming")
    ap.add_argument("--max-maps", type=int, default=200)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ics-fault-")
    data, arm = os.path.join(work, "data"), os.path.join(work, "arm")
    os.mkdir(data)
    env = dict(os.environ)
    env.update(LD_PRELOAD=a.shim, ICS_FAULT_OPS="fsync,fdatasync", ICS_FAULT_NTH=str(a.nth),
               ICS_FAULT_COUNT="0", ICS_FAULT_DIR=data, ICS_FAULT_ARM=arm, ICS_FAULT_LOG="1")
    # clang's static ASan runtime does not mind a preload; a shared one would.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    d = None
    try:
        d = Icsd(a.icsd, data, env)
        s = d.connect()
        k, u, t = row(0)
        st, _ = call(s, OP_MAP, key=k, value=str16(u) + str16(t))
        if st in (ST_UNKNOWN, ST_NOT_SUPPORTED):
            raise Skip("MAP not implemented yet (status 0x%04x)" % st)
        check(st == ST_OK, "MAP before the fault: status 0x%04x" % st)
        acked, refused = [0], None

        open(arm, "w").close()  # the disk breaks now
        for i in range(1, a.max_maps):
            k, u, t = row(i)
            st, _ = call(s, OP_MAP, key=k, value=str16(u) + str16(t))
            if st == ST_OK:
                check(refused is None, "MAP #%d acknowledged after an earlier one was refused "
                      "(the store must stay read-only)" % i)
                acked.append(i)
                continue
            if refused is None:
                check(st in (ST_TMPFAIL, ST_INTERNAL),
                      "first MAP on a failing disk: status 0x%04x, want TMPFAIL or INTERNAL" % st)
                refused = i
            else:
                check(st == ST_TMPFAIL, "MAP #%d while read-only: status 0x%04x, want TMPFAIL" % (i, st))
                if i >= refused + 5:
                    break
        check(refused is not None, "%d MAPs acknowledged on a disk failing every sync from the %dth on:"
              " durability is not checked" % (a.max_maps, a.nth))
        print("acknowledged %d MAPs, then refusals from MAP #%d on (TMPFAIL)" % (len(acked), refused))

        for i in acked:  # inquiries keep working
            k, u, t = row(i)
            st, v = call(s, OP_INQUIRE_DEVICE, key=k)
            check(st == ST_OK and u in v and t in v, "inquiry of acknowledged row %d on a read-only "
                  "store: status 0x%04x" % (i, st))
        st, _ = call(s, OP_NOOP)
        check(st == ST_OK, "NOOP on a read-only store: 0x%04x" % st)
        print("all %d acknowledged rows answer inquiries while the disk fails" % len(acked))
        s.close()
        rc = d.stop(want_zero=False)
        print("icsd exited with %d after SIGTERM on a failing disk" % rc)

        env2 = {k: v for k, v in env.items() if not k.startswith("ICS_FAULT_") and k != "LD_PRELOAD"}
        d = Icsd(a.icsd, data, env2)
        s = d.connect()
        for i in acked:
            k, u, t = row(i)
            st, v = call(s, OP_INQUIRE_DEVICE, key=k)
            check(st == ST_OK and u in v and t in v, "acknowledged row %d lost after restart: 0x%04x" % (i, st))
        k, u, t = row(9999)
        st, _ = call(s, OP_MAP, key=k, value=str16(u) + str16(t))
        check(st == ST_OK, "MAP after restart on a healthy disk: 0x%04x" % st)
        s.close()
        d.stop(want_zero=True)
        print("after restart: all %d acknowledged rows present, new MAP OK" % len(acked))
    except Skip as e:
        print("SKIPPED: fault test: %s" % e)
        if d is not None and d.proc.poll() is None:
            d.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
        return 77
    except (Fail, OSError) as e:
        print("FAIL: %s" % e)
        if d is not None:
            if d.proc.poll() is None:
                d.proc.kill()
            print("---- icsd stderr ----\n" + d.tail())
        print("(data kept in %s)" % work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
