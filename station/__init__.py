"""The central station: a live web page for the nursing station (tiles per bed, strips, alarm
handling with an audit trail), escalation of unanswered alarms to paging, and alarms to the
hospital as HL7 (IHE PCD-04 over MLLP). Runtime layer: it reads Kafka and PostgreSQL and needs
no Ray, so the ward keeps its view while the ML cluster restarts."""

__all__ = ["app"]
