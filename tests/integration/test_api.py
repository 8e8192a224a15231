"""The REST API on the real stack: Ray Serve's HTTP proxy, keys in the real PostgreSQL, the
shipped model. Every error path answers 4xx with a reason; a valid segment gives the beats the
same code gives offline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest

from ecgstream.artifact import load_artifact, save_artifact
from ecgstream.io.api_keys import create_key, revoke_key
from ecgstream.records import load_record
from ecgstream.segment import detect_segment
from ecgstream.settings import Settings
from tests.integration.pipeline_support import perturbed_model

SHIPPED = load_artifact()


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    import ray

    from actors.pipeline import api_down, api_up

    url = api_up(settings)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        api_down(settings)
        ray.shutdown()


def _key(
    settings: Settings,
    name: str,
    scopes: tuple[str, ...] = ("classify",),
    requests_per_minute: int | None = 10**6,
) -> str:
    async def make() -> str:
        conn = await asyncpg.connect(settings.postgres_dsn())
        try:
            return (await create_key(conn, name, scopes, requests_per_minute))[1]
        finally:
            await conn.close()

    return asyncio.run(make())


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def key(settings: Settings, api: httpx.Client) -> str:
    created = _key(settings, "tests")
    time.sleep(5.5)  # the API's key cache refreshes every 5 s
    return created


def _segment(record: str, seconds: float, mitdb: Path) -> tuple[dict, np.ndarray]:
    r = load_record(mitdb, record)
    n = int(seconds * r.fs)
    x = np.stack([r.lead(name) for name in r.lead_names])[:, :n]
    body = {"fs": r.fs, "leads": list(r.lead_names), "samples": x.tolist()}
    return body, x


def test_health_needs_no_key_and_readiness_says_the_model(api: httpx.Client, key: str) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == SHIPPED.version


def test_a_segment_gives_the_offline_beats_classes_and_version(
    api: httpx.Client, key: str, mitdb_dir: Path
) -> None:
    body, x = _segment("119", 60, mitdb_dir)  # ventricular bigeminy
    response = api.post("/v1/classify", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    out = response.json()
    offline = detect_segment(x, body["fs"], body["leads"], SHIPPED.preprocess)
    labels, _ = SHIPPED.predict(offline.windows, offline.rr)
    assert [b["sample"] for b in out["beats"]] == offline.samples.tolist()
    assert [b["label"] for b in out["beats"]] == labels.tolist()
    assert out["model_version"] == SHIPPED.version and out["lead"] == "MLII"
    assert {b["label"] for b in out["beats"]} >= {"N", "V"}
    assert all(abs(sum(b["probabilities"].values()) - 1) < 1e-3 for b in out["beats"])


def test_a_wfdb_upload_of_a_whole_record(api: httpx.Client, key: str, mitdb_dir: Path) -> None:
    files = {
        "header": ("101.hea", (mitdb_dir / "101.hea").read_bytes()),
        "signal": ("101.dat", (mitdb_dir / "101.dat").read_bytes()),
    }
    response = api.post("/v1/classify/wfdb", files=files, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    out = response.json()
    r = load_record(mitdb_dir, "101")
    offline = detect_segment(
        np.stack([r.lead(n) for n in r.lead_names]), r.fs, r.lead_names, SHIPPED.preprocess
    )
    assert out["n_beats"] == len(offline) > 1800  # 30 minutes of a ~70 bpm patient


def test_models_lists_what_serves(api: httpx.Client, key: str) -> None:
    out = api.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert out["serving"] == SHIPPED.version


def test_every_replica_follows_the_production_lane_without_a_redeploy(
    api: httpx.Client, key: str, tmp_path: Path, mitdb_dir: Path
) -> None:
    """What `release promote` does to the API: the model directory names a new production
    model and each ingress replica loads it and acknowledges; a rollback switches back."""
    import ray

    from actors.model_directory import ModelTarget, model_directory

    out = tmp_path / "candidate"
    save_artifact(out, perturbed_model(7), SHIPPED.preprocess, SHIPPED.reference, {"test": 1})
    candidate = load_artifact(out).version
    directory = model_directory()
    body, _ = _segment("101", 10, mitdb_dir)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        for target in (ModelTarget(candidate, str(out)), ModelTarget(SHIPPED.version, None)):
            ray.get(directory.set_target.remote("production", target))
            deadline = time.monotonic() + 60
            while set(ray.get(directory.loaded.remote("production")).values()) != {target.version}:
                assert time.monotonic() < deadline, "replicas did not switch"
                time.sleep(0.5)
            answer = api.post("/v1/classify", json=body, headers=headers).json()
            assert answer["model_version"] == target.version
            assert api.get("/readyz").json()["model_version"] == target.version
    finally:
        ray.get(directory.forget.remote("production"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer ecgk_000000000000_wrong"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "not-a-key"},
    ],
)
def test_no_valid_key_is_401_and_says_nothing_more(
    api: httpx.Client, key: str, headers: dict
) -> None:
    for path in ("/v1/classify", "/v1/classify/wfdb"):
        response = api.post(
            path, content=b"{}", headers={**headers, "content-type": "application/json"}
        )
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid or missing credentials"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/models", headers=headers).status_code == 401


def test_a_wrong_secret_for_a_real_key_id_is_401(api: httpx.Client, key: str) -> None:
    prefix, key_id, _ = key.split("_")
    forged = f"{prefix}_{key_id}_{'x' * 43}"
    response = api.get("/v1/models", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_a_revoked_key_is_refused_within_the_refresh(settings: Settings, api: httpx.Client) -> None:
    revoked = _key(settings, "to-revoke")
    time.sleep(5.5)
    headers = {"Authorization": f"Bearer {revoked}"}
    assert api.get("/v1/models", headers=headers).status_code == 200

    async def revoke() -> bool:
        conn = await asyncpg.connect(settings.postgres_dsn())
        try:
            return await revoke_key(conn, revoked.split("_")[1])
        finally:
            await conn.close()

    assert asyncio.run(revoke())
    time.sleep(5.5)
    assert api.get("/v1/models", headers=headers).status_code == 401


def test_a_key_over_its_budget_is_429_with_retry_after_and_others_go_on(
    settings: Settings, api: httpx.Client, key: str
) -> None:
    slow = _key(settings, "slow", requests_per_minute=3)
    time.sleep(5.5)  # the key cache refresh
    answers = [api.get("/v1/models", headers=_auth(slow)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert "budget" in answers[-1].json()["detail"]
    assert api.get("/v1/models", headers=_auth(key)).status_code == 200


def test_a_key_without_the_scope_is_403(settings: Settings, api: httpx.Client) -> None:
    reader = _key(settings, "no-classify", scopes=("read",))
    time.sleep(5.5)
    response = api.get("/v1/models", headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 403


def _bad_bodies(mitdb: Path) -> list[tuple[str, bytes]]:
    good, _ = _segment("101", 10, mitdb)

    def with_(**changes: object) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        ("fs too low", with_(fs=10)),
        ("fs too high", with_(fs=5000)),
        ("too short", with_(samples=[row[:100] for row in good["samples"]])),
        ("leads and samples differ", with_(leads=["MLII"])),
        ("ragged leads", with_(samples=[good["samples"][0], good["samples"][1][:-5]])),
        ("duplicate lead names", with_(leads=["MLII", "MLII"])),
        ("bad lead name", with_(leads=["ML II", "V5"])),
        ("no usable lead", with_(leads=["X1", "X2"])),
        ("unknown field", with_(patient="someone")),
        ("not millivolts", with_(samples=[[1024.0] * 3600, [1024.0] * 3600])),
        ("NaN", with_(samples=[[float("nan")] * 3600, [0.0] * 3600])),
        ("missing fs", json.dumps({k: v for k, v in good.items() if k != "fs"}).encode()),
        ("not JSON", b"{not json"),
        ("a list", b"[1, 2, 3]"),
        ("strings", with_(samples=[["a"] * 3600, ["b"] * 3600])),
    ]


def test_every_bad_segment_is_a_4xx_with_a_reason(
    api: httpx.Client, key: str, mitdb_dir: Path
) -> None:
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    for what, body in _bad_bodies(mitdb_dir):
        response = api.post("/v1/classify", content=body, headers=headers)
        assert response.status_code == 422, (what, response.status_code, response.text[:300])
        assert response.json()["detail"], what


def test_an_oversized_body_is_413_before_it_is_read(api: httpx.Client, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    response = api.post("/v1/classify", content=b" " * (33 * 1024 * 1024), headers=headers)
    assert response.status_code == 413


def test_bad_wfdb_uploads_are_422(api: httpx.Client, key: str, mitdb_dir: Path) -> None:
    header = (mitdb_dir / "101.hea").read_text()
    signal = (mitdb_dir / "101.dat").read_bytes()
    traversal = header.replace("101.dat", "../../etc/passwd.dat")
    cases = [
        ("empty header", "", signal),
        ("garbage header", "this is not a header", signal),
        ("binary header", "\x89PNG\r\n\x1a\n\xff\xfe", signal),
        ("signal truncated", header, signal[:1000]),
        ("path in the signal name", traversal, signal),
    ]
    for what, hea, dat in cases:
        files = {"header": ("x.hea", hea.encode()), "signal": ("x.dat", dat)}
        response = api.post("/v1/classify/wfdb", files=files, headers={"X-API-Key": key})
        assert response.status_code == 422, (what, response.status_code, response.text[:300])


def test_schemathesis_finds_no_server_error_or_schema_violation(
    settings: Settings, api: httpx.Client, key: str, tmp_path: Path
) -> None:
    """Property-based requests generated from the live app's own OpenAPI schema."""
    import sys

    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{str(api.base_url).rstrip('/')}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--request-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
