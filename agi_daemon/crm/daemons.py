"""Which daemon owns a row of the daemon's store that only its owner may work on (an outbox
claim, a kept hangup report): "host:pid", and whether that daemon still runs."""
from __future__ import annotations

import os
import socket


def this_daemon() -> str:
    """This daemon, as its rows name it: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def this_host() -> str:
    return socket.gethostname()


def running(owner: str) -> bool:
    """Whether the daemon `owner` ("host:pid", of this host) still runs: this one, or a live
    process of that pid (a reused pid only keeps the row, the safe side)."""
    pid = owner.rpartition(":")[2]
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
