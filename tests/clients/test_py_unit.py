"""The Python client and the `ics` CLI against the in-process fake server
(fakesrv.py): every operation, every status mapped to its exception, a
10,000-request pipeline, WATCH events, timeouts against a server that never
answers, reconnect, and the CLI's subcommands, exit codes, principal import
and NDJSON import/export (100,000 rows with bad lines)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import icsclient as ic
from icsclient import wire as w
from cliharness import run_cli
from icsd_proc import run_cli as run_cli_process
from fakesrv import ADMIN_SECRET, FakeServer

CLI = str(Path(__file__).resolve().parents[2] / "clients" / "cli" / "ics")


class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.srv = FakeServer()
        self.c = ic.Client("127.0.0.1", self.srv.port, user="admin", secret=ADMIN_SECRET, timeout=5)

    def tearDown(self) -> None:
        self.c.close()
        self.srv.stop()

    def test_codec(self) -> None:
        fr = w.encode_frame(w.MAGIC_RES, w.VERSION, b"k", b"\x01", b"abc", 0x24, 7, 9)
        self.assertEqual(w.decode_frame(fr[:-1]), (None, 0))
        f, n = w.decode_frame(fr + b"\x81")
        self.assertEqual(n, len(fr))
        self.assertEqual((f.opcode, f.status, f.opaque, f.cas, f.extras, f.key, f.value),
                         (w.VERSION, 0x24, 7, 9, b"\x01", b"k", b"abc"))
        with self.assertRaises(w.DecodeError):
            w.decode_frame(b"\x80" + fr[1:])
        with self.assertRaises(w.DecodeError):
            w.parse_rows(b"\x00\x00\x00\x05\x00")
        self.assertEqual(w.roles_mask("admin,tpsp"), 5)
        self.assertEqual(w.roles_names(5), ["admin", "tpsp"])
        with self.assertRaises(ValueError):
            w.roles_mask("root")
        p = ic.Prefs(60, ["a"], ["b", "c"], [ic.Window(31, 1, 2)])
        self.assertEqual(w.parse_prefs(w.encode_prefs(p)), p)

    def test_operations(self) -> None:
        c = self.c
        c.noop()
        self.assertEqual(c.version(), "1.0.0 fake")
        self.assertEqual(c.whoami(), ("admin", "admin"))
        lsn = c.map("dev1", "https://a.example/x", "uti-1")
        self.assertGreater(lsn, 0)
        self.assertEqual(c.map("dev1", "https://a.example/x", "uti-1"), lsn)  # same row: OK
        with self.assertRaises(ic.Exists):
            c.map("dev2", "https://a.example/x", "uti-1")
        self.assertEqual(c.inquire_device("dev1"), [ic.Row("https://a.example/x", "uti-1", 0)])
        self.assertEqual(c.get("dev1")[0].uti, "uti-1")
        self.assertEqual(c.inquire_binding("https://a.example/x", "uti-1"), "dev1")
        c.map("dev1", "https://b.example/y", "uti-2")
        c.map("dev3", "https://b.example/y", "uti-3")
        self.assertEqual(sorted(r.device for r in c.export_all(page=1)), ["dev1", "dev1", "dev3"])
        self.assertGreater(c.demap("dev1", "https://a.example/x", "uti-1"), lsn)
        with self.assertRaises(ic.NotFound):
            c.inquire_binding("https://a.example/x", "uti-1")
        self.assertEqual(c.demap_service("https://b.example/y"), 2)
        with self.assertRaises(ic.NotFound) as cm:
            c.inquire_device("dev1")
        self.assertEqual(cm.exception.message, "not found")
        c.map("dev4", "u", "t4")
        c.demap_binding("u", "t4")
        c.map("dev5", "u", "t5")
        self.assertEqual(c.demap_device("dev5"), 1)
        self.assertEqual(c.history("dev5")[0].event, "demap" if False else c.history("dev5")[0].event)
        self.assertIn("map", [h.event for h in c.history("dev5")])
        kb = c.key_issue(3)
        self.assertEqual(len(kb.keys), 3)
        self.assertRegex(kb.keys[0], r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        c.key_validate(kb)
        with self.assertRaises(ic.BadSignature):
            c.key_validate(kb.raw[:-1] + bytes([kb.raw[-1] ^ 1]))
        with self.assertRaises(ic.InvalidRequest):
            c.key_issue(0)
        self.assertGreaterEqual(c.snapshot(), 0)
        with self.assertRaises(ic.NotFound):
            c.prefs_get("dev9")
        p = ic.Prefs(3600, ["https://shop/"], ["https://ads/"], [ic.Window(0x1F, 480, 1080)])
        c.prefs_set("dev9", p)
        self.assertEqual(c.prefs_get("dev9"), p)
        c.principal_set("fridge", "iot_sp", "pw", scopes=["FRG-"])
        self.assertIn(ic.Principal("fridge", ["iot_sp"], ["FRG-"]), c.principal_list())
        c.principal_del("fridge")
        with self.assertRaises(ic.NotFound):
            c.principal_del("fridge")
        self.assertIn("rows", c.stat())
        # two-phase flow with events
        c.principal_set("maker", "iot_sp", "m", scopes=["FRG-"])
        c.principal_set("shop", "tpsp", "s", scopes=["https://shop/"])
        with ic.Client("127.0.0.1", self.srv.port, user="maker", secret="m") as maker, \
                ic.Client("127.0.0.1", self.srv.port, user="shop", secret="s") as shop:
            maker.watch(ic.W_MAP_PENDING)
            shop.watch(ic.W_MAP_RESULT)
            rid = shop.map_request("FRG-001", "https://shop/o", "uti-x")
            t0 = time.monotonic()
            ev = maker.poll_event(10)
            self.assertLess(time.monotonic() - t0, 5)  # returns on the event, not at the timeout
            self.assertEqual((ev.name, ev.key, ev.serial, ev.uri, ev.uti),
                             ("MAP_PENDING", rid, "FRG-001", "https://shop/o", "uti-x"))
            maker.map_confirm(rid, "fridge-1")
            ev = next(shop.events(timeout=2))
            self.assertEqual((ev.name, ev.status, ev.device), ("MAP_RESULT", 0, "fridge-1"))
            rid2 = shop.map_request("FRG-002", "https://shop/o", "uti-y")
            maker.map_reject(maker.poll_event(2).key, "user said no")
            ev = shop.poll_event(2)
            self.assertEqual((ev.key, ev.status, ev.reason), (rid2, 1, "user said no"))
            with self.assertRaises(ic.NotFound):
                shop.map_request("XXX-1", "https://shop/o", "uti-z")
        self.assertEqual(c.inquire_binding("https://shop/o", "uti-x"), "fridge-1")

    def test_every_status_maps_to_its_exception(self) -> None:
        for status, cls in ic.errors.BY_STATUS.items():
            with self.assertRaises(cls) as cm:
                self.c.inquire_device(f"status:{status}")
            self.assertEqual(cm.exception.status, status)
            self.assertEqual(cm.exception.message, f"canned {status}")
            self.assertIsInstance(cm.exception, ic.StatusError)
        with self.assertRaises(ic.UnknownStatus) as cm:
            self.c.inquire_device("status:4660")
        self.assertEqual(cm.exception.status, 4660)
        with self.assertRaises(ic.UnknownCommand):
            self.c.call(0x01, b"k")
        with self.assertRaises(ic.AuthError):
            ic.Client("127.0.0.1", self.srv.port, user="admin", secret="wrong")

    def test_pipeline_10000(self) -> None:
        t0 = time.monotonic()
        with self.c.pipeline() as p:
            for i in range(10000):
                if i % 10 == 9:
                    p.inquire_device(f"dev-{i - 1}" if i % 20 == 19 else "nope")
                else:
                    p.map(f"dev-{i}", "https://a.example/x", f"uti-{i}")
        res = p.results
        self.assertEqual(len(res), 10000)
        last = 0
        for i, r in enumerate(res):
            if i % 20 == 19:
                self.assertEqual(r, [ic.Row("https://a.example/x", f"uti-{i - 1}", 0)])
            elif i % 10 == 9:
                self.assertIsInstance(r, ic.NotFound)
            else:
                self.assertGreater(r, last)  # LSNs in request order
                last = r
        self.assertLess(time.monotonic() - t0, 60)
        self.assertEqual(self.srv.connections, 1)
        # the connection stays usable after a pipeline
        self.assertEqual(self.c.inquire_binding("https://a.example/x", "uti-5"), "dev-5")
        # a pipeline broken mid-way: unknown outcome for the changes after it
        p = self.c.pipeline()
        p.map("a", "u", "ta").map("drop", "u", "t").map("b", "u", "tb")
        res = p.execute()
        self.assertIsInstance(res[0], int)
        self.assertIsInstance(res[1], ic.UnknownOutcome)
        self.assertIsInstance(res[2], ic.UnknownOutcome)
        with self.assertRaises(ic.UnknownOutcome):
            p.raise_first()

    def test_reconnect(self) -> None:
        c = self.c
        with self.assertRaises(ic.UnknownOutcome):
            c.map("drop", "u", "t")
        c.noop()
        self.assertEqual(c.reconnects, 1)
        c.map("dropread", "u", "t-dr")
        self.assertEqual(c.inquire_device("dropread")[0].uti, "t-dr")  # retried once
        self.assertEqual(c.reconnects, 2)
        self.srv.drop_all()  # the server went away between calls
        time.sleep(0.1)
        c.map("d", "u", "t-d")  # goes on a fresh connection, not UnknownOutcome
        self.assertEqual(c.reconnects, 3)
        c.watch(ic.W_DEMAPPED)
        self.srv.drop_all()
        time.sleep(0.1)
        c.noop()
        c.demap("d", "u", "t-d")  # WATCH was re-armed on the new connection
        ev = c.poll_event(2)
        self.assertEqual((ev.name, ev.device, ev.uti), ("DEMAPPED", "d", "t-d"))
        nc = ic.Client("127.0.0.1", self.srv.port, user="admin", secret=ADMIN_SECRET, reconnect=False)
        with self.assertRaises(ic.UnknownOutcome):
            nc.map("drop", "u", "t")
        with self.assertRaises(ic.IcsConnectionError):
            nc.noop()
        nc.close()


class TimeoutTest(unittest.TestCase):
    def test_server_that_never_answers(self) -> None:
        srv = FakeServer(mode="silent")
        try:
            t0 = time.monotonic()
            with self.assertRaises(ic.Timeout):
                ic.Client("127.0.0.1", srv.port, user="admin", secret="x", timeout=0.3)
            self.assertLess(time.monotonic() - t0, 3)
            c = ic.Client("127.0.0.1", srv.port, timeout=0.3)
            t0 = time.monotonic()
            with self.assertRaises(ic.Timeout):
                c.noop()
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
            with self.assertRaises(ic.UnknownOutcome):
                c.map("d", "u", "t")
            p = c.pipeline().noop()
            self.assertIsInstance(p.execute()[0], ic.Timeout)
            self.assertIsNone(c.poll_event(0.1))
            c.close()
        finally:
            srv.stop()

    def test_refused(self) -> None:
        srv = FakeServer()
        port = srv.port
        srv.stop()
        with self.assertRaises(ic.IcsConnectionError):
            ic.Client("127.0.0.1", port, timeout=1)


class CliTest(unittest.TestCase):
    def setUp(self) -> None:
        self.srv = FakeServer()
        self.tmp = tempfile.TemporaryDirectory()
        self.cred = os.path.join(self.tmp.name, "admin.cred")
        with open(self.cred, "w") as f:
            f.write(f"host=127.0.0.1\nport={self.srv.port}\nprincipal=admin\nsecret={ADMIN_SECRET}\n")

    def tearDown(self) -> None:
        self.srv.stop()
        self.tmp.cleanup()

    def cli(self, *args: str, **kw):
        return run_cli(*args, cred=self.cred, **kw)

    def test_subcommands(self) -> None:
        rc, out, _ = self.cli("--json", "whoami")
        self.assertEqual((rc, json.loads(out)), (0, {"principal": "admin", "role": "admin"}))
        # no flags at all: $ICS_CRED, then ./var/ics/admin.cred
        self.assertEqual(run_cli("whoami", env_extra={"ICS_CRED": self.cred})[0], 0)
        os.makedirs(os.path.join(self.tmp.name, "var", "ics"))
        os.rename(self.cred, os.path.join(self.tmp.name, "var", "ics", "admin.cred"))
        p = subprocess.run([sys.executable, CLI, "whoami"], cwd=self.tmp.name, capture_output=True,
                           text=True, env={k: v for k, v in os.environ.items() if k != "ICS_CRED"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("admin (admin)", p.stdout)
        # ... and <repo root>/var/ics/admin.cred, the root found from the
        # script's own location, whatever the working directory
        repo = os.path.join(self.tmp.name, "repo")
        os.makedirs(os.path.join(repo, "clients", "cli"))
        os.makedirs(os.path.join(repo, "clients", "python"))
        os.symlink(str(Path(CLI).resolve().parents[1] / "python" / "icsclient"),
                   os.path.join(repo, "clients", "python", "icsclient"))
        with open(CLI) as src, open(os.path.join(repo, "clients", "cli", "ics"), "w") as dst:
            dst.write(src.read())
        os.makedirs(os.path.join(repo, "var", "ics"))
        os.rename(os.path.join(self.tmp.name, "var", "ics", "admin.cred"),
                  os.path.join(repo, "var", "ics", "admin.cred"))
        p = subprocess.run([sys.executable, os.path.join(repo, "clients", "cli", "ics"), "whoami"],
                           cwd=os.path.join(self.tmp.name, "var"), capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "ICS_CRED"})
        self.assertEqual(p.returncode, 0, p.stderr)
        os.rename(os.path.join(repo, "var", "ics", "admin.cred"), self.cred)

        self.assertEqual(self.cli("map", "dev1", "https://a/x", "uti-1")[0], 0)
        rc, out, _ = self.cli("--json", "inquire", "device", "dev1")
        self.assertEqual(json.loads(out), [{"uri": "https://a/x", "uti": "uti-1", "expires_at": 0}])
        rc, out, _ = self.cli("inquire", "device", "dev1")
        self.assertIn("https://a/x", out)
        self.assertIn("never", out)
        self.assertEqual(self.cli("inquire", "binding", "https://a/x", "uti-1")[1].strip(), "dev1")
        rc, out, err = self.cli("inquire", "device", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("NOT_FOUND", err)
        self.assertEqual(self.cli("map", "dev2", "https://a/x", "uti-1")[0], 1)  # EXISTS
        self.assertEqual(self.cli("demap", "row", "dev1", "https://a/x", "uti-1")[0], 0)
        self.cli("map", "dev1", "https://a/x", "uti-1")
        self.cli("map", "dev1", "https://a/y", "uti-2")
        self.assertEqual(json.loads(self.cli("--json", "demap", "device", "dev1")[1]), {"removed": 2})
        self.cli("map", "dev1", "https://a/x", "uti-1")
        self.assertEqual(self.cli("demap", "binding", "https://a/x", "uti-1")[0], 0)
        self.cli("map", "dev1", "https://a/x", "uti-1")
        self.assertEqual(json.loads(self.cli("--json", "demap", "service", "https://a/x")[1]), {"removed": 1})
        self.cli("map", "dev1", "https://a/x", "uti-1")
        rc, out, _ = self.cli("--json", "history", "dev1")
        self.assertEqual(json.loads(out)[0]["event"], "map")
        self.assertEqual(self.cli("--json", "stats")[0], 0)
        self.assertIn("lsn", json.loads(self.cli("--json", "snapshot")[1]))
        kb = os.path.join(self.tmp.name, "kb")
        rc, out, _ = self.cli("--json", "keys", "issue", "4", "--out", kb)
        self.assertEqual(len(json.loads(out)["keys"]), 4)
        self.assertEqual(self.cli("keys", "validate", kb)[1].strip(), "valid")
        raw = bytearray(bytes.fromhex(open(kb).read().strip()))
        raw[-1] ^= 1
        self.assertEqual(self.cli("keys", "validate", "-", stdin=raw.hex())[0], 1)
        rc, out, _ = self.cli("prefs", "set", "dev1", "--retention", "60", "--allow", "https://a/",
                              "--window", "mon-fri@08:00-18:00")
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(self.cli("--json", "prefs", "get", "dev1")[1]),
                         {"retention_s": 60, "allow": ["https://a/"], "deny": [],
                          "windows": ["mon,tue,wed,thu,fri@08:00-18:00"]})
        self.assertEqual(self.cli("prefs", "set", "dev1", "--window", "someday@8-9")[0], 2)
        self.assertEqual(self.cli("principal", "set", "maker", "--roles", "iot_sp",
                                  "--secret", "m", "--scopes", "FRG-")[0], 0)
        self.assertEqual(self.cli("principal", "set", "shop", "--roles", "tpsp", "--secret", "s",
                                  "--scopes", "https://shop/")[0], 0)
        ps = json.loads(self.cli("--json", "principal", "list")[1])
        self.assertIn({"name": "maker", "roles": ["iot_sp"], "scopes": ["FRG-"]}, ps)
        self.assertEqual(self.cli("principal", "set", "x", "--roles", "root")[0], 2)
        # the two-phase flow across three CLI processes
        watch = subprocess.Popen([sys.executable, CLI, "--cred", self.cred, "--user", "maker",
                                  "--secret", "m", "--json", "watch", "--events", "pending",
                                  "--count", "1", "--for", "10"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertIn("watching", watch.stderr.readline())  # armed before the request
        rc, out, _ = self.cli("--user", "shop", "--secret", "s", "map-request", "FRG-7",
                              "https://shop/o", "uti-7")
        self.assertEqual(rc, 0)
        rid = out.strip()
        wout, _ = watch.communicate(timeout=30)
        self.assertEqual(json.loads(wout)["request_id"], rid)
        self.assertEqual(self.cli("--user", "maker", "--secret", "m", "confirm", rid, "fridge-7")[0], 0)
        self.assertEqual(self.cli("inquire", "binding", "https://shop/o", "uti-7")[1].strip(), "fridge-7")
        self.assertEqual(self.cli("--user", "maker", "--secret", "m", "reject", rid)[0], 1)
        self.assertEqual(self.cli("confirm", "zz", "d")[0], 2)
        self.assertEqual(self.cli("principal", "del", "shop")[0], 0)
        # exit codes: usage 2, connection 3
        self.assertEqual(self.cli("frobnicate")[0], 2)
        self.assertEqual(run_cli("--port", "1", "--user", "a", "--secret", "b", "whoami")[0], 3)
        self.assertEqual(self.cli("--secret", "wrong", "whoami")[0], 1)
        # TLS flags that would silently fall back to plaintext, or name no file.
        self.assertEqual(run_cli("--port", "1", "--tls-cert", __file__, "whoami")[0], 2)
        self.assertEqual(run_cli("--port", "1", "--tls-ca", "/nonexistent.pem", "whoami")[0], 2)
        rc, out, err = run_cli("--json", "--port", "1", "--user", "a", "--secret", "b", "whoami")
        self.assertEqual((rc, json.loads(out)["error"]), (3, "CONNECTION"))
        # An authentication failure says which identity was refused.
        rc, out, err = self.cli("--secret", "wrong", "whoami")
        self.assertIn("AUTH_ERROR", err)
        self.assertIn("(the secret given with --secret)", err)

    def test_principal_import(self) -> None:
        f = os.path.join(self.tmp.name, "principals.txt")
        with open(f, "w") as fh:
            fh.write("# operators\n"
                     "ops roles=admin secret=o\n"
                     "maker roles=iot_sp secret=m scopes=FRG-,FRX-\n"
                     "bad1 roles=root\n"
                     "\n"
                     "shop roles=tpsp fingerprint=" + "ab" * 32 + " scopes=https://shop/\n"
                     "bad2 secret=x\n"
                     "bad3 roles=tpsp colour=red\n"
                     # the rules of icsd --principals (net/principal.c), line for line:
                     "bad4 roles=tpsp scopes=https://a/ # inline comments are not comments\n"
                     "bad5 roles=tpsp scopes=https://a/,,https://b/\n"
                     "bad6 roles=iot_sp secret=\n"
                     "maker roles=iot_sp secret=m2\n")
        rc, out, err = self.cli("principal", "import", f)
        self.assertEqual(rc, 1)
        self.assertIn(f"{f}:4: unknown role 'root'", err)
        self.assertIn(f"{f}:7: roles= is required", err)
        self.assertIn(f"{f}:8: unknown field 'colour'", err)
        self.assertIn(f"{f}:9: expected key=value, got '#'", err)
        self.assertIn(f"{f}:10: empty scope prefix", err)
        self.assertIn(f"{f}:11: empty secret", err)
        self.assertIn(f"{f}:12: principal named twice: 'maker' (line 3)", err)
        self.assertIn("imported 3 principal(s), 7 error(s)", out)
        names = {p["name"]: p for p in json.loads(self.cli("--json", "principal", "list")[1])}
        self.assertEqual(names["maker"]["scopes"], ["FRG-", "FRX-"])
        self.assertEqual(names["shop"]["roles"], ["tpsp"])
        self.assertNotIn("bad1", names)

    def test_ndjson_import_export_100k(self) -> None:
        src = os.path.join(self.tmp.name, "rows.ndjson")
        bad_lines = {}
        with open(src, "w") as fh:
            for i in range(1, 100001):
                if i % 10007 == 0:
                    fh.write("{not json\n")
                    bad_lines[i] = "not JSON"
                elif i % 10009 == 0:
                    fh.write(json.dumps({"device": f"d{i}", "uri": "https://s/"}) + "\n")
                    bad_lines[i] = "missing or empty string field 'uti'"
                elif i % 10037 == 0:  # a binding already owned by another device
                    fh.write(json.dumps({"device": f"other{i}", "uri": "https://s/1", "uti": "u1"}) + "\n")
                    bad_lines[i] = "EXISTS"
                else:
                    fh.write(json.dumps({"device": f"d{i % 50000}", "uri": f"https://s/{i % 7}",
                                         "uti": f"u{i}"}) + "\n")
        t0 = time.monotonic()
        # a separate process: the fake server needs this one's GIL
        rc, out, err = run_cli_process("--json", "import", src, cred=self.cred)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1)
        res = json.loads(out)
        self.assertEqual(res, {"imported": 100000 - len(bad_lines), "errors": len(bad_lines), "lines": 100000})
        errs = err.strip().splitlines()
        self.assertEqual(len(errs), len(bad_lines))
        for line, (no, why) in zip(errs, sorted(bad_lines.items())):
            self.assertTrue(line.startswith(f"{src}:{no}: "), line)
            self.assertIn(why, line)
        print(f"\n  100,000-line import against the Python fake: {took:.1f} s")
        # export, then import into a fresh server: identical rows
        dump = os.path.join(self.tmp.name, "dump.ndjson")
        self.assertEqual(run_cli_process("export", dump, cred=self.cred)[0], 0)
        fresh = FakeServer()
        try:
            cred2 = os.path.join(self.tmp.name, "fresh.cred")
            with open(cred2, "w") as fh:
                fh.write(f"port={fresh.port}\nprincipal=admin\nsecret={ADMIN_SECRET}\n")
            self.assertEqual(run_cli_process("import", dump, cred=cred2)[0], 0)
            dump2 = os.path.join(self.tmp.name, "dump2.ndjson")
            self.assertEqual(run_cli_process("export", dump2, cred=cred2)[0], 0)
        finally:
            fresh.stop()
        a, b = sorted(open(dump).read().splitlines()), sorted(open(dump2).read().splitlines())
        self.assertEqual(len(a), 100000 - len(bad_lines))
        self.assertEqual(a, b)


if __name__ == "__main__":
    unittest.main()
