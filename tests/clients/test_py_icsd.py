"""The Python client and the `ics` CLI against a real icsd ($ICSD).

Skips (exit 77 through run_py.py) when icsd is not built or does not answer
yet; an operation the server answers UNKNOWN_COMMAND / NOT_SUPPORTED for
makes only its sub-test skip, with the reason printed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import struct
import subprocess
import time
import unittest

import icsclient as ic
from icsclient import wire as w
from cliharness import run_cli
from icsd_proc import REPO, Icsd, require_icsd
from icsd_proc import run_cli as run_cli_process

MISSING = (ic.UnknownCommand, ic.NotSupported)


def setUpModule() -> None:
    require_icsd()


class Base(unittest.TestCase):
    srv: Icsd

    @classmethod
    def setUpClass(cls) -> None:
        cls.srv = Icsd()
        try:
            cls.srv.start()
            cls.srv.check_serving()
        except BaseException:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.cleanup()

    def setUp(self) -> None:
        self.c = self.srv.admin()

    def tearDown(self) -> None:
        self.c.close()

    def need(self, fn, *a, **kw):
        """Runs an operation the server must serve (every wire-v1 opcode)."""
        return fn(*a, **kw)

    def principals(self, tag: str):
        """An iot_sp and a tpsp of its own for this test."""
        self.need(self.c.principal_set, f"maker-{tag}", "iot_sp", f"m-{tag}", scopes=[f"{tag.upper()}-"])
        self.need(self.c.principal_set, f"shop-{tag}", "tpsp", f"s-{tag}", scopes=[f"https://{tag}.example/"])
        maker = ic.Client("127.0.0.1", self.srv.port, user=f"maker-{tag}", secret=f"m-{tag}")
        shop = ic.Client("127.0.0.1", self.srv.port, user=f"shop-{tag}", secret=f"s-{tag}")
        self.addCleanup(maker.close)
        self.addCleanup(shop.close)
        return maker, shop


class Operations(Base):
    def test_basics(self) -> None:
        self.c.noop()
        v = self.c.version()
        self.assertGreaterEqual(int(v.split(".")[0]), 1)
        self.assertEqual(self.need(self.c.whoami), ("admin", "admin"))
        self.assertIsInstance(self.need(self.c.stat), dict)

    def test_map_inquire_demap(self) -> None:
        c = self.c
        lsn = self.need(c.map, "op-dev1", "https://op.example/a", "op-uti1")
        self.assertGreater(lsn, 0)
        c.map("op-dev1", "https://op.example/a", "op-uti1")  # same row again: OK
        self.assertEqual(self.need(c.inquire_device, "op-dev1"), [ic.Row("https://op.example/a", "op-uti1", 0)])
        self.assertEqual(self.need(c.get, "op-dev1")[0].uti, "op-uti1")
        self.assertEqual(self.need(c.inquire_binding, "https://op.example/a", "op-uti1"), "op-dev1")
        ttl_lsn = c.map("op-dev1", "https://op.example/b", "op-uti2", ttl=3600)
        self.assertGreater(ttl_lsn, lsn)
        rows = {r.uti: r for r in c.inquire_device("op-dev1")}
        self.assertTrue(time.time() + 3500 < rows["op-uti2"].expires_at <= time.time() + 3700)
        with self.assertRaises(ic.NotFound):
            c.inquire_device("op-nope")
        with self.assertRaises(ic.NotFound):
            c.inquire_binding("https://op.example/a", "nope")
        self.assertGreater(self.need(c.demap, "op-dev1", "https://op.example/a", "op-uti1"), ttl_lsn)
        with self.assertRaises(ic.NotFound):
            c.inquire_binding("https://op.example/a", "op-uti1")
        c.map("op-dev3", "https://op.example/c", "u1")
        c.map("op-dev3", "https://op.example/d", "u2")
        self.assertEqual(self.need(c.demap_device, "op-dev3"), 2)
        c.map("op-dev4", "https://op.example/e", "u3")
        self.need(c.demap_binding, "https://op.example/e", "u3")
        with self.assertRaises(ic.NotFound):
            c.inquire_device("op-dev4")
        c.map("op-dev5", "https://op.example/svc", "u4")
        c.map("op-dev6", "https://op.example/svc", "u5")
        self.assertEqual(self.need(c.demap_service, "https://op.example/svc"), 2)

    def refused(self, exc, fn, *a, **kw) -> None:
        """Expects the server to refuse with exc (no answer at all fails)."""
        with self.assertRaises(exc):
            fn(*a, **kw)

    def test_exists(self) -> None:
        c = self.c
        c.timeout = 3
        self.need(c.map, "xs-dev1", "https://exists.example/a", "xs-u1")
        self.refused(ic.Exists, c.map, "xs-dev2", "https://exists.example/a", "xs-u1")
        self.assertEqual(c.inquire_binding("https://exists.example/a", "xs-u1"), "xs-dev1")

    def test_cas(self) -> None:
        c = self.c
        c.timeout = 3
        lsn = self.need(c.map, "cas-dev", "https://cas.example/", "cas-u")
        self.refused(ic.Exists, c.demap, "cas-dev", "https://cas.example/", "cas-u", cas=lsn + 1000)
        c.demap("cas-dev", "https://cas.example/", "cas-u", cas=lsn)

    def test_statuses_from_the_server(self) -> None:
        c = self.c
        with self.assertRaises(ic.NotFound):
            c.inquire_device("st-none")
        with self.assertRaises(ic.InvalidRequest):
            self.need(c.key_issue, 0)
        with self.assertRaises(ic.InvalidRequest):
            c.call(w.INQUIRE_DEVICE, b"")  # device ID must be 1..128 bytes
        with self.assertRaises((ic.InvalidRequest, ic.TooLarge)):
            c.call(w.INQUIRE_DEVICE, b"x" * 200)
        with self.assertRaises(ic.NotSupported):
            c.call(0x01, b"k", b"\0" * 8, b"v")  # memcached SET
        with self.assertRaises(ic.UnknownCommand):
            c.call(0x99)
        with self.assertRaises(ic.AuthError):
            ic.Client("127.0.0.1", self.srv.port, user="admin", secret="wrong", timeout=5)
        with ic.Client("127.0.0.1", self.srv.port, timeout=5) as anon:
            with self.assertRaises(ic.AuthError):
                anon.inquire_device("st-none")
        maker, shop = self.principals("st")
        with self.assertRaises(ic.AccessDenied):
            self.need(shop.principal_list)
        with self.assertRaises(ic.AccessDenied):
            shop.map("st-dev", "https://st.example/x", "u")
        batch = self.need(c.key_issue, 2)
        c.key_validate(batch)
        with self.assertRaises(ic.BadSignature):
            c.key_validate(batch.raw[:-1] + bytes([batch.raw[-1] ^ 1]))
        with self.assertRaises(ic.InvalidRequest):
            c.key_validate(b"short")

    def test_too_large_closes(self) -> None:
        with ic.Client("127.0.0.1", self.srv.port, timeout=5) as raw:
            raw._ensure_open()
            body = (1 << 20) + 1
            raw._sock.sendall(struct.pack(">BBHBBHIIQ", 0x80, w.NOOP, 0, 0, 0, 0, body, 1, 0))
            f = raw._read_frame(time.monotonic() + 5)
            self.assertEqual(f.status, ic.TooLarge.status)

    def test_history_prefs_snapshot_principals(self) -> None:
        c = self.c
        c.map("hp-dev", "https://hp.example/", "hp-u")
        h = self.need(c.history, "hp-dev", 10)
        self.assertIn("map", [e.event for e in h])
        p = ic.Prefs(3600, ["https://hp.example/"], ["https://ads.example/"], [ic.Window(0x1F, 480, 1080)])
        self.need(c.prefs_set, "hp-dev", p)
        self.assertEqual(self.need(c.prefs_get, "hp-dev"), p)
        self.assertGreaterEqual(self.need(c.snapshot), c.last_lsn if False else 0)
        self.need(c.principal_set, "hp-gen", "generator,validator", "g")
        names = {x.name: x for x in self.need(c.principal_list)}
        self.assertEqual(names["hp-gen"].roles, ["generator", "validator"])
        with ic.Client("127.0.0.1", self.srv.port, user="hp-gen", secret="g") as gen:
            self.assertEqual(gen.whoami()[0], "hp-gen")
            gen.key_validate(gen.key_issue(5))
        self.need(c.principal_del, "hp-gen")
        with self.assertRaises(ic.AuthError):
            ic.Client("127.0.0.1", self.srv.port, user="hp-gen", secret="g", timeout=5)

    def test_export(self) -> None:
        c = self.c
        for i in range(5):
            c.map(f"ex-dev{i}", "https://ex.example/", f"ex-u{i}")
        rows = [r for r in self.need(lambda: list(c.export_all(page=2))) if r.device.startswith("ex-")]
        self.assertEqual(sorted((r.device, r.uti) for r in rows), [(f"ex-dev{i}", f"ex-u{i}") for i in range(5)])

    def test_two_phase_and_watch(self) -> None:
        maker, shop = self.principals("tp")
        self.need(maker.watch, ic.W_MAP_PENDING | ic.W_DEMAPPED)
        shop.watch(ic.W_MAP_RESULT)
        rid = self.need(shop.map_request, "TP-0001", "https://tp.example/orders", "tp-uti-1")
        self.assertEqual(len(rid), 16)
        ev = maker.poll_event(5)
        self.assertIsNotNone(ev, "no MAP_PENDING event")
        self.assertEqual((ev.name, ev.key, ev.serial, ev.uri, ev.uti),
                         ("MAP_PENDING", rid, "TP-0001", "https://tp.example/orders", "tp-uti-1"))
        self.need(maker.map_confirm, rid, "tp-fridge-1")
        ev = next(shop.events(timeout=5), None)
        self.assertIsNotNone(ev, "no MAP_RESULT event")
        self.assertEqual((ev.name, ev.status, ev.device), ("MAP_RESULT", 0, "tp-fridge-1"))
        self.assertEqual(shop.inquire_binding("https://tp.example/orders", "tp-uti-1"), "tp-fridge-1")
        self.assertEqual([r.uti for r in maker.inquire_device("tp-fridge-1")], ["tp-uti-1"])
        rid2 = shop.map_request("TP-0002", "https://tp.example/orders", "tp-uti-2")
        self.assertEqual(maker.poll_event(5).key, rid2)
        maker.map_reject(rid2, "user declined")
        ev = shop.poll_event(5)
        self.assertEqual((ev.key, ev.status, ev.reason), (rid2, ic.NotFound.status, "user declined"))
        with self.assertRaises(ic.NotFound):
            maker.map_confirm(rid2, "tp-fridge-2")
        with self.assertRaises(ic.NotFound):
            shop.map_request("NOBODY-1", "https://tp.example/orders", "tp-uti-3")
        with self.assertRaises(ic.AccessDenied):
            shop.map_request("TP-0003", "https://other.example/", "tp-uti-4")
        shop.demap("tp-fridge-1", "https://tp.example/orders", "tp-uti-1")
        ev = maker.poll_event(5)
        self.assertEqual((ev.name, ev.device, ev.uti), ("DEMAPPED", "tp-fridge-1", "tp-uti-1"))

    def test_pipeline_10000(self) -> None:
        c = self.c
        t0 = time.monotonic()
        with c.pipeline() as p:
            for i in range(10000):
                p.map(f"pl-{i}", "https://pl.example/", f"pl-u{i}")
        self.assertTrue(all(isinstance(r, int) for r in p.results), [r for r in p.results if not isinstance(r, int)][:3])
        self.assertEqual(p.results, sorted(p.results))
        with c.pipeline() as q:
            for i in range(0, 10000):
                q.inquire_binding("https://pl.example/", f"pl-u{i}")
        self.assertEqual(q.results, [f"pl-{i}" for i in range(10000)])
        print(f"\n  pipelined 10,000 MAP + 10,000 INQUIRE_BINDING in {time.monotonic() - t0:.2f} s")

    def test_timeout_when_server_stops_answering(self) -> None:
        c = self.c
        c.noop()
        c.timeout = 0.5
        self.srv.signal(signal.SIGSTOP)
        self.srv.wait_stopped()
        try:
            # a change written to a connection that then gets no answer
            with self.assertRaises(ic.UnknownOutcome):
                c.map("to-dev", "https://to.example/", "to-u")
            t0 = time.monotonic()
            with self.assertRaises(ic.Timeout):  # a read (here: on reconnect) times out
                c.inquire_device("to-x")
            self.assertLess(time.monotonic() - t0, 3)
        finally:
            self.srv.signal(signal.SIGCONT)
        c.timeout = 10
        c.noop()  # reconnects by itself
        # the change whose outcome was unknown: applied or not, never twice
        try:
            self.assertEqual(c.inquire_binding("https://to.example/", "to-u"), "to-dev")
        except ic.NotFound:
            pass


class Restart(unittest.TestCase):
    def test_reconnect_after_restart(self) -> None:
        srv = Icsd()
        self.addCleanup(srv.cleanup)
        srv.start()
        srv.check_serving()
        port = srv.port
        c = srv.admin()
        self.addCleanup(c.close)
        try:
            c.principal_set("rs-maker", "iot_sp", "m", scopes=["RS-"])
            c.map("rs-dev", "https://rs.example/", "rs-u", owner="rs-maker")
        except MISSING as e:
            self.fail(f"MAP not served: {e}")
        maker = ic.Client("127.0.0.1", port, user="rs-maker", secret="m")
        self.addCleanup(maker.close)
        maker.watch(ic.W_DEMAPPED)
        self.assertEqual(srv.stop(), 0, "icsd did not stop cleanly on SIGTERM")
        with self.assertRaises(ic.IcsConnectionError):
            c.noop()  # server down: a clear connection error
        # A watcher waiting for events waits the restart out: no event, no
        # error (reopening is refused meanwhile; `ics watch` ended on that).
        self.assertIsNone(maker.poll_event(0.5))
        for _ in range(50):
            try:
                srv.start(port=port)
                break
            except unittest.SkipTest:
                time.sleep(0.1)  # the port may linger briefly
        else:
            self.skipTest("could not restart icsd on the same port")
        self.assertEqual(c.inquire_device("rs-dev")[0].uti, "rs-u")  # durable, and reconnected
        self.assertGreaterEqual(c.reconnects, 1)
        maker.noop()  # reconnects and re-arms WATCH (DEMAPPED is not kept for absent watchers)
        c.demap("rs-dev", "https://rs.example/", "rs-u")
        ev = maker.poll_event(5)  # the owner's WATCH was re-armed on a new connection
        self.assertIsNotNone(ev, "no DEMAPPED event after the restart")
        self.assertEqual((ev.name, ev.device), ("DEMAPPED", "rs-dev"))
        self.assertGreaterEqual(maker.reconnects, 1)


class Tls(unittest.TestCase):
    def test_tls_client_cert_and_sasl(self) -> None:
        require_icsd()
        if not shutil.which("openssl"):
            self.skipTest("no openssl tool for scripts/mkcerts.sh")
        srv = Icsd()
        self.addCleanup(srv.cleanup)
        pki = os.path.join(srv.tmp, "pki")
        r = subprocess.run([str(REPO / "scripts" / "mkcerts.sh"), pki, "admin"], capture_output=True, text=True)
        if r.returncode:
            self.skipTest(f"mkcerts.sh failed: {r.stderr[-200:]}")
        srv.extra = ["--tls-cert", f"{pki}/server.pem", "--tls-key", f"{pki}/server.key",
                     "--tls-ca", f"{pki}/ca.pem", "--tls-port", "0"]
        srv.start()
        if not srv.tls_port:
            self.fail(f"icsd reports no TLS port yet ({srv.log_tail(2)})")
        try:
            c = ic.Client("127.0.0.1", srv.tls_port, tls_ca=f"{pki}/ca.pem", tls_cert=f"{pki}/admin.pem",
                          tls_key=f"{pki}/admin.key", timeout=5)
        except ic.IcsError as e:
            self.fail(f"icsd does not serve TLS yet: {e} ({srv.log_tail(2)})")
        with c:
            self.assertEqual(c.whoami(), ("admin", "admin"))  # authenticated by certificate
            c.map("tls-dev", "https://tls.example/", "tls-u")
            self.assertEqual(c.inquire_binding("https://tls.example/", "tls-u"), "tls-dev")
        cred = srv.cred()
        # SASL over TLS (the certificate still presented: icsd asks for one
        # whenever --tls-ca is set)
        with ic.Client("127.0.0.1", srv.tls_port, user="admin", secret=cred.secret, tls_ca=f"{pki}/ca.pem",
                       tls_cert=f"{pki}/admin.pem", tls_key=f"{pki}/admin.key", timeout=5) as c2:
            self.assertEqual(c2.whoami()[0], "admin")
        rc, out, err = run_cli("--port", str(srv.tls_port), "--tls-ca", f"{pki}/ca.pem", "--tls-cert",
                               f"{pki}/admin.pem", "--tls-key", f"{pki}/admin.key", "--json", "whoami")
        self.assertEqual((rc, json.loads(out or "{}").get("principal")), (0, "admin"), err)
        try:  # without a client certificate: either SASL works, or a clean refusal
            with ic.Client("127.0.0.1", srv.tls_port, user="admin", secret=cred.secret,
                           tls_ca=f"{pki}/ca.pem", timeout=5) as c3:
                self.assertEqual(c3.whoami()[0], "admin")
        except ic.IcsConnectionError as e:
            print(f"\n  TLS without a client certificate refused by icsd: {e}")
        with self.assertRaises(ic.IcsConnectionError):  # a server we do not trust
            ic.Client("127.0.0.1", srv.tls_port, tls_ca=f"{pki}/admin.pem", timeout=5)


class Cli(Base):
    def cli(self, *args: str, **kw):
        rc, out, err = run_cli(*args, cred=self.srv.cred_path, **kw)
        if rc == 1 and ("UNKNOWN_COMMAND" in err or "NOT_SUPPORTED" in err):
            self.fail(f"server does not serve `ics {' '.join(args)}` yet: {err.strip()}")
        return rc, out, err

    def ok(self, *args: str) -> None:
        r = self.cli(*args)
        self.assertEqual(r[0], 0, (args, r))

    def test_subcommands(self) -> None:
        rc, out, err = self.cli("--json", "whoami")
        if rc == 1 and "UNKNOWN_COMMAND" in err:
            self.fail("WHOAMI not served")
        self.assertEqual((rc, json.loads(out)), (0, {"principal": "admin", "role": "admin"}), err)
        # found with no flags from the working directory's var/ics/admin.cred
        os.makedirs(os.path.join(self.srv.tmp, "cwd", "var", "ics"), exist_ok=True)
        shutil.copy(self.srv.cred_path, os.path.join(self.srv.tmp, "cwd", "var", "ics", "admin.cred"))
        self.assertEqual(run_cli_process("whoami", cwd=os.path.join(self.srv.tmp, "cwd"))[0], 0)
        ok = self.ok
        ok("map", "cli-dev", "https://cli.example/a", "cli-u1")
        self.assertEqual(json.loads(self.cli("--json", "inquire", "device", "cli-dev")[1])[0]["uti"], "cli-u1")
        self.assertEqual(self.cli("inquire", "binding", "https://cli.example/a", "cli-u1")[1].strip(), "cli-dev")
        self.assertEqual(self.cli("inquire", "device", "cli-none")[0], 1)
        ok("demap", "row", "cli-dev", "https://cli.example/a", "cli-u1")
        ok("map", "cli-dev", "https://cli.example/a", "cli-u1")
        self.assertEqual(json.loads(self.cli("--json", "demap", "device", "cli-dev")[1]), {"removed": 1})
        ok("map", "cli-dev", "https://cli.example/a", "cli-u1")
        ok("demap", "binding", "https://cli.example/a", "cli-u1")
        ok("map", "cli-dev", "https://cli.example/s", "cli-u2")
        self.assertEqual(json.loads(self.cli("--json", "demap", "service", "https://cli.example/s")[1]), {"removed": 1})
        ok("map", "cli-dev", "https://cli.example/a", "cli-u1")
        self.assertIn("map", self.cli("history", "cli-dev")[1])
        ok("stats")
        ok("version")
        ok("snapshot")
        ok("keys", "issue", "3", "--out", os.path.join(self.srv.tmp, "kb"))
        self.assertEqual(self.cli("keys", "validate", os.path.join(self.srv.tmp, "kb"))[1].strip(), "valid")
        ok("prefs", "set", "cli-dev", "--retention", "0", "--deny", "https://ads.example/",
           "--window", "sat,sun@00:00-24:00")
        self.assertEqual(json.loads(self.cli("--json", "prefs", "get", "cli-dev")[1])["deny"], ["https://ads.example/"])
        ok("principal", "set", "cli-maker", "--roles", "iot_sp", "--secret", "m", "--scopes", "CLI-")
        ok("principal", "set", "cli-shop", "--roles", "tpsp", "--secret", "s", "--scopes", "https://clishop.example/")
        self.assertIn("cli-maker", self.cli("principal", "list")[1])
        watch = subprocess.Popen([os.sys.executable, os.path.join(str(REPO), "clients", "cli", "ics"),
                                  "--cred", self.srv.cred_path, "--user", "cli-maker", "--secret", "m",
                                  "--json", "watch", "--events", "pending", "--count", "1", "--for", "20"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertIn("watching", watch.stderr.readline())  # armed before the request
        rc, out, err = self.cli("--user", "cli-shop", "--secret", "s", "map-request", "CLI-9",
                                "https://clishop.example/o", "cli-u9")
        self.assertEqual(rc, 0, err)
        rid = out.strip()
        wout, werr = watch.communicate(timeout=60)
        self.assertEqual(json.loads(wout)["request_id"], rid, werr)
        ok("--user", "cli-maker", "--secret", "m", "confirm", rid, "cli-fridge")
        self.assertEqual(self.cli("inquire", "binding", "https://clishop.example/o", "cli-u9")[1].strip(), "cli-fridge")
        rc, out, _ = self.cli("--user", "cli-shop", "--secret", "s", "map-request", "CLI-10",
                              "https://clishop.example/o", "cli-u10")
        ok("--user", "cli-maker", "--secret", "m", "reject", out.strip(), "no")
        ok("principal", "del", "cli-shop")
        self.assertEqual(self.cli("--user", "cli-shop", "--secret", "s", "whoami")[0], 1)
        self.assertEqual(self.cli("nonsense")[0], 2)
        self.assertEqual(run_cli("--port", "1", "--user", "a", "--secret", "b", "whoami")[0], 3)

    def test_bad_input_is_a_usage_error(self) -> None:
        # Out-of-range numbers, malformed windows and batch files: exit 2
        # with a one-line reason, never a traceback (exit 1 means "refused
        # by the server" to scripts).
        cases = [("keys", "issue", "70000"), ("keys", "issue", "-1"),
                 ("prefs", "set", "bad-dev", "--retention", "-5"), ("export", "--page", "-1"),
                 ("--timeout", "-1", "whoami"), ("--port", "99999", "whoami"),
                 ("prefs", "set", "bad-dev", "--window", "mon@08:99-09:00")]
        for args in cases:
            rc, out, err = self.cli(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertNotIn("Traceback", err, args)
        batch = os.path.join(self.srv.tmp, "batch.json")
        for text in ('{"x": 1}\n', "{broken\n"):
            with open(batch, "w") as fh:
                fh.write(text)
            rc, out, err = self.cli("keys", "validate", batch)
            self.assertEqual(rc, 2, (text, err))
            self.assertNotIn("Traceback", err, text)
        rows = os.path.join(self.srv.tmp, "rows.ndjson")
        with open(rows, "w") as fh:
            fh.write('{"device": "bi-d", "uri": "s:1", "uti": "bi-u", "expires_at": true}\n')
        rc, out, err = self.cli("import", rows)
        self.assertEqual(rc, 1, err)
        self.assertIn("expires_at must be a non-negative integer", err)

    def test_principal_import(self) -> None:
        f = os.path.join(self.srv.tmp, "principals.txt")
        with open(f, "w") as fh:
            fh.write("# comment\nimp-ops roles=admin secret=o\nimp-bad roles=wizard\n"
                     "imp-maker roles=iot_sp secret=m scopes=IMP-,IMQ-\n")
        rc, out, err = self.cli("principal", "import", f)
        self.assertEqual(rc, 1)
        self.assertIn(f"{f}:3: unknown role 'wizard'", err)
        names = {p["name"]: p for p in json.loads(self.cli("--json", "principal", "list")[1])}
        self.assertEqual(names["imp-maker"]["scopes"], ["IMP-", "IMQ-"])
        self.assertNotIn("imp-bad", names)

    def test_ndjson_import_export(self) -> None:
        src = os.path.join(self.srv.tmp, "rows.ndjson")
        bad = []
        with open(src, "w") as fh:
            for i in range(1, 100001):
                if i % 25013 == 0:
                    fh.write("not json\n")
                    bad.append(i)
                elif i % 25031 == 0:
                    fh.write(json.dumps({"device": "nd-x" + "y" * 200, "uri": "https://nd/", "uti": f"n{i}"}) + "\n")
                    bad.append(i)
                else:
                    fh.write(json.dumps({"device": f"nd-{i % 40000}", "uri": f"https://nd.example/{i % 5}",
                                         "uti": f"nd-u{i}"}) + "\n")
        t0 = time.monotonic()
        rc, out, err = self.cli("--json", "import", src)
        took = time.monotonic() - t0
        self.assertEqual(json.loads(out), {"imported": 100000 - len(bad), "errors": len(bad), "lines": 100000}, err[-500:])
        self.assertEqual([int(x.split(":")[1]) for x in err.strip().splitlines()], bad)
        print(f"\n  imported 100,000 NDJSON lines into icsd in {took:.1f} s")
        dump = os.path.join(self.srv.tmp, "dump.ndjson")
        self.assertEqual(self.cli("export", dump)[0], 0)
        mine = sorted(l for l in open(dump).read().splitlines() if '"nd-' in l)
        self.assertEqual(len(mine), 100000 - len(bad))
        # round trip: import the export into a fresh icsd, export again: identical
        fresh = Icsd()
        self.addCleanup(fresh.cleanup)
        fresh.start()
        self.assertEqual(run_cli("import", dump, cred=fresh.cred_path)[0], 0)
        dump2 = os.path.join(fresh.tmp, "dump2.ndjson")
        self.assertEqual(run_cli("export", dump2, cred=fresh.cred_path)[0], 0)
        self.assertEqual(sorted(open(dump).read().splitlines()), sorted(open(dump2).read().splitlines()))


class Examples(Base):
    def run_example(self, cmd) -> str:
        p = subprocess.run(cmd + ["--cred", self.srv.cred_path], capture_output=True, text=True, timeout=120)
        if p.returncode and ("UNKNOWN_COMMAND" in p.stderr or "NOT_SUPPORTED" in p.stderr):
            self.fail(f"server does not serve what {cmd[-1]} needs yet")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_python_examples(self) -> None:
        for name in ("fridge_shop", "lock_smarthome", "speaker_music"):
            out = self.run_example([os.sys.executable, str(REPO / "clients" / "examples" / f"{name}.py")])
            self.assertIn(f"{name}: ok", out)

    def test_c_example(self) -> None:
        exe = os.environ.get("ICS_EXAMPLE_C")
        if not exe or not os.access(exe, os.X_OK):
            self.skipTest("the C example is not built (ICS_EXAMPLE_C)")
        self.assertIn("fridge_shop (C): ok", self.run_example([exe]))


if __name__ == "__main__":
    unittest.main()
