#!/usr/bin/env python3
"""Y.4462 use case: a smart lock bound to a smart-home service.

The lock vendor (iot_sp, serials "LCK-") binds a lock to the smart-home
platform (tpsp) through the two-phase flow; the vendor restricts what the
service may see with preferences (time windows, deny list); when the home
owner revokes the platform's consent, the platform removes the binding
(DEMAP_BINDING) and the vendor learns it from a DEMAPPED event.
"""
import _common as c
import icsclient as ic

a = c.parse_args(__doc__.splitlines()[0])
s = c.suffix()
with c.admin_client(a) as admin:
    vendor = c.make_provider(admin, f"lock-vendor-{s}", "iot_sp", [f"LCK-{s}-"])
    home = c.make_provider(admin, f"smarthome-{s}", "tpsp", [f"https://home-{s}.example/"])
    uri, uti = f"https://home-{s}.example/locks", f"home-{s}-front-door"
    dev = c.two_phase_map(vendor, home, f"LCK-{s}-42", f"lock-{s}-front", uri, uti)
    assert dev
    prefs = ic.Prefs(retention_s=0, deny=["https://ads.example/"],
                     windows=[ic.Window(0x7F, 0, 1440)])
    vendor.prefs_set(dev, prefs)
    print(f"  {vendor.user}: preferences of {dev}: deny ads, any day")
    assert vendor.prefs_get(dev) == prefs
    print(f"  {home.user}: unlock command for {home.inquire_binding(uri, uti)}")
    home.demap_binding(uri, uti)
    print(f"  {home.user}: the owner revoked consent; DEMAP_BINDING")
    ev = vendor.poll_event(10)
    assert ev is not None and ev.name == "DEMAPPED" and ev.device == dev, ev
    print(f"  {vendor.user}: DEMAPPED {ev.device} from {ev.uri}")
    try:
        home.inquire_binding(uri, uti)
        raise SystemExit("binding still there")
    except ic.NotFound:
        print(f"  {home.user}: the binding is gone (NOT_FOUND)")
    vendor.close()
    home.close()
print("lock_smarthome: ok")
