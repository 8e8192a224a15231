"""Alarms to the hospital as HL7: every raised alarm and every episode end on `ecg.alerts`
becomes an IHE PCD-04 message sent over MLLP to the configured receiver.

At-least-once, in order per partition: the consumer group `station-hl7` commits a batch's
offsets only after the receiver acknowledged every message of it (or refused it, which is
recorded in the audit trail as `hl7_refused` with the receiver's answer, so nothing is lost
without a trace). A station that restarts resends what was not committed; the messages' control
ids are stable, so the receiver drops the repeats. A new group starts at the live end: alarms
from before the first start are not sent."""

from __future__ import annotations

import logging
import ssl
import time

import asyncpg

from ecgstream.io.kafka import make_consumer
from ecgstream.io.mllp import HL7RefusedError, MllpClient
from ecgstream.io.station_store import record_action
from ecgstream.messages import alarm_from_message
from ecgstream.settings import Settings
from ecgstream.ward.alarm_board import AlarmAction
from ecgstream.ward.beds import Ward
from ecgstream.ward.pcd04 import AlertReport, Sender, report_alert
from station._counters import Counters

log = logging.getLogger(__name__)
GROUP = "station-hl7"


def _client(settings: Settings) -> MllpClient:
    station = settings.station
    host, _, port = (station.hl7_receiver or "").rpartition(":")
    context = None
    if station.hl7_tls:
        context = ssl.create_default_context()
        ca = settings.tls_dir / "ca.pem"
        if ca.exists():
            context.load_verify_locations(ca)
    return MllpClient(host, int(port), ack_timeout_s=station.hl7_ack_timeout_s, ssl_context=context)


async def forward_alarms(
    settings: Settings, pool: asyncpg.Pool, ward: Ward, counters: Counters
) -> None:
    station = settings.station
    sender = Sender(
        receiving_application=station.hl7_receiving_application,
        receiving_facility=station.hl7_receiving_facility,
        point_of_care=station.ward,
    )
    client = _client(settings)
    consumer = make_consumer(
        settings,
        settings.topics.alerts,
        group_id=GROUP,
        role="subscriber",
        auto_offset_reset="latest",
    )
    await consumer.start()

    def retried(exc: BaseException) -> None:
        counters.hl7_retries += 1

    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for records in batch.values():
                for record in records:
                    try:
                        event = alarm_from_message(record.value)
                    except (ValueError, KeyError, TypeError):
                        counters.reject("alarm_format")
                        continue
                    alarm = event.alarm
                    bed = ward.beds.get(alarm.device_id)
                    report = AlertReport(
                        alarm_id=alarm.alarm_id,
                        device_id=alarm.device_id,
                        patient_ref=event.patient_id,
                        kind=alarm.kind,
                        category=alarm.category,
                        priority=alarm.severity,
                        fault=alarm.evidence.get("fault"),
                        phase="end" if event.is_end else "start",
                        event_time=event.ended_time if event.ended_time else alarm.start_time,
                        heart_rate=bed.heart_rate() if bed else None,
                    )
                    message = report_alert(report, sender, time.time())
                    try:
                        await client.deliver(message, report.control_id, on_retry=retried)
                        counters.hl7_sent += 1
                    except HL7RefusedError as refused:
                        counters.hl7_refused += 1
                        log.warning("HL7 message %s refused (%s)", report.control_id, refused.code)
                        await record_action(
                            pool,
                            AlarmAction(alarm.alarm_id, "hl7_refused", "station", time.time()),
                            alarm.device_id,
                            None,
                            detail=refused.code,
                        )
            if batch:
                await consumer.commit()
    finally:
        await client.close()
        await consumer.stop()
