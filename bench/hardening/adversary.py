#!/usr/bin/env python3
"""Hostile and measuring HTTP clients for bench/hardening.sh (loopback only, bounded).

Each subcommand prints one line `RESULT key=value ...` and exits. Standard library only.

  hold      open N silent, trickling or idle keep-alive connections and keep them S seconds
  probe     good client: R requests on fresh connections, success rate and latency
  forms     every method, malformed lines and heads, half-closed requests: status counts
  openloop  open-loop /recommend at a fixed rate plus a /healthz prober: 503 share, latencies
  steady    closed-loop GETs for S seconds, counting non-200 answers and errors
"""

import argparse
import asyncio
import random
import resource
import socket
import sys
import time


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


async def read_response(reader, deadline):
    """One response: (status, headers dict, body) or raises."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), deadline) if length else b""
    return status, headers, body


async def hold_reconnecting(args):
    """Keeps N silent connections open for S seconds, reopening each one the server closes."""
    host, port = args.addr.split(":")
    t_end = time.perf_counter() + args.seconds
    opened = 0
    failed = 0

    async def slot(k):
        nonlocal opened, failed
        # Staggered first connects (2 ms apart) so the listen backlog never overflows and the
        # server really has to take every one of them.
        await asyncio.sleep(k * 0.002)
        while time.perf_counter() < t_end:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            except Exception:
                failed += 1
                await asyncio.sleep(0.05)
                continue
            opened += 1
            try:
                await asyncio.wait_for(r.read(1), max(0.01, t_end - time.perf_counter()))
            except Exception:
                pass
            w.close()

    async def announce():
        # Tells the driver when every slot has connected once (or after 20 s).
        deadline = time.perf_counter() + 20
        while opened < args.n and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(f"{opened}\n")

    await asyncio.gather(announce(), *(slot(k) for k in range(args.n)))
    print(f"RESULT mode=silent-reconnecting slots={args.n} opened={opened} connect_failed={failed}")


async def hold(args):
    if args.reconnect:
        return await hold_reconnecting(args)
    host, port = args.addr.split(":")
    conns = []
    failed = 0
    for i in range(args.n):
        try:
            r, w = await asyncio.open_connection(host, int(port))
            conns.append((r, w))
        except OSError:
            failed += 1
        if args.mode == "idle" and conns:
            r, w = conns[-1]
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                await read_response(r, 5)
            except Exception:
                pass
    print(f"HOLD opened={len(conns)} failed={failed} mode={args.mode}", file=sys.stderr, flush=True)

    async def trickle(w):
        line = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 10000
        for b in line:
            try:
                w.write(bytes([b]))
                await w.drain()
            except Exception:
                return
            await asyncio.sleep(3)

    tasks = []
    if args.mode == "trickle":
        tasks = [asyncio.create_task(trickle(w)) for _, w in conns]
    await asyncio.sleep(args.seconds)
    # How many of ours the server still holds: a closed connection reads EOF at once.
    alive = 0
    for r, w in conns:
        try:
            data = await asyncio.wait_for(r.read(1), 0.01)
            if data:
                alive += 1
        except asyncio.TimeoutError:
            alive += 1
        except Exception:
            pass
    for t in tasks:
        t.cancel()
    for _, w in conns:
        w.close()
    print(f"RESULT mode={args.mode} opened={len(conns)} connect_failed={failed} still_open_after={args.seconds}s alive={alive}")


async def one_request(host, port, path, timeout, close=True):
    started = time.perf_counter()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        conn = "Connection: close\r\n" if close else ""
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{conn}\r\n".encode())
        status, headers, body = await read_response(r, timeout)
        return status, time.perf_counter() - started
    finally:
        w.close()


async def probe(args):
    host, port = args.addr.split(":")
    ok = 0
    lat = []
    errors = {}
    t_end = time.perf_counter() + args.budget
    sent = 0
    for i in range(args.requests):
        if time.perf_counter() > t_end:
            break
        sent += 1
        path = args.paths[i % len(args.paths)]
        try:
            status, took = await one_request(host, int(port), path, args.timeout)
            if status == 200:
                ok += 1
                lat.append(took)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        except Exception as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        await asyncio.sleep(args.interval)
    err = ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "none"
    print(f"RESULT requests={sent} ok={ok} success_pct={100.0 * ok / max(1, sent):.1f} "
          f"p50_ms={pct(lat, 50) * 1e3:.2f} p99_ms={pct(lat, 99) * 1e3:.2f} errors={err}")


def raw_exchange(addr, raw, half_close=False, timeout=3.0):
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        try:
            s.sendall(raw)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def status_of(data):
    try:
        return int(data.split(b" ", 2)[1])
    except Exception:
        return 0


def forms(args):
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
    counts = {}
    versioned = 0
    total = 0

    def record(data):
        nonlocal versioned, total
        total += 1
        code = status_of(data)
        counts[code] = counts.get(code, 0) + 1
        if b"\r\nx-model-version:" in data.split(b"\r\n\r\n", 1)[0].lower():
            versioned += 1

    for m in methods:
        for path in ["/healthz", "/recommend/1", "/nope"]:
            record(raw_exchange(args.addr, f"{m} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()))
    for target in ["example.com:443", "127.0.0.1:22"]:
        record(raw_exchange(args.addr, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()))
    record(raw_exchange(args.addr, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    malformed = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /he\x01lthz HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
    ]
    for raw in malformed:
        record(raw_exchange(args.addr, raw))
    half_ok = 0
    for i in range(args.half_close):
        data = raw_exchange(args.addr, f"GET /recommend/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), half_close=True)
        half_ok += status_of(data) == 200
    codes = ",".join(f"{k}:{v}" for k, v in sorted(counts.items()))
    print(f"RESULT requests={total} statuses={codes} no_answer={counts.get(0, 0)} versioned={versioned} "
          f"half_close_answered={half_ok}/{args.half_close}")


async def openloop(args):
    host, port = args.addr.split(":")
    port = int(port)
    rate = args.rate
    total = int(rate * args.seconds)
    start = time.perf_counter() + 0.2
    results = []  # (status, latency from the scheduled time)
    next_i = 0
    lock = asyncio.Lock()

    async def worker():
        nonlocal next_i
        r = w = None
        while True:
            async with lock:
                i = next_i
                next_i += 1
            if i >= total:
                break
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if w is None:
                    r, w = await asyncio.open_connection(host, port)
                user = random.randint(1, args.users)
                w.write(f"GET /recommend/{user} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                status, headers, _ = await read_response(r, 10)
                results.append((status, time.perf_counter() - at, headers.get("retry-after")))
                if headers.get("connection") == "close":
                    w.close()
                    r = w = None
            except Exception:
                results.append((0, time.perf_counter() - at, None))
                if w is not None:
                    w.close()
                r = w = None
        if w is not None:
            w.close()

    probes = []

    async def prober():
        t_end = start + args.seconds
        while time.perf_counter() < t_end:
            await asyncio.sleep(0.05)
            try:
                status, took = await one_request(host, port, "/healthz", 10)
                probes.append((status, took))
            except Exception:
                probes.append((0, 10.0))

    await asyncio.gather(*(worker() for _ in range(args.workers)), prober())
    ok = [l for s, l, _ in results if s == 200]
    shed = [l for s, l, _ in results if s == 503]
    shed_retry = sum(1 for s, _, ra in results if s == 503 and ra)
    other = sum(1 for s, _, _ in results if s not in (200, 503))
    hz = [l for s, l in probes if s == 200]
    achieved = len(results) / args.seconds
    print(f"RESULT offered_rps={rate} sent={len(results)} achieved_rps={achieved:.0f} ok={len(ok)} shed={len(shed)} "
          f"shed_pct={100.0 * len(shed) / max(1, len(results)):.1f} shed_with_retry_after={shed_retry} other={other} "
          f"ok_p50_ms={pct(ok, 50) * 1e3:.2f} ok_p99_ms={pct(ok, 99) * 1e3:.2f} "
          f"shed_p50_ms={pct(shed, 50) * 1e3:.2f} shed_p99_ms={pct(shed, 99) * 1e3:.2f} "
          f"healthz={len(hz)}/{len(probes)} healthz_p50_ms={pct(hz, 50) * 1e3:.2f} healthz_p99_ms={pct(hz, 99) * 1e3:.2f}")


async def steady(args):
    host, port = args.addr.split(":")
    port = int(port)
    t_end = time.perf_counter() + args.seconds
    counts = {}

    async def send(r, w):
        w.write(f"GET /recommend/{random.randint(1, args.users)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await read_response(r, 10)

    async def worker(k):
        r = w = None
        while time.perf_counter() < t_end:
            try:
                reused = w is not None
                if w is None:
                    r, w = await asyncio.open_connection(host, port)
                try:
                    status, headers, _ = await send(r, w)
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as e:
                    # A keep-alive connection the peer closed before answering anything: retry
                    # once on a new connection, as HTTP clients do for idempotent requests
                    # (RFC 9112 section 9.3.1). Only a reused connection qualifies.
                    if not reused or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                        raise
                    w.close()
                    counts["retried-stale-keepalive"] = counts.get("retried-stale-keepalive", 0) + 1
                    r, w = await asyncio.open_connection(host, port)
                    status, headers, _ = await send(r, w)
                counts[status] = counts.get(status, 0) + 1
                if headers.get("connection") == "close":
                    w.close()
                    r = w = None
            except Exception as e:
                key = type(e).__name__
                counts[key] = counts.get(key, 0) + 1
                if w is not None:
                    w.close()
                r = w = None
                await asyncio.sleep(0.01)
            await asyncio.sleep(args.pause)
        if w is not None:
            w.close()

    await asyncio.gather(*(worker(k) for k in range(args.workers)))
    retried = counts.get("retried-stale-keepalive", 0)
    total = sum(counts.values()) - retried
    lost = total - counts.get(200, 0)
    detail = ",".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=str))
    print(f"RESULT requests={total} ok={counts.get(200, 0)} lost={lost} detail={detail}")


def main():
    raise_fd_limit()
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("addr")
    h.add_argument("--n", type=int, default=100)
    h.add_argument("--mode", choices=["silent", "trickle", "idle"], default="silent")
    h.add_argument("--seconds", type=float, default=15)
    h.add_argument("--reconnect", action="store_true")
    h.add_argument("--ready-file")
    pr = sub.add_parser("probe")
    pr.add_argument("addr")
    pr.add_argument("--requests", type=int, default=200)
    pr.add_argument("--interval", type=float, default=0.01)
    pr.add_argument("--timeout", type=float, default=2)
    pr.add_argument("--budget", type=float, default=30, help="stop sending after this many seconds")
    pr.add_argument("--paths", nargs="+", default=["/healthz", "/readyz", "/recommend/1"])
    f = sub.add_parser("forms")
    f.add_argument("addr")
    f.add_argument("--half-close", type=int, default=200)
    o = sub.add_parser("openloop")
    o.add_argument("addr")
    o.add_argument("--rate", type=float, required=True)
    o.add_argument("--seconds", type=float, default=10)
    o.add_argument("--workers", type=int, default=300)
    o.add_argument("--users", type=int, default=600)
    s = sub.add_parser("steady")
    s.add_argument("addr")
    s.add_argument("--seconds", type=float, default=20)
    s.add_argument("--workers", type=int, default=8)
    s.add_argument("--pause", type=float, default=0.002)
    s.add_argument("--users", type=int, default=600)
    args = p.parse_args()
    if args.cmd == "forms":
        forms(args)
    else:
        asyncio.run({"hold": hold, "probe": probe, "openloop": openloop, "steady": steady}[args.cmd](args))


if __name__ == "__main__":
    main()
