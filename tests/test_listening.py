"""`lake status` reads where a port listens from the kernel's tables, words in host byte order."""

from __future__ import annotations

import ipaddress
import socket
import sys

import pytest

from nightlake.lake import listening


@pytest.mark.skipif(sys.byteorder != "little", reason="the kernel's table is in host byte order")
@pytest.mark.parametrize(("hex_address", "shown"), [
    ("0100007F", "127.0.0.1:1094"),
    ("00000000", "0.0.0.0:1094"),
    ("00000000000000000000000000000000", "[::]:1094"),
    ("0000000000000000FFFF00000100007F", f"[{ipaddress.ip_address('::ffff:127.0.0.1')}]:1094"),
])
def test_an_address_is_read_as_the_kernel_prints_it(hex_address, shown):
    assert listening._address(hex_address, 1094) == shown


def test_a_socket_bound_to_loopback_is_found_there():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening.bound(port) == [f"127.0.0.1:{port}"]
