#!/usr/bin/env python3
"""A seeded synthetic event log in the original line format, for bench/online.sh and
bench/evaluate.sh: sessions of one 20-item impression (a recommendation-request line),
0-12 per-minute watch lines of one movie (in the list half the time) and a rating 30 % of
the time, over USERS users, sessions 2 s apart. Lines are written session by session, so
event times are not sorted (a session's watch lines run up to 15 min ahead).

Usage: gen_log.py LINES USERS OUT [GAP_SECONDS [ORDER]]
  GAP_SECONDS (default 2): event time between session starts; ORDER `random` (default: each
  session's user drawn at random) or `cycle` (every user in turn, in a fixed scrambled order:
  with LINES large enough and a small gap, all USERS are active within one attribution window).
"""
import random, sys, datetime
lines, users, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
gap = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
order = sys.argv[5] if len(sys.argv) > 5 else "random"
if order not in ("random", "cycle"):
    sys.exit(f"gen_log.py: ORDER must be random or cycle, not {order!r}")
# A step coprime with USERS visits every user once per cycle.
step = next(s for s in range(999_983, 10**9) if __import__("math").gcd(s, users) == 1)
rng = random.Random(7)
t0 = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
written = 0
session = 0
with open(path, "w") as out:
    while written < lines:
        user = rng.randrange(1, users + 1) if order == "random" else (session * step) % users + 1
        now = t0 + datetime.timedelta(seconds=gap * session)
        stamp = lambda dt: dt.strftime("%Y-%m-%dT%H:%M:%S")
        items = rng.sample(range(1, 5001), 20)
        host = "canary:8082" if session % 5 == 0 else "stable:8082"
        out.write(f"{stamp(now)},{user},recommendation request {host}, status 200, result: "
                  f"{', '.join(map(str, items))}, 12 ms\n")
        written += 1
        movie = rng.choice(items) if rng.random() < 0.5 else rng.randrange(1, 5001)
        for minute in range(1, rng.randrange(0, 13) + 1):
            out.write(f"{stamp(now + datetime.timedelta(seconds=60 * minute))},{user},"
                      f"GET /data/m/{movie}/{minute}.mpg\n")
            written += 1
        if rng.random() < 0.3:
            out.write(f"{stamp(now + datetime.timedelta(seconds=900))},{user},"
                      f"GET /rate/{movie}={rng.randrange(1, 6)}\n")
            written += 1
        session += 1
