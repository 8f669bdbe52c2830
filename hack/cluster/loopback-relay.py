#!/usr/bin/env python3
"""Relays the root namespace's loopback services into a pod network namespace.

    loopback-relay.py NETNS PORT [PORT...]

For each PORT, listens on 127.0.0.1:PORT inside network namespace NETNS (hack/cluster/netns)
and forwards every connection to 127.0.0.1:PORT of the namespace this process started in.
The e2e data-plane stand-in runs one for the loopback services a pod's env names (the Kafka
broker of `spec.impressions`, the S3 stand-in of a model store), which a pod in its own network
namespace could not reach otherwise; Kafka's advertised 127.0.0.1:PORT then works unchanged.
Prints "ready" once every port listens. Stops on SIGTERM.
"""
import asyncio
import ctypes
import os
import signal
import socket
import sys

CLONE_NEWNET = 0x40000000


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_inside(netns, ports):
    """Listening sockets made inside NETNS; the thread returns to its own namespace after."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    socks = []
    try:
        setns(target)
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            s.setblocking(False)
            socks.append((port, s))
    finally:
        setns(own)
        os.close(own)
        os.close(target)
    return socks


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the peer may be gone already
            pass


def handler(port):
    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return handle


async def main(netns, ports):
    socks = listen_inside(netns, ports)
    servers = [await asyncio.start_server(handler(p), sock=s) for p, s in socks]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: loopback-relay.py NETNS PORT [PORT...]")
    try:
        PORTS = [int(p) for p in sys.argv[2:]]
    except ValueError:
        sys.exit(f"loopback-relay.py: ports must be numbers: {sys.argv[2:]}")
    if not all(0 < p < 65536 for p in PORTS):
        sys.exit(f"loopback-relay.py: ports must be in 1..65535: {PORTS}")
    asyncio.run(main(sys.argv[1], PORTS))
