"""Asterisk REST Interface edge: the events WebSocket and REST calls (`client`) and ARI events as
tracker events (`translate`). The daemon's Stasis application, which routes calls over ARI,
is a route like the FastAGI ones: agi_daemon/asterisk/routes/stasis.py.

Design choice: aiohttp directly, not aioari. aioari (the asyncio port of ari-py, which does not
import on Python 3) is thin where the daemon needs substance: no reconnection, no resync, no
heartbeat, event callbacks run inline on the socket reader, and it downloads Asterisk's Swagger
resource list at each connection to build its objects. The daemon uses four REST calls
(GET /channels, GET /bridges, POST /channels/{id}/variable, POST /channels/{id}/continue), one
PUT (the event filter) and the events WebSocket: wrapping aioari would mean writing the
reconnect, resync, back-pressure and error translation anyway, around a library that gives
nothing else here. aiohttp is the library aioari itself sits on.

Usage::

    client = AriClient(url, user, password, "agi-daemon", event_types=EVENT_TYPES,
                       app_types=APP_EVENT_TYPES)
    client.application = StasisRouting(client, ...)   # routes/stasis.py
    tg.create_task(client.run())
    async for event in tracker_events(client.events()): ...
"""
from .client import AriApplication, AriClient
from .errors import AriError, AriRefused, AriUnavailable
from .model import AriEvent, AriItem, AriResync
from .translate import EVENT_TYPES, tracker_events, translate

__all__ = [
    "EVENT_TYPES", "AriApplication", "AriClient", "AriError", "AriEvent", "AriItem", "AriRefused", "AriResync",
    "AriUnavailable", "tracker_events", "translate",
]
