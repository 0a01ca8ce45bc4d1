#!/usr/bin/env python3
"""Y.4462 use case: a smart speaker and a music streaming service.

The speaker maker (iot_sp, serials "SPK-") binds one speaker to a music
service (tpsp). A second service's request is declined by the user
(MAP_REJECT); later the user unregisters the speaker and the maker removes
every row of it at once (DEMAP_DEVICE).
"""
import _common as c
import icsclient as ic

a = c.parse_args(__doc__.splitlines()[0])
s = c.suffix()
with c.admin_client(a) as admin:
    maker = c.make_provider(admin, f"speaker-maker-{s}", "iot_sp", [f"SPK-{s}-"])
    music = c.make_provider(admin, f"music-{s}", "tpsp", [f"https://music-{s}.example/"])
    radio = c.make_provider(admin, f"radio-{s}", "tpsp", [f"https://radio-{s}.example/"])
    serial, dev = f"SPK-{s}-0007", f"speaker-{s}-kitchen"
    got = c.two_phase_map(maker, music, serial, dev, f"https://music-{s}.example/play", f"acct-{s}-1")
    assert got == dev
    assert c.two_phase_map(maker, radio, serial, dev, f"https://radio-{s}.example/live",
                           f"acct-{s}-2", consent=False) == ""
    print(f"  {music.user}: streams to {music.inquire_binding(f'https://music-{s}.example/play', f'acct-{s}-1')}")
    try:
        radio.inquire_device(dev)
        raise SystemExit("radio must not see the speaker")
    except ic.NotFound:
        print(f"  {radio.user}: cannot see the speaker (NOT_FOUND)")
    n = maker.demap_device(dev)
    print(f"  {maker.user}: speaker unregistered; DEMAP_DEVICE removed {n} row(s)")
    assert n == 1
    for p in (maker, music, radio):
        p.close()
print("speaker_music: ok")
