"""The baseline `bench api` compares the REST API with: what a user would write without Ray, a
single-process FastAPI + PyTorch server doing the same work per request (validate the segment,
detect beats, classify, alarms) with a key check. Run by the benchmark under uvicorn:

    python -m uvicorn ecgstream.benchmarks._baseline_api:app --port PORT --workers 1
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError

from ecgstream.api_schema import SegmentRequest
from ecgstream.artifact import load_artifact
from ecgstream.segment import classify_segment

app = FastAPI(title="baseline")
_model = load_artifact()
_key = os.environ.get("ECGSTREAM_BASELINE_KEY", "")


@app.post("/v1/classify")
async def classify(request: Request) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    if not _key or not hmac.compare_digest(header.removeprefix("Bearer "), _key):
        raise HTTPException(401, "invalid or missing credentials")
    try:
        segment = SegmentRequest.model_validate_json(await request.body())
    except ValidationError:
        raise HTTPException(422, "invalid segment") from None
    import numpy as np

    x = np.asarray(segment.samples, dtype=np.float32)
    try:
        return classify_segment(_model, x, segment.fs, list(segment.leads))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
