"""The MLLP client against a real MLLP listener (python-hl7's asyncio server) on loopback."""

import asyncio
from collections.abc import Callable

import hl7
import pytest
from hl7.mllp import start_hl7_server

from ecgstream.io.mllp import HL7RefusedError, MllpClient
from ecgstream.ward.pcd04 import AlertReport, Sender, report_alert

REPORT = AlertReport(
    "bed-1:boot-1:vtach:1",
    "bed-1",
    "pt-1",
    "vtach",
    "clinical",
    "high",
    None,
    "start",
    1_790_000_000.0,
)
MESSAGE = report_alert(REPORT, Sender(), 1_790_000_001.0)


async def listener(
    answer: Callable[[int], str | None], port: int = 0, hang: asyncio.Event | None = None
) -> tuple[asyncio.Server, int, list]:
    """A receiver that answers the n-th message with answer(n): an ACK code, None to hang up
    without answering, or "wait" to never answer (until `hang` is set)."""
    received: list[hl7.Message] = []

    async def handle(reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                message = await reader.readmessage()
                received.append(message)
                code = answer(len(received))
                if code is None:
                    writer.close()
                    return
                if code == "wait" and hang is not None:
                    await hang.wait()
                writer.writemessage(message.create_ack(code))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await start_hl7_server(handle, "127.0.0.1", port, encoding="utf-8")
    return server, server.sockets[0].getsockname()[1], received


async def test_an_accepted_message_returns_its_ack_code_over_one_connection() -> None:
    server, port, received = await listener(lambda n: "CA")
    client = MllpClient("127.0.0.1", port)
    try:
        assert await client.send(MESSAGE, REPORT.control_id) == "CA"
        assert await client.send(MESSAGE, REPORT.control_id) == "CA"
    finally:
        await client.close()
        server.close()
    assert len(received) == 2 and str(received[0].segment("MSH")[9]) == "ORU^R40^ORU_R40"


async def test_a_refusal_is_raised_not_retried() -> None:
    server, port, received = await listener(lambda n: "AR")
    client = MllpClient("127.0.0.1", port)
    try:
        with pytest.raises(HL7RefusedError, match="AR"):
            await client.deliver(MESSAGE, REPORT.control_id)
    finally:
        await client.close()
        server.close()
    assert len(received) == 1


async def test_a_lost_connection_and_a_missing_ack_are_retried_until_accepted() -> None:
    # the first message is met by a hang-up, the second by silence, the third by an ACK
    hang = asyncio.Event()
    server, port, received = await listener(
        lambda n: None if n == 1 else ("AA" if n >= 3 else "wait"), hang=hang
    )
    client = MllpClient("127.0.0.1", port, ack_timeout_s=0.5)
    retries: list[str] = []
    try:
        code = await asyncio.wait_for(
            client.deliver(
                MESSAGE,
                REPORT.control_id,
                max_backoff_s=0.5,
                on_retry=lambda exc: retries.append(type(exc).__name__),
            ),
            timeout=20,
        )
    finally:
        hang.set()
        await client.close()
        server.close()
    assert code == "AA"
    assert len(received) == 3 and len(retries) == 2
    assert {str(m.segment("MSH")[10]) for m in received} == {REPORT.control_id}  # the same message


async def test_a_receiver_that_is_down_is_waited_for() -> None:
    server, port, _ = await listener(lambda n: "AA")
    server.close()
    await server.wait_closed()
    client = MllpClient("127.0.0.1", port, ack_timeout_s=0.5)
    delivery = asyncio.create_task(client.deliver(MESSAGE, REPORT.control_id, max_backoff_s=0.5))
    await asyncio.sleep(1.5)
    assert not delivery.done()
    restarted, _, received = await listener(lambda n: "AA", port=port)
    try:
        assert await asyncio.wait_for(delivery, timeout=10) == "AA"
    finally:
        await client.close()
        restarted.close()
    assert len(received) == 1
