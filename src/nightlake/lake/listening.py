"""Which local addresses a port listens on, read from the kernel's socket tables (/proc/net/tcp and
tcp6): `lake status` says where a server is bound, not where it was asked to be. XRootD 5.5.3, for
one, cannot be told an address and binds every interface. The same tables tell how many accepted
connections wait for their server to take them (`accept_queues`): the storage watchdog's sign of a
server that has stopped accepting."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # TCP_LISTEN in the tables' `st` column


def _listening():
    """(port, hex address, connections waiting in its accept queue) of every listening socket, in one
    read of each table: for a listening socket the kernel's `rx_queue` column is the accept queue's length."""
    for table in TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this kernel
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == LISTEN:
                address, _, hex_port = fields[1].partition(":")
                yield int(hex_port, 16), address, int(fields[4].partition(":")[2], 16)


def bound(port: int) -> list[str]:
    """Every address listening on `port`, as `127.0.0.1:5432` or `[::]:1094` (all interfaces)."""
    return sorted({_address(address, port) for listening_port, address, _ in _listening() if listening_port == port})


def accept_queues() -> dict[int, int]:
    """{port: connections the kernel has accepted on it that its server has not taken yet} for every
    port something listens on (a port missing here has no listener)."""
    queues: dict[int, int] = {}
    for port, _, queued in _listening():
        queues[port] = queues.get(port, 0) + queued
    return queues


def _address(hex_address: str, port: int) -> str:
    """The kernel prints an address as 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
