"""What every example shares: connection arguments, the admin credential,
and the two-phase mapping flow of Y.4462 clause 10 (ICS-1 / ICS-2) between
an IoT service provider (iot_sp) and a third-party service provider (tpsp)."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import icsclient as ic  # noqa: E402


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", help="icsd host (default: from the credential, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="icsd port (default: from the credential, else 11311)")
    p.add_argument("--cred", help="admin credential file (default: as the ics CLI finds it)")
    return p.parse_args()


def admin_client(a: argparse.Namespace) -> ic.Client:
    cred = ic.find_credential(a.cred, str(Path(__file__).resolve().parents[2]))
    if cred is None:
        sys.exit("no admin credential: start icsd (scripts/run.sh) or pass --cred FILE")
    return ic.Client(a.host or cred.host, a.port or cred.port, user=cred.principal,
                     secret=cred.secret)


def make_provider(admin: ic.Client, name: str, role: str, scopes: list) -> ic.Client:
    """Creates (or replaces) a provider principal with a fresh secret, as
    the operator would, and connects as it."""
    secret = secrets.token_hex(16)
    admin.principal_set(name, role, secret, scopes=scopes)
    print(f"  admin: principal {name} ({role}, scopes {', '.join(scopes)})")
    return ic.Client(admin.host, admin.port, user=name, secret=secret)


def two_phase_map(iot_sp: ic.Client, tpsp: ic.Client, serial: str, device_id: str, uri: str,
                  uti: str, consent: bool = True) -> str:
    """The tpsp asks for (serial -> uri, uti); the IoT SP that owns the
    serial's prefix sees MAP_PENDING, asks its user, and confirms with the
    device ID (or rejects); the tpsp learns the outcome from MAP_RESULT."""
    iot_sp.watch(ic.W_MAP_PENDING | ic.W_DEMAPPED)
    tpsp.watch(ic.W_MAP_RESULT)
    rid = tpsp.map_request(serial, uri, uti)
    print(f"  {tpsp.user}: MAP_REQUEST serial {serial} -> request {rid.hex()}")
    ev = iot_sp.poll_event(10)
    if ev is None or ev.name != "MAP_PENDING" or ev.key != rid:
        raise SystemExit(f"expected MAP_PENDING for {rid.hex()}, got {ev}")
    print(f"  {iot_sp.user}: MAP_PENDING from the service for {ev.serial} ({ev.uri})")
    if consent:
        iot_sp.map_confirm(rid, device_id)
        print(f"  {iot_sp.user}: user consented; MAP_CONFIRM as device {device_id}")
    else:
        iot_sp.map_reject(rid, "the user declined")
        print(f"  {iot_sp.user}: user declined; MAP_REJECT")
    res = tpsp.poll_event(10)
    if res is None or res.name != "MAP_RESULT" or res.key != rid:
        raise SystemExit(f"expected MAP_RESULT for {rid.hex()}, got {res}")
    if res.status == 0:
        print(f"  {tpsp.user}: MAP_RESULT ok, device {res.device}")
        return res.device
    print(f"  {tpsp.user}: MAP_RESULT refused ({res.reason})")
    return ""


def suffix() -> str:
    """Keeps names unique, so an example runs again on the same server."""
    return os.environ.get("ICS_EXAMPLE_SUFFIX") or secrets.token_hex(3)
