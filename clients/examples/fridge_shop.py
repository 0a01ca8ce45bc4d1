#!/usr/bin/env python3
"""Y.4462 use case: a smart refrigerator orders from an e-commerce service.

The fridge maker (iot_sp, owns serials "FRG-") and the grocery shop (tpsp,
owns "https://shop.example/") meet through ICS: the shop asks to bind the
fridge its customer named by serial, the maker confirms with the device ID
after the user agreed, and from then on the shop resolves the order's
binding to the fridge without ever learning anything else about it.
"""
import _common as c

a = c.parse_args(__doc__.splitlines()[0])
s = c.suffix()
with c.admin_client(a) as admin:
    maker = c.make_provider(admin, f"fridge-maker-{s}", "iot_sp", [f"FRG-{s}-"])
    shop = c.make_provider(admin, f"grocer-{s}", "tpsp", [f"https://shop-{s}.example/"])
    uri, uti = f"https://shop-{s}.example/orders", f"consent-{s}-001"
    dev = c.two_phase_map(maker, shop, f"FRG-{s}-000123", f"fridge-{s}-a1", uri, uti)
    assert dev == f"fridge-{s}-a1"
    # The fridge runs low on milk and places an order under its binding.
    print(f"  fridge: milk is low, ordering via {uri} (UTI {uti})")
    assert shop.inquire_binding(uri, uti) == dev
    print(f"  {shop.user}: order for UTI {uti} belongs to device {dev}")
    rows = shop.inquire_device(dev)
    print(f"  {shop.user}: sees only its own rows: {[r.uri for r in rows]}")
    hist = maker.history(dev)
    print(f"  {maker.user}: history of {dev}: {[(h.event, h.principal) for h in hist]}")
    maker.close()
    shop.close()
print("fridge_shop: ok")
