"""An MLLP client for HL7 v2 messages (python-hl7's asyncio streams): send one message, wait
for its acknowledgement, reconnect when the connection breaks.

`send` returns only once the receiver accepted the message (MSA-1 AA or CA) and raises
`HL7RefusedError` when it refused it (AE/AR, CE/CR): retrying a refusal changes nothing, retrying
a broken connection or a missing ACK does, and `deliver` keeps doing that with a capped
back-off. A message resent after an ACK that got lost is the same message with the same
control id (MSH-10): the receiver drops the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

import hl7
from hl7.mllp import open_hl7_connection

from ecgstream.ward.pcd04 import ack_code

log = logging.getLogger(__name__)
ACCEPTED = ("AA", "CA")


class HL7RefusedError(Exception):
    def __init__(self, code: str, control_id: str) -> None:
        super().__init__(f"the receiver answered {code} to message {control_id}")
        self.code = code


class MllpClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        ack_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.ack_timeout_s = ack_timeout_s
        self._ssl = ssl_context
        self._streams: tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter] | None = None

    async def send(self, message: str, control_id: str) -> str:
        """Send and wait for the ACK; returns its code. Raises HL7RefusedError on a refusal and
        OSError / TimeoutError / asyncio.IncompleteReadError when the link failed."""
        reader, writer = await self._connect()
        try:
            writer.writemessage(message)
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), self.ack_timeout_s)
        except BaseException:
            await self.close()  # a half-read stream is useless: the next send reconnects
            raise
        code, acked_id = ack_code(str(ack))
        if acked_id and acked_id != control_id:
            await self.close()
            raise OSError(f"ACK for {acked_id} while waiting for {control_id}")
        if code not in ACCEPTED:
            raise HL7RefusedError(code or "no MSA", control_id)
        return code

    async def deliver(
        self,
        message: str,
        control_id: str,
        *,
        max_backoff_s: float = 30.0,
        on_retry: Callable[[BaseException], None] = lambda exc: None,
    ) -> str:
        """`send` until the receiver accepts or refuses: a broken link is retried forever
        (an alarm must not be dropped because the interface engine restarts)."""
        backoff = 0.5
        while True:
            try:
                return await self.send(message, control_id)
            except HL7RefusedError:
                raise
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                on_retry(exc)
                log.warning(
                    "HL7 receiver %s:%s: %s; retrying in %.1f s",
                    self.host,
                    self.port,
                    type(exc).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(max_backoff_s, backoff * 2)

    async def _connect(self) -> tuple[hl7.mllp.HL7StreamReader, hl7.mllp.HL7StreamWriter]:
        streams = self._streams
        if streams is None or streams[1].is_closing():
            streams = await asyncio.wait_for(
                open_hl7_connection(self.host, self.port, encoding="utf-8", ssl=self._ssl),
                self.ack_timeout_s,
            )
            if streams is None:  # python-hl7 declares it optional; it never returns None
                raise OSError("no MLLP connection")
            self._streams = streams
        return streams

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await writer.wait_closed()
