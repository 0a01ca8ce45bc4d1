"""Starting and stopping a real icsd for the client integration tests.

The icsd binary comes from $ICSD (ctest sets it when the target exists).
The tests skip only when the binary is not built; a server that does not
start, write its port file and credential, or answer NOOP and SASL fails.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import List, Optional

import icsclient as ic

ICSD = os.environ.get("ICSD", "")
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / "clients" / "cli" / "ics")


def require_icsd() -> str:
    if not ICSD or not os.access(ICSD, os.X_OK):
        raise unittest.SkipTest("icsd is not built yet (ICSD unset or not executable)")
    return ICSD


class Icsd:
    """One icsd process with its own data directory."""

    def __init__(self, extra: Optional[List[str]] = None, data: Optional[str] = None):
        self.tmp = tempfile.mkdtemp(prefix="ics-client-test-")
        self.data = data or os.path.join(self.tmp, "data")
        self.extra = list(extra or [])
        self.port = 0
        self.tls_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(self.tmp, "icsd.log")

    @property
    def wants_tls(self) -> bool:
        return "--tls-cert" in self.extra

    def start(self, port: int = 0, timeout: float = 30.0) -> "Icsd":
        pf = os.path.join(self.tmp, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([require_icsd(), "--data", self.data, "--port", str(port),
                                      "--port-file", pf, *self.extra],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise AssertionError(f"icsd exited at start (rc {self.proc.returncode}): {self.log_tail()}")
            try:
                # line 1: the port; with TLS a line "tls=PORT"
                lines = open(pf).read().split()
                if lines and (not self.wants_tls or any(x.startswith("tls=") for x in lines)):
                    self.port = int(lines[0])
                    self.tls_port = next((int(x[4:]) for x in lines if x.startswith("tls=")), 0)
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"icsd did not write its port file in {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(open(self.log_path, errors="replace").read().splitlines()[-n:])
        except OSError:
            return ""

    @property
    def cred_path(self) -> str:
        return os.path.join(self.data, "admin.cred")

    def cred(self) -> ic.Credential:
        t_end = time.monotonic() + 10
        while not os.path.exists(self.cred_path) and time.monotonic() < t_end:
            time.sleep(0.05)
        if not os.path.exists(self.cred_path):
            raise AssertionError("icsd wrote no admin.cred")
        return ic.Credential.load(self.cred_path)

    def admin(self, timeout: float = 10.0, **kw) -> ic.Client:
        c = self.cred()
        return ic.Client("127.0.0.1", self.port, user=c.principal, secret=c.secret, timeout=timeout, **kw)

    def check_serving(self) -> None:
        """Skips unless icsd answers NOOP and admin SASL."""
        try:
            with ic.Client("127.0.0.1", self.port, timeout=3) as c:
                c.noop()
        except ic.IcsError as e:
            raise AssertionError(f"icsd does not answer NOOP yet ({e})")
        try:
            self.admin(timeout=3).close()
        except (ic.UnknownCommand, ic.NotSupported, ic.Timeout) as e:
            raise AssertionError(f"icsd does not serve SASL yet ({e})")

    def wait_stopped(self) -> None:
        """Waits until a SIGSTOPped icsd is really stopped (state T)."""
        for _ in range(100):
            try:
                if open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            except OSError:
                return
            time.sleep(0.01)

    def signal(self, sig: int) -> None:
        if self.proc:
            self.proc.send_signal(sig)

    def stop(self) -> int:
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_cli(*args: str, cred: str = "", stdin: str = "", cwd: Optional[str] = None, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "ICS_CRED"}
    if env_extra:
        env.update(env_extra)
    pre = ["--cred", cred] if cred else []
    p = subprocess.run([sys.executable, CLI, *pre, *args], input=stdin, capture_output=True,
                       text=True, env=env, timeout=300, cwd=cwd)
    return p.returncode, p.stdout, p.stderr
