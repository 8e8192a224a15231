"""The API's request parsing on inputs `ecgstream fuzz` found mishandled: each is a clear 422,
never a 500, and a rejection does not echo the request."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _wfdb(header: str, n_samples: int = 720) -> tuple[bytes, bytes]:
    return header.encode(), (np.arange(n_samples) % 500).astype("<i2").tobytes()


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("r" * 300 + " 1 360 720\nr.dat 16 200 11 0 0 0 0 MLII\n", "no valid record"),
        ("rec 0 360 1\nf0.dat 16 200 L0\n", "leads"),
        ("rec 1 360 300000000\nrec.dat 16 200 11 0 0 0 0 MLII\n", "over 3600 s"),
        ("rec 1 360 720\nrec.dat 16 1e-300 11 0 0 0 0 MLII\n", "finite millivolts"),
        ("rec 1 360 720\nrec.dat 16 1e400 11 0 0 0 0 MLII\n", "finite millivolts"),
    ],
    ids=["long-name", "no-signals", "huge-claim", "tiny-gain", "infinite-gain"],
)
def test_bad_wfdb_headers_are_a_422(header: str, says: str) -> None:
    from fastapi import HTTPException

    from serve_app.api import read_wfdb_upload

    with pytest.raises(HTTPException) as caught:
        read_wfdb_upload(*_wfdb(header))
    assert caught.value.status_code == 422
    assert says in caught.value.detail


def test_a_good_wfdb_upload_still_reads() -> None:
    from serve_app.api import read_wfdb_upload

    x, fs, leads = read_wfdb_upload(*_wfdb("rec 1 360 720\nrec.dat 16 200 11 0 0 0 0 MLII\n"))
    assert (x.shape, fs, leads) == ((1, 720), 360.0, ["MLII"])
    assert np.isfinite(x).all()


def test_a_422_lists_a_bounded_number_of_short_errors() -> None:
    from pydantic import ValidationError

    from ecgstream.api_schema import SegmentRequest
    from serve_app.api import validation_errors

    body = {"fs": 360, "leads": ["I"], "samples": [["x"] * 5000], "k" * 5000: 1}
    with pytest.raises(ValidationError) as caught:
        SegmentRequest.model_validate_json(json.dumps(body))
    errors = validation_errors(caught.value)
    assert len(errors) == 21 and errors[-1]["type"] == "too_many_errors"
    assert len(json.dumps(errors)) < 8192

    with pytest.raises(ValidationError) as caught:
        SegmentRequest.model_validate_json(json.dumps({"k" * 5000: 1}))
    assert all(len(str(part)) <= 64 for e in validation_errors(caught.value) for part in e["loc"])
