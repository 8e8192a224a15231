"""Alarms as HL7 v2.6 messages in the IHE PCD-04 "Report Alert" shape (ORU^R40, Alarm
Communication Management), for a hospital's alarm manager or integration engine.

One message per alarm event: MSH, PID (the pseudonymous patient reference, never a name),
PV1 (the bed as the assigned location), OBR (the alarm: filler order number = the alarm id,
`196616^MDC_EVT_ALARM^MDC`) and the facet OBXs (identity with priority and source in OBX-8,
source, phase, state, inactivation state). The message control id is stable per alarm event,
so a receiver drops a resent duplicate (delivery is at-least-once).

hl7apy checks the structure: it has no ORU_R40 definition, and ORU_R40's segments are those
of ORU_R01, so the message is built and validated as ORU_R01 and then typed ORU^R40^ORU_R40
(docs/decisions.md). Event codes: the IEEE 11073-10101 codes found for asystole, AF,
bradycardia and tachycardia, lead disconnection and artefact; the generic alarm event with
the alarm's text for the others (VF, VT, SVT, pause, PVC burden) until codes are checked
against the RTMMS table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

PROFILE = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO"
ALARM_EVENT = "196616^MDC_EVT_ALARM^MDC"
# (code^name^MDC, text) per ecgstream alarm kind
EVENTS: dict[str, tuple[str, str]] = {
    "asystole": ("199684^MDC_EVT_ECG_ASYSTOLE^MDC", "Asystole"),
    "afib": ("199736^MDC_EVT_ECG_ATR_FIB^MDC", "Atrial fibrillation"),
    "brady": ("199692^MDC_EVT_ECG_SINUS_BRADY^MDC", "Bradycardia"),
    "tachy": ("199870^MDC_EVT_ECG_SINUS_TACHY^MDC", "Tachycardia"),
    "vfib": (ALARM_EVENT, "Ventricular fibrillation"),
    "vtach": (ALARM_EVENT, "Ventricular tachycardia"),
    "svt": (ALARM_EVENT, "Supraventricular tachycardia"),
    "pause": (ALARM_EVENT, "Pause"),
    "pvc_burden": (ALARM_EVENT, "PVC burden high"),
}
FAULT_EVENTS: dict[str, tuple[str, str]] = {
    "lead_off": ("196876^MDC_EVT_LEAD_DISCONN^MDC", "ECG lead off"),
    "noise": ("197040^MDC_EVT_WAVE_ARTIF_ERR^MDC", "ECG noise"),
}
PRIORITY_FLAGS = {"high": "PH", "medium": "PM", "low": "PL"}
HEART_RATE = "147842^MDC_ECG_HEART_RATE^MDC"
MDS = "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC"


@dataclass(frozen=True)
class Sender:
    application: str = "ECGSTREAM"
    facility: str = "ECGSTREAM"
    receiving_application: str = "ACM"
    receiving_facility: str = "HOSPITAL"
    point_of_care: str = "WARD"  # PV1-3.1; the bed is the device id


@dataclass(frozen=True)
class AlertReport:
    """What one PCD-04 message reports: an alarm event from `ecg.alerts` (no patient name)."""

    alarm_id: str
    device_id: str
    patient_ref: str  # the pseudonym devices send
    kind: str
    category: str  # clinical | technical
    priority: str
    fault: str | None
    phase: str  # start | end
    event_time: float  # unix time: the alarm's start, or the episode's end
    heart_rate: float | None = None

    @property
    def control_id(self) -> str:
        """Stable per alarm event, at most 20 characters (MSH-10 is ST(199), but receivers
        often keep 20): a resend is recognisably the same message."""
        digest = hashlib.sha256(f"{self.alarm_id}|{self.phase}".encode()).hexdigest()
        return "ECG" + digest[:17].upper()


def hl7_time(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


def _event(report: AlertReport) -> tuple[str, str]:
    if report.category == "technical":
        fault = report.fault or "technical"
        return FAULT_EVENTS.get(fault, (ALARM_EVENT, f"ECG {fault.replace('_', ' ')}"))
    return EVENTS.get(report.kind, (ALARM_EVENT, report.kind))


def report_alert(report: AlertReport, sender: Sender, now: float) -> str:
    """The ER7 text of the ORU^R40 message (segments separated by carriage returns)."""
    message = Message("ORU_R01", version="2.6", validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = sender.application
    msh.msh_4 = sender.facility
    msh.msh_5 = sender.receiving_application
    msh.msh_6 = sender.receiving_facility
    msh.msh_7 = hl7_time(now)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = report.control_id
    msh.msh_11 = "P"
    msh.msh_15 = "AL"
    msh.msh_16 = "NE"
    msh.msh_18 = "UNICODE UTF-8"
    msh.msh_21 = PROFILE

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_3 = f"{report.patient_ref}^^^ECGSTREAM^PI"
    patient.pid.pid_5 = "^^^^^^U"  # no name: the platform knows only the pseudonym (type U)
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_2 = "I"
    visit.pv1.pv1_3 = f"{sender.point_of_care}^^{report.device_id}"

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_3 = f"{report.alarm_id}^{sender.application}"
    order.obr.obr_4 = ALARM_EVENT
    order.obr.obr_7 = hl7_time(report.event_time)

    code, text = _event(report)
    source = "ST" if report.category == "technical" else "SP"
    active = report.phase != "end"
    facets: list[tuple[str, str, str, str]] = [
        ("ST", code, text, f"A~{PRIORITY_FLAGS.get(report.priority, 'PL')}~{source}"),
        (
            ("NM", HEART_RATE, f"{report.heart_rate:.0f}", "")
            if report.heart_rate is not None
            else ("CWE", "68480^MDC_ATTR_ALERT_SOURCE^MDC", MDS, "")
        ),
        ("ST", "68481^MDC_ATTR_EVENT_PHASE^MDC", report.phase, ""),
        ("ST", "68482^MDC_ATTR_ALARM_STATE^MDC", "active" if active else "inactive", ""),
        ("ST", "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC", "enabled", ""),
    ]
    for number, (value_type, identifier, value, flags) in enumerate(facets, start=1):
        observation = order.add_group("ORU_R01_OBSERVATION").obx
        observation.obx_1 = str(number)
        observation.obx_2 = value_type
        observation.obx_3 = identifier
        observation.obx_4 = f"1.0.0.0.{number}"
        observation.obx_5 = value
        if value_type == "NM":
            observation.obx_6 = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
        for flag in flags.split("~") if flags else ():  # OBX-8 repeats: one flag each
            observation.add_field("OBX_8").value = flag
        observation.obx_11 = "F"
        observation.obx_14 = hl7_time(report.event_time)
    message.validate()
    # the ORU^R40 trigger on the ORU_R01 structure it shares (see the module docstring)
    return message.to_er7().replace("ORU^R01^ORU_R01", "ORU^R40^ORU_R40", 1)


def ack_code(ack_er7: str) -> tuple[str, str]:
    """(MSA-1 acknowledgement code, MSA-2 control id) of an ACK, '' where absent."""
    for segment in ack_er7.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA"):
            fields = segment.split(segment[3] if len(segment) > 3 else "|")
            return (fields[1] if len(fields) > 1 else "", fields[2] if len(fields) > 2 else "")
    return "", ""
