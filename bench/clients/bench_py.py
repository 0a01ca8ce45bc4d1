#!/usr/bin/env python3
"""The Python client's pipelined throughput (Client.pipeline) on the same keys
as ics-loadgen and icsc-bench. Prints ops_per_s=... like them."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import icsclient as ic  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, default=11311)
p.add_argument("--user")
p.add_argument("--secret")
p.add_argument("--depth", type=int, default=64)
p.add_argument("--duration", type=float, default=5)
p.add_argument("--keys", type=int, default=10000)
a = p.parse_args()
c = ic.Client(a.host, a.port, user=a.user, secret=a.secret, timeout=10)
rng, ops, errors = 88172645463325252, 0, 0
mask = (1 << 64) - 1
t0 = time.monotonic()
end = t0 + a.duration
while time.monotonic() < end:
    pl = c.pipeline()
    for _ in range(a.depth):
        rng ^= (rng << 13) & mask
        rng ^= rng >> 7
        rng ^= (rng << 17) & mask
        pl.inquire_device(f"dev-{rng % a.keys:08d}")
    errors += sum(isinstance(r, BaseException) for r in pl.execute())
    ops += a.depth
secs = time.monotonic() - t0
print(f"python ops={ops} errors={errors} secs={secs:.2f} ops_per_s={ops / secs:.0f}")
