"""Which local addresses a port listens on, read from the kernel's socket tables (/proc/net/tcp and
tcp6): `lake status` says where a server is bound, not where it was asked to be. XRootD 5.5.3, for
one, cannot be told an address and binds every interface."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # TCP_LISTEN in the tables' `st` column


def bound(port: int) -> list[str]:
    """Every address listening on `port`, as `127.0.0.1:5432` or `[::]:1094` (all interfaces)."""
    found = set()
    for table in TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:  # no IPv6 in this kernel
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == LISTEN and int(hex_port, 16) == port:
                found.add(_address(address, port))
    return sorted(found)


def _address(hex_address: str, port: int) -> str:
    """The kernel prints an address as 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
