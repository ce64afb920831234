"""Asterisk's side of a FastAGI session, on a real loopback socket.

    asterisk = await FakeAsterisk.connect(port)      # step by step (the server's own tests)
    variables = await agi_call(port, "incoming", extension=..., callerid=..., args=(linkedid,))
"""
from __future__ import annotations

import asyncio

WAIT = 5.0  # upper bound for every wait here: nothing may hang


def header(
    route: str = "incoming",
    *,
    extension: str = "0184880000",
    callerid: str = "0612345678",
    args: tuple[str, ...] = ("1700000000.0",),
    uniqueid: str = "1700000000.1",
    channel: str = "Local/0184880000@agi-daemon-incoming-00000001;2",
    context: str = "agi-daemon-incoming",
    port: int = 4573,
) -> bytes:
    """The header Asterisk sends when the dialplan runs AGI(agi://host:port/<route>,args...)."""
    lines = [
        "agi_network: yes",
        f"agi_network_script: {route}",
        f"agi_request: agi://127.0.0.1:{port}/{route}",
        f"agi_channel: {channel}",
        f"agi_uniqueid: {uniqueid}",
        f"agi_callerid: {callerid}",
        "agi_calleridname: unknown",
        f"agi_context: {context}",
        f"agi_extension: {extension}",
        "agi_priority: 2",
        *(f"agi_arg_{i}: {arg}" for i, arg in enumerate(args, 1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """Asterisk's side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def command(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), WAIT)

    async def rest(self) -> bytes:
        """Everything the server still sends until it closes the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), WAIT)
        except ConnectionResetError:
            return b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except ConnectionError:
            pass

    async def answer_all(self, timeout: float = WAIT) -> dict[str, str]:
        """Answer every command as Asterisk would on success until the server hangs up;
        returns the variables it set (SET VARIABLE, or EXEC MSet)."""
        variables: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while line := await self.reader.readline():
                words = line.decode().strip().split(" ", 3)
                if words[:2] == ["SET", "VARIABLE"]:
                    variables[words[2].strip('"')] = words[3].strip('"') if len(words) > 3 else ""
                    await self.send(b"200 result=1\n")
                elif words[:2] == ["EXEC", '"MSet"']:
                    for assignment in words[2].strip('"').split(","):
                        name, _, value = assignment.partition("=")
                        variables[name] = value
                    await self.send(b"200 result=0\n")
                else:
                    await self.send(b"200 result=1\n")
        return variables


async def agi_call(port: int, route: str, *, extension: str, callerid: str, args: tuple[str, ...] = (),
                   timeout: float = WAIT) -> dict[str, str]:
    """Play Asterisk's side of one whole FastAGI session and return the variables the daemon set."""
    asterisk = await FakeAsterisk.connect(port)
    try:
        await asterisk.send(header(route, extension=extension, callerid=callerid, args=args,
                                   channel="Local/test-00000001;2", port=port))
        return await asterisk.answer_all(timeout)
    finally:
        await asterisk.close()
