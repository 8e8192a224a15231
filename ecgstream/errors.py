"""The exceptions of ecgstream, under one root.

    EcgstreamError
    ├── ConfigurationError      a setting is missing or wrong: the message names it
    ├── WireFormatError         a Kafka message is not a valid ECG chunk (carries a RejectReason)
    └── StackError              a local service failed to start or answer (names its log file)

Every constructor passes all its arguments to `super().__init__` so the errors pickle across Ray
actor boundaries unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class EcgstreamError(Exception):
    """Root of all errors raised by ecgstream itself."""


class ConfigurationError(EcgstreamError):
    pass


class RejectReason(StrEnum):
    """Why a message was refused; the value is what goes to the dead-letter topic and metrics."""

    NOT_MSGPACK = "not_msgpack"
    NOT_A_MAP = "not_a_map"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    LENGTH_MISMATCH = "length_mismatch"
    FS_OUT_OF_RANGE = "fs_out_of_range"
    OVERSIZE = "oversize"
    INVALID_VALUE = "invalid_value"
    UNSIGNED = "unsigned"  # no device signature where signatures are required
    BAD_SIGNATURE = "bad_signature"  # signed, but not with the key of the device it names


class WireFormatError(EcgstreamError):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


class StackError(EcgstreamError):
    def __init__(self, component: str, message: str, log_path: Path | None = None) -> None:
        super().__init__(component, message, log_path)
        self.component = component
        self.message = message
        self.log_path = log_path

    def __str__(self) -> str:
        where = f" (log: {self.log_path})" if self.log_path else ""
        return f"{self.component}: {self.message}{where}"
