"""The REST API's request and response bodies, with the limits every request is held to.

Limits are part of the contract: a request outside them gets a 4xx that says which limit, never
a 5xx. They bound the work one request can cause (at most an hour of up to 12 leads, and 32 MB
of body) and reject what no ECG device produces.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIN_FS, MAX_FS = 50.0, 1000.0
MAX_LEADS = 12
MIN_SECONDS, MAX_SECONDS = 2.0, 3600.0  # up to an hour: a whole MIT-BIH record is 30 min
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_ABS_MV = 100.0  # far beyond any ECG; catches raw ADC units sent as millivolts

LeadName = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_+\-]+$")]


class SegmentRequest(BaseModel):
    """An ECG segment in millivolts: one list of samples per lead, all the same length."""

    model_config = ConfigDict(extra="forbid")

    fs: float = Field(..., ge=MIN_FS, le=MAX_FS, description="sampling rate, Hz")
    leads: list[LeadName] = Field(..., min_length=1, max_length=MAX_LEADS)
    samples: list[list[float]] = Field(
        ..., min_length=1, max_length=MAX_LEADS, description="millivolts, one list per lead"
    )

    @field_validator("samples")
    @classmethod
    def _finite(cls, value: list[list[float]]) -> list[list[float]]:
        for row in value:
            for x in row:
                if not math.isfinite(x) or abs(x) > MAX_ABS_MV:
                    raise ValueError(f"samples must be finite millivolts within +-{MAX_ABS_MV:g}")
        return value

    @model_validator(mode="after")
    def _shape(self) -> SegmentRequest:
        if len(self.samples) != len(self.leads):
            raise ValueError(f"{len(self.leads)} leads named but {len(self.samples)} given")
        lengths = {len(row) for row in self.samples}
        if len(lengths) != 1:
            raise ValueError("every lead must have the same number of samples")
        seconds = lengths.pop() / self.fs
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(
                f"segment is {seconds:.1f} s; allowed {MIN_SECONDS:g} to {MAX_SECONDS:g} s"
            )
        if len(set(self.leads)) != len(self.leads):
            raise ValueError("lead names must be unique")
        return self


class Probabilities(BaseModel):
    N: float
    S: float
    V: float
    F: float


class BeatOut(BaseModel):
    sample: int = Field(description="R peak, sample index in the segment")
    time_s: float
    label: str = Field(description="AAMI class: N, S, V or F")
    probabilities: Probabilities
    signal_fault: str | None = Field(
        default=None,
        description="lead_off, clipping or noise when the ECG was unanalysable here (no "
        "arrhythmia alarm is raised there); null when analysable",
    )


class AlarmOut(BaseModel):
    kind: str = Field(
        description="asystole, vfib, vtach (high); afib, svt (medium); brady, tachy, pause, "
        "pvc_burden (low); technical (a sensor fault, named in evidence.fault)"
    )
    category: str = Field(default="clinical", description="clinical or technical")
    severity: str = Field(description="IEC 60601-1-8 priority: high, medium or low")
    priority: str = Field(description="the same as severity")
    start_sample: int = Field(description="first sample of the evidence (the episode's start)")
    start_time_s: float
    raised_time_s: float = Field(description="where in the segment the rule fired")
    end_time_s: float | None = Field(
        description="end of an AF or VF episode inside the segment; null if it lasts past the "
        "segment or the kind has no duration"
    )
    evidence: dict[str, Any]


class ClassifyResponse(BaseModel):
    model_version: str
    fs: float
    lead: str = Field(description="the lead beats were detected on")
    n_beats: int
    beats: list[BeatOut]
    alarms: list[AlarmOut]


class ModelInfo(BaseModel):
    version: str
    role: str = Field(description="production (what this API serves), or another alias")


class ModelsResponse(BaseModel):
    serving: str
    models: list[ModelInfo]


class ErrorResponse(BaseModel):
    detail: str
