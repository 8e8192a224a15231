"""The REST API: on-demand classification of ECG segments over HTTP (Ray Serve + FastAPI).

    POST /v1/classify        JSON segment (millivolts)           -> beats, alarms, model version
    POST /v1/classify/wfdb   a WFDB record upload (.hea + .dat)  -> the same
    GET  /v1/models          the version serving and the registry's aliases
    GET  /healthz, /readyz   liveness (no auth) and readiness (classifier and key cache)

Every /v1 route needs an API key (`Authorization: Bearer ecgk_...`); keys live hashed in
PostgreSQL and are cached here for KEY_REFRESH_S, so a revoked key stops working within that.
Each ingress replica runs the production lane's model itself (`FollowedModel`, as the stream's
classifier replicas do), so a promotion switches the API too. No request's samples are logged.
"""

import asyncio
import contextlib
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from starlette.datastructures import UploadFile

from ecgstream.api_schema import (
    MAX_BODY_BYTES,
    MAX_FS,
    MAX_LEADS,
    MAX_SECONDS,
    MIN_FS,
    MIN_SECONDS,
    ClassifyResponse,
    ErrorResponse,
    ModelInfo,
    ModelsResponse,
    SegmentRequest,
)
from ecgstream.io.api_keys import ActiveKey, active_keys, parse_key, secret_matches
from ecgstream.segment import classify_segment
from ecgstream.settings import Settings
from serve_app._followed_model import FollowedModel, replica_name
from serve_app._rate_limit import RateLimiter, retry_after_header

log = logging.getLogger("ecgstream.api")

API_APP_NAME = "ecgstream-api"
KEY_REFRESH_S = 5.0
UNAUTHORIZED = "invalid or missing credentials"

api = FastAPI(
    title="ecgstream API",
    version="1",
    description="Beat classification (AAMI N, S, V, F) and rhythm alarms for ECG segments.",
    responses={
        401: {"model": ErrorResponse, "description": "no valid API key"},
        403: {"model": ErrorResponse, "description": "the key may not do this"},
        411: {"model": ErrorResponse, "description": "a POST without Content-Length"},
        413: {"model": ErrorResponse, "description": "body over the limit"},
        429: {"model": ErrorResponse, "description": "the key's request budget is spent"},
    },
)


