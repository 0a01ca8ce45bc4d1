#!/usr/bin/env python3
"""The real `openssl s_client` against net/tls over a socket.

Starts tls_echo_server (net/tls behind blocking sockets) on a port the OS
picks and checks: a TLS 1.3 client with a certificate gets NOOP and QUIT
answered, and resumes with its ticket on a second connection; TLS 1.2, no certificate, an expired and a revoked certificate are
refused with the right reason in the server's log; a plaintext memcached
client gets an error, not a crash.
Usage: test_tls_openssl.py ECHO_SERVER MKCERTS   (exit 0 pass, 1 fail, 77 skip)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

NOOP = bytes([0x80, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF] + [0] * 8)
QUIT = bytes([0x80, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] + [0] * 8)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def start_server(server, d, conns, extra=()):
    port_file = os.path.join(d, "port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    log = open(os.path.join(d, "server.log"), "w+")
    p = subprocess.Popen([server, f"{d}/server.pem", f"{d}/server.key", f"{d}/ca.pem",
                          "--crl", f"{d}/crl.pem", "--port-file", port_file,
                          "--conns", str(conns), *extra], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(port_file):
            with open(port_file) as f:
                s = f.read()
            if s.endswith("\n"):
                return p, int(s), log
        if p.poll() is not None:
            log.seek(0)
            fail("server exited: " + log.read())
        time.sleep(0.05)
    p.kill()
    fail("server did not start")


def s_client(d, port, args, data):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", f"{d}/ca.pem",
           "-verify_return_error", "-quiet", *args]
    try:
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        fail("s_client hung: " + " ".join(cmd))
    return r


def main():
    server, mkcerts = sys.argv[1], sys.argv[2]
    if not shutil.which("openssl"):
        print("skipped: no openssl tool")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="ics_tls_openssl.")
    try:
        subprocess.run([mkcerts, d, "alice", "--expired", "old", "--revoked", "gone"],
                       check=True, stdout=subprocess.DEVNULL)
        cert = lambda n: ["-cert", f"{d}/{n}.pem", "-key", f"{d}/{n}.key"]

        p, port, log = start_server(server, d, 7)
        sess = f"{d}/alice.sess"
        # 1. TLS 1.3 with a client certificate: NOOP then QUIT answered.
        r = s_client(d, port, ["-tls1_3", *cert("alice"), "-sess_out", sess], NOOP + QUIT)
        out = r.stdout
        if len(out) != 48:
            fail(f"expected two 24-byte responses, got {len(out)} bytes: {out!r} "
                 f"rc={r.returncode} {r.stderr.decode(errors='replace')[-500:]}")
        if out[0] != 0x81 or out[1] != 0x0A or out[6:8] != b"\0\0" or out[12:16] != NOOP[12:16]:
            fail(f"bad NOOP response {out[:24].hex()}")
        if out[24] != 0x81 or out[25] != 0x07 or out[30:32] != b"\0\0":
            fail(f"bad QUIT response {out[24:].hex()}")
        # 1b. The same client resumes with the ticket it got.
        r = s_client(d, port, ["-tls1_3", *cert("alice"), "-sess_in", sess], NOOP + QUIT)
        if len(r.stdout) != 48 or r.stdout[:2] != b"\x81\x0a":
            fail(f"resumed connection: got {r.stdout!r}")
        # 2. TLS 1.2 is refused (the server is 1.3-only by default).
        r = s_client(d, port, ["-tls1_2", *cert("alice")], NOOP)
        if r.returncode == 0 or r.stdout:
            fail("TLS 1.2 client was answered")
        # 3. No client certificate, 4. expired, 5. revoked: refused.
        for args in ([], cert("old"), cert("gone")):
            r = s_client(d, port, ["-tls1_3", *args], NOOP)
            if r.stdout:
                fail(f"refused client got an answer: {r.stdout!r}")
        # 6. A plaintext memcached client on the TLS port.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(NOOP)
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except OSError:
            pass
        s.close()
        if got[:1] not in (b"", b"\x15"):   # nothing, or a TLS alert record
            fail(f"plaintext client got {got!r}")

        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            fail("server did not finish")
        log.seek(0)
        lines = log.read().splitlines()
        print("\n".join(lines))
        want = ["ready principal=alice", "ready principal=alice",
                "refused: protocol version not allowed",
                "refused: no client certificate", "refused: certificate expired",
                "refused: certificate revoked", "refused: not TLS (plaintext client?)"]
        if rc != 0:
            fail(f"server exit {rc}")
        if len(lines) != len(want):
            fail(f"expected {len(want)} log lines")
        for line, w in zip(lines, want):
            if not line.startswith(w):
                fail(f"log line {line!r} should start with {w!r}")
        if "version=TLSv1.3" not in lines[0]:
            fail("not TLS 1.3")
        if "resumed=0" not in lines[0] or "resumed=1" not in lines[1]:
            fail("the second connection did not resume from the ticket")
        fp = subprocess.run(["openssl", "x509", "-in", f"{d}/alice.pem", "-noout",
                             "-fingerprint", "-sha256"], capture_output=True, text=True,
                            check=True).stdout.split("=", 1)[1].strip().replace(":", "").lower()
        if f"fp={fp}" not in lines[0] or f"fp={fp}" not in lines[1]:
            fail("fingerprint differs from openssl's")
        print("test_tls_openssl: all passed")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
