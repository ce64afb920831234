"""The address a request comes from when a reverse proxy passes it on.

Behind nginx, Caddy or HAProxy on the daemon's host (README, hardening) every request reaches
the daemon from the proxy's address: the login's lock per address would lock every agent out
after five wrong passwords from anyone, and /metrics would answer whoever the proxy serves.
A request from a trusted proxy is taken to come from the address its `X-Forwarded-For` names:
the hops are read from the right (each proxy appends the address it was reached from), and
the first one that is not a trusted proxy is the client. A request from elsewhere keeps its
own address, whatever it claims.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Any]) -> str | None:
    """The client's address: `peer` itself unless it is a trusted proxy that names one."""
    if peer is None or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _within(address: str, networks: Sequence[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_scheme(peer: str | None, forwarded_proto: str | None, trusted: Sequence[Any]) -> str | None:
    """"https" or "http" as the trusted proxy `peer` says it was reached (X-Forwarded-Proto),
    else None: a request from elsewhere cannot claim HTTPS."""
    if peer is None or forwarded_proto is None or not _within(peer, trusted):
        return None
    scheme = forwarded_proto.split(",")[0].strip().lower()
    return scheme if scheme in ("http", "https") else None
