"""FastAGI: the sans-IO codec (``codec``) and the asyncio server (``server``).

Use ``FastAgiServer(routes, allowed_peers=...)``; each route is a handler receiving an
``AgiSession``. Not panoramisk.fast_agi: its header loop spins forever at EOF.
"""
from agi_daemon.asterisk.agi.codec import (
    MAX_COMMAND_BYTES,
    AgiError,
    AgiProtocolError,
    AgiRequest,
    HangupNotice,
    HeaderParser,
    Reply,
    ReplyParser,
    encode_command,
    get_variable,
    quote,
    redact,
    set_variable,
    verbose,
)
from agi_daemon.asterisk.agi.server import (
    AgiChannelGone,
    AgiCommandFailed,
    AgiServerStats,
    AgiSession,
    FastAgiServer,
    Handler,
)

__all__ = [
    "MAX_COMMAND_BYTES",
    "AgiChannelGone",
    "AgiCommandFailed",
    "AgiError",
    "AgiProtocolError",
    "AgiRequest",
    "AgiServerStats",
    "AgiSession",
    "FastAgiServer",
    "Handler",
    "HangupNotice",
    "HeaderParser",
    "Reply",
    "ReplyParser",
    "encode_command",
    "get_variable",
    "quote",
    "redact",
    "set_variable",
    "verbose",
]
