#!/usr/bin/python3
"""Prints N (default 1) distinct TCP ports free on 127.0.0.1, one per line,
for servers the tests start and later start again on the same port.

The ports lie below the kernel's ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range) where it leaves room: a port from
inside that range (what binding port 0 gives) can be taken by any outgoing
connection while its server is down, and a client socket holding it, even in
TIME_WAIT, makes the server's bind fail with EADDRINUSE. Falls back to port 0
where the range leaves no room. tests/lib/free_port.h is the C twin."""
import random
import socket
import sys

LOW = 10000  # below: well-known and registered services


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def any_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if n < 1:
        sys.exit("free-port: N must be at least 1")
    top = ephemeral_low()
    ports = []
    for _ in range(200 * n):
        if len(ports) == n or top - LOW < 1000:
            break
        p = random.randrange(LOW, top)
        if p not in ports and bindable(p):
            ports.append(p)
    while len(ports) < n:
        p = any_port()
        if p not in ports:
            ports.append(p)
    print("\n".join(map(str, ports)))


main()
