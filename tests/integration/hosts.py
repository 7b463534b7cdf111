"""Test hosts on one machine: Linux network namespaces joined by veth pairs to a bridge, each with its own
address, and the test's own namespace on the same bridge so it can reach them all.

The addresses are 198.18.77.0/24, from the block reserved for network benchmark tests (RFC 2544): it belongs to
no real network, and its traffic never leaves these namespaces (the hub namespace that holds the bridge routes
nowhere). `cut(host)` takes the host's switch port down, as a pulled cable would: the host's own interface stays
up, its packets go nowhere, and its TCP connections hang rather than fail. Everything is deleted on exit, also
when a test fails. Needs root and iproute2 (`ip netns`); `unavailable()` says why not, for a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

SUBNET = "198.18.77"


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"aromatrack-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"`ip netns add` refused: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str
    port_on_switch: str  # the veth end on the bridge, in the hub namespace


class Hosts:
    """`with Hosts(prefix, ["broker", "w1"]) as hosts:` makes one namespace per name with the address
    198.18.77.<2..>, plus the hub; the test's own namespace gets 198.18.77.1."""

    def __init__(self, prefix: str, names: list[str]):
        self.prefix = prefix
        self.names = names
        self.hub = f"{prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        self._local_link: str | None = None

    def __enter__(self) -> "Hosts":
        try:
            self._make()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _make(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self._add_netns(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        # The test's own end: stays in this namespace.
        self._local_link = f"mh{tag}t"
        self._plug(f"{self._local_link}", f"mh{tag}ts", None, f"{SUBNET}.1")
        for index, name in enumerate(self.names, start=2):
            netns = f"{self.prefix}-{name}"
            self._add_netns(netns)
            port = f"mh{tag}s{index}"
            self._plug(f"mh{tag}h{index}", port, netns, f"{SUBNET}.{index}")
            self.hosts[name] = Host(name, netns, f"{SUBNET}.{index}", port)

    def _add_netns(self, netns: str) -> None:
        ip("netns", "add", netns)
        self._made.append(netns)
        ip("-n", netns, "link", "set", "lo", "up")

    def _plug(self, link: str, port: str, netns: str | None, address: str) -> None:
        """A veth pair: `link` in `netns` (None: here) with `address`, `port` on the hub's bridge."""
        ip("link", "add", link, "type", "veth", "peer", "name", port)
        ip("link", "set", port, "netns", self.hub)
        ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        where = ["-n", netns] if netns else []
        if netns:
            ip("link", "set", link, "netns", netns)
        ip(*where, "addr", "add", f"{address}/24", "dev", link)
        ip(*where, "link", "set", link, "up")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, name: str) -> None:
        ip("-n", self.hub, "link", "set", self.hosts[name].port_on_switch, "down")

    def reconnect(self, name: str) -> None:
        ip("-n", self.hub, "link", "set", self.hosts[name].port_on_switch, "up")

    def __exit__(self, *exc_info: object) -> None:
        """Delete every namespace made (their veth ends go with them, and so does the local end's pair)."""
        for netns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        self._made.clear()
        if self._local_link:
            subprocess.run(["ip", "link", "del", self._local_link], capture_output=True, timeout=30)
