"""Asterisk Manager Interface edge: a self-healing AMI connection that turns the wire into
frozen values (`AmiEvent`, `AmiResync`, `AmiResponse`) on a bounded queue.

Design choice: our own sans-IO codec (`codec`) plus a small asyncio connection (`client`),
not panoramisk. panoramisk behind a wrapper was the first idea; reading panoramisk 1.4
showed that the wrapper would have to replace most of `Manager` while still leaning on its
internals, because the defects sit in the parts we need:

- reconnection lives in `Manager.connection_lost` / `connection_made` as a fixed
  ``call_later(reconnect_timeout)`` outside any task we own, and intervals go through
  ``int()`` (a 0.5 s ping interval becomes 0);
- the pinger sends ``Ping`` and never looks at the answer, so a silent half-open link stays
  "connected" forever;
- actions left unanswered when a link drops are queued and re-sent after the next
  ``FullyBooted``: an ``Originate`` could be replayed minutes later;
- a response "… successfully queued" to an action without an ``Async`` header raises
  ``KeyError: 'async'`` inside ``data_received`` and kills the connection (``Atxfer``);
- every TCP read is decoded alone with ``errors='ignore'`` (a UTF-8 character split across
  two reads is silently lost), and every event becomes a dict before any filtering;
- coroutine callbacks are scheduled fire-and-forget.

The AMI framing is small (a banner line, then ``Key: Value`` blocks ending in an empty line),
so the codec is under 200 lines, tested without sockets, and the connection is one coroutine,
`AmiClient.run()`, that the application owns. Actions never outlive their connection: a
pending action fails with `AmiConnectionLost` and is never replayed.

Usage::

    client = AmiClient(host, port, username, secret, events={"Newchannel", "Hangup"})
    tg.create_task(client.run())
    async for item in client.events():   # AmiResync first after each (re)connection
        ...
    await client.action("Originate", Channel="Local/101@employees", Exten="100", ...)
    await client.close()
"""
from ..backoff import backoff_ceiling, backoff_delay
from .client import AmiClient
from .codec import AmiFields, AmiParser, encode_action
from .errors import (
    AmiActionTimeout,
    AmiAuthError,
    AmiConnectionLost,
    AmiError,
    AmiNotConnected,
    AmiProtocolError,
)
from .model import AmiEvent, AmiItem, AmiResponse, AmiResync, ChannelSnapshot

__all__ = [
    "AmiActionTimeout",
    "AmiAuthError",
    "AmiClient",
    "AmiConnectionLost",
    "AmiError",
    "AmiEvent",
    "AmiFields",
    "AmiItem",
    "AmiNotConnected",
    "AmiParser",
    "AmiProtocolError",
    "AmiResponse",
    "AmiResync",
    "ChannelSnapshot",
    "backoff_ceiling",
    "backoff_delay",
    "encode_action",
]