@api.middleware("http")
async def limit_body(request: Request, call_next: Any) -> Any:
    """Refuse a body over the limit before reading it (413), and bodies of unknown length."""
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is None:
            return JSONResponse({"detail": "Content-Length is required"}, status_code=411)
        # isascii: "²".isdigit() is true, but int("²") raises (a 500 instead of a 413)
        if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                {"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
    return await call_next(request)


class KeyCache:
    """Active keys from PostgreSQL, refreshed at most every KEY_REFRESH_S."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keys: dict[str, ActiveKey] | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    async def lookup(self, presented: str) -> tuple[str, ActiveKey] | None:
        """(key id, key) of a valid key, or None for any unknown, malformed or revoked key."""
        await self._refresh()
        parsed = parse_key(presented)
        if parsed is None or self._keys is None:
            return None
        found = self._keys.get(parsed[0])
        if found is None or not secret_matches(parsed[1], found.secret_sha256):
            return None
        return parsed[0], found

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < KEY_REFRESH_S:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < KEY_REFRESH_S:
                return
            import asyncpg

            try:
                conn = await asyncpg.connect(self._settings.postgres_dsn(), timeout=5)
                try:
                    self._keys = await active_keys(conn)
                finally:
                    await conn.close()
                self._loaded_at = time.monotonic()
            except Exception as exc:  # keep the last good keys; unknown until first load
                log.warning("API keys not refreshed: %s", type(exc).__name__)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key", "")


async def _registry_aliases(settings: Settings) -> list[dict[str, str]]:
    import asyncpg

    conn = await asyncpg.connect(settings.postgres_dsn(), timeout=5)
    try:
        rows = await conn.fetch("SELECT alias, version FROM model_aliases ORDER BY alias")
    finally:
        await conn.close()
    return [{"version": r["version"], "role": r["alias"]} for r in rows]


def validation_errors(exc: ValidationError, limit: int = 20) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where, and what is wrong. At most `limit` of them, and a
    body key named in a location cut short, so a 422 never echoes the request back."""
    errors = [
        {
            "loc": [p[:64] if isinstance(p, str) else p for p in e.get("loc", ())],
            "msg": e.get("msg", "")[:256],
            "type": e.get("type", ""),
        }
        for e in exc.errors(include_url=False, include_input=False, include_context=False)[:limit]
    ]
    if exc.error_count() > limit:
        more = f"and {exc.error_count() - limit} more errors"
        errors.append({"loc": [], "msg": more, "type": "too_many_errors"})
    return errors


def read_wfdb_upload(header: bytes, signal: bytes) -> tuple[np.ndarray, float, list[str]]:
    """A WFDB record from its two files, as float32 millivolts (the stream's conversion)."""
    import wfdb

    from ecgstream.signal.units import adc_to_millivolts

    try:
        text = header.decode("ascii")
    except UnicodeDecodeError:
        raise HTTPException(422, "the header file is not a WFDB header (not ASCII)") from None
    first = text.split()
    if not first:
        raise HTTPException(422, "the header file is empty")
    name = first[0].split("/")[0]
    if len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise HTTPException(422, "the header names no valid record")
    with tempfile.TemporaryDirectory(prefix="ecgstream-upload-") as tmp:
        (Path(tmp) / f"{name}.hea").write_bytes(header)
        try:
            info = wfdb.rdheader(str(Path(tmp) / name))
            files = set(info.file_name or [])
            if len(files) != 1:
                raise HTTPException(422, "the record must have exactly one signal file")
            data_name = files.pop()
            if Path(data_name).name != data_name or data_name.startswith("."):
                raise HTTPException(422, "the signal file name must be a plain file name")
            # the header's claims before reading: it may announce more samples than were sent,
            # and reading allocates them all
            fs = float(info.fs)
            if not MIN_FS <= fs <= MAX_FS:
                raise HTTPException(422, f"fs {fs:g} Hz outside {MIN_FS:g}-{MAX_FS:g}")
            if not 1 <= info.n_sig <= MAX_LEADS:
                raise HTTPException(422, f"{info.n_sig} leads; allowed 1-{MAX_LEADS}")
            if (info.sig_len or 0) / fs > MAX_SECONDS:
                raise HTTPException(422, f"record is over {MAX_SECONDS:g} s")
            (Path(tmp) / data_name).write_bytes(signal)
            record = wfdb.rdrecord(str(Path(tmp) / name), physical=False)
        except HTTPException:
            raise
        except Exception as exc:  # wfdb raises many kinds on bad input
            raise HTTPException(422, f"not a readable WFDB record: {type(exc).__name__}") from None
    n = record.d_signal.shape[0]
    if not MIN_SECONDS <= n / fs <= MAX_SECONDS:
        raise HTTPException(
            422, f"record is {n / fs:.1f} s; allowed {MIN_SECONDS:g}-{MAX_SECONDS:g}"
        )
    with np.errstate(all="ignore"):  # a tiny or infinite gain is refused just below
        x = adc_to_millivolts(record.d_signal.T, record.adc_gain, record.baseline)
    if not (np.isfinite(record.adc_gain).all() and np.isfinite(x).all()):
        raise HTTPException(422, "the ADC gains give no finite millivolts")
    return x, fs, list(record.sig_name)


# everything the routes use is defined above this class: `serve.ingress` pickles the app
# (and what its functions refer to) when the decorator runs
@serve.deployment(name="ApiIngress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class ApiIngress:
    def __init__(
        self, model_dir: str | None = None, settings_json: str | None = None, replicas: int = 1
    ) -> None:
        import torch

        self._settings = Settings.from_json(settings_json) if settings_json else Settings()
        torch.set_num_threads(1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # the model runs here, not behind another deployment: a Serve hop costs more on a small
        # machine than classifying a segment's few dozen beats; the production lane's model
        # directory keeps it equal to the stream's model across promotions
        self._model = FollowedModel("production", replica_name(), model_dir, device)
        self._keys = KeyCache(self._settings)
        self._budgets = RateLimiter(share=1.0 / max(1, replicas))
        # one worker thread per replica: segments are classified one at a time, so a burst
        # queues in the event loop instead of oversubscribing the cores
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="classify")

    async def _authorize(self, request: Request) -> None:
        """Before the body is read: an anonymous caller learns nothing about what a valid
        request looks like."""
        found = await self._keys.lookup(bearer_token(request))
        if found is None:
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        key_id, key = found
        if "classify" not in key.scopes:
            raise HTTPException(403, "this key may not classify")
        budget = self._settings.api
        wait_s = self._budgets.acquire(
            key_id, key.requests_per_minute or budget.requests_per_minute, budget.burst
        )
        if wait_s > 0:
            raise HTTPException(
                429,
                "this key's request budget is spent; retry later",
                headers={"Retry-After": retry_after_header(wait_s)},
            )

    async def _classify(self, x_mv: np.ndarray, fs: float, leads: list[str]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._worker, classify_segment, self._model.artifact, x_mv, fs, leads
            )
        except ValueError as exc:  # no usable lead
            raise HTTPException(422, str(exc)) from None

    @api.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses={413: {"model": ErrorResponse}, 422: {"description": "outside the limits"}},
        summary=f"Classify a segment: {MIN_FS:g}-{MAX_FS:g} Hz, 1-{MAX_LEADS} leads, "
        f"{MIN_SECONDS:g}-{MAX_SECONDS:g} s, millivolts",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SegmentRequest.model_json_schema()}},
            }
        },
    )
    async def classify(self, request: Request) -> dict[str, Any]:
        await self._authorize(request)
        try:
            segment = SegmentRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise HTTPException(422, validation_errors(exc)) from None
        x = np.asarray(segment.samples, dtype=np.float32)
        return await self._classify(x, segment.fs, list(segment.leads))

    @api.post(
        "/v1/classify/wfdb",
        response_model=ClassifyResponse,
        responses={413: {"model": ErrorResponse}, 422: {"description": "not a usable record"}},
        summary="Classify an uploaded WFDB record (header .hea and signal .dat)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["header", "signal"],
                            "properties": {
                                "header": {"type": "string", "format": "binary"},
                                "signal": {"type": "string", "format": "binary"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def classify_wfdb(self, request: Request) -> dict[str, Any]:
        await self._authorize(request)
        try:
            form = await request.form(max_files=2, max_fields=2)
        except Exception:
            raise HTTPException(
                422, "expected multipart/form-data with header and signal"
            ) from None
        header, signal = form.get("header"), form.get("signal")
        if not isinstance(header, UploadFile) or not isinstance(signal, UploadFile):
            raise HTTPException(422, "both files are needed: header (.hea) and signal (.dat)")
        x, fs, leads = await asyncio.to_thread(
            read_wfdb_upload, await header.read(), await signal.read()
        )
        return await self._classify(x, fs, leads)

    @api.get("/v1/models", response_model=ModelsResponse)
    async def models(self, request: Request) -> dict[str, Any]:
        await self._authorize(request)
        serving = self._model.version
        models = [{"version": serving, "role": "serving"}]
        with contextlib.suppress(Exception):
            models += await _registry_aliases(self._settings)
        return {"serving": serving, "models": [ModelInfo(**m) for m in models]}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(self) -> Any:
        await self._keys._refresh()
        if not self._keys.loaded:
            return JSONResponse({"detail": "API keys not loaded"}, status_code=503)
        return {"status": "ready", "model_version": self._model.version}


def build_api(
    settings_json: str | None = None, model_dir: str | None = None, replicas: int = 1
) -> Any:
    """The API application: ingress replicas that each run the production model."""
    return ApiIngress.options(num_replicas=replicas).bind(model_dir, settings_json, replicas)  # type: ignore[attr-defined]


def app_builder(args: dict[str, str]) -> Any:
    """For `serve run` / `serve deploy` with serve_app/serve-config.yaml (settings from the
    ECGSTREAM_* environment of the replicas)."""
    return build_api(None, args.get("model_dir") or None, int(args.get("replicas") or 1))
