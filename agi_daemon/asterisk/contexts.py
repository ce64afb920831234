"""Every dialplan context name the project's dialplan files and Python share, and what a channel
standing in one of them tells call tracking.

dialplan/agi-daemon.conf (FastAGI) and dialplan/agi-daemon-stasis.conf (Stasis) both define the
two entry contexts; both dial in the shared contexts of dialplan/agi-daemon-dial.conf; the
generated fallback (agi_daemon/asterisk/fallback.py) has its own two. Whichever transport the
events come by (AMI or ARI), a channel seen in one of `ENTRY_CONTEXTS` is a call the daemon
routes, in that direction: the edge sets `Channel.entry` from this table, the core knows no
context names.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..core.model import Direction
from .fallback import INCOMING_CONTEXT as FALLBACK_INCOMING
from .fallback import OUTGOING_CONTEXT as FALLBACK_OUTGOING

INCOMING_CONTEXT = "agi-daemon-incoming"  # EXTEN: the line; caller ID: the client
OUTGOING_CONTEXT = "agi-daemon-outgoing"  # EXTEN: the dialled number; caller ID: the employee's extension
DIAL_INCOMING_CONTEXT = "agi-daemon-dial-incoming"  # dialplan/agi-daemon-dial.conf, same EXTEN
DIAL_OUTGOING_CONTEXT = "agi-daemon-dial-outgoing"
HANGUP_CONTEXT = "agi-daemon-hangup"  # FastAGI: reports the end over AGI (route call-end)
STASIS_HANGUP_CONTEXT = "agi-daemon-stasis-hangup"  # Stasis: reports it as a user event over ARI

ENTRY_CONTEXTS: Mapping[str, Direction] = {
    INCOMING_CONTEXT: Direction.INCOMING,
    DIAL_INCOMING_CONTEXT: Direction.INCOMING,
    FALLBACK_INCOMING: Direction.INCOMING,
    OUTGOING_CONTEXT: Direction.OUTGOING,
    DIAL_OUTGOING_CONTEXT: Direction.OUTGOING,
    FALLBACK_OUTGOING: Direction.OUTGOING,
}
