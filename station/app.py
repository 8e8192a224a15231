"""The station's web server (FastAPI on uvicorn): the page, its live feed (Server-Sent Events),
the bed detail and the alarm actions, all behind a login.

Routes:
- `GET /login`, `POST /login` (form field `key`: an API key with the `station` or
  `station-view` scope), `GET /login/once?token=...` (a one-time link), `POST /logout`;
- `GET /` the ward page, `GET /api/events` (SSE: a snapshot, then ticks every
  `push_interval_s`), `GET /api/ward` (the snapshot once), `GET /api/beds/{bed}`;
- `POST /api/alarms/{alarm_id}/acknowledge`, `POST /api/alarms/{alarm_id}/silence`
  (`{"seconds": 60}`): the `station` scope and the header `X-Station-Request: 1` (a page of
  another site cannot send it, and the cookie is SameSite=Strict);
- `GET /api/status` (counters, no patient data), `GET /healthz` (unauthenticated, says only
  "ok").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ecgstream.errors import ConfigurationError
from ecgstream.io.station_store import bed_history, redeem_login_token
from ecgstream.settings import Settings
from ecgstream.ward.alarm_board import AlarmAction, AlarmActionError
from station._service import RESYNC, StationService
from station._sessions import COOKIE, Session, Sessions

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
VENDOR_FILES = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")
ACTION_HEADER = "x-station-request"


class Silence(BaseModel):
    seconds: float = Field(gt=0)


def check_assets() -> None:
    missing = [name for name in VENDOR_FILES if not (STATIC / name).exists()]
    if missing:
        raise ConfigurationError(
            f"the station's front-end files are missing ({', '.join(missing)}): run "
            "`make setup` (scripts/ensure-station-assets.sh installs them with npm)"
        )


def build_app(settings: Settings) -> FastAPI:
    check_assets()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=4)
        service = StationService(settings, pool)
        await service.start()
        state.update(service=service, sessions=Sessions(pool, settings.station.session_idle_s))
        try:
            yield
        finally:
            await service.stop()
            await pool.close()

    app = FastAPI(
        title="ecgstream central station",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    secure = settings.local_secure or settings.station.tls_cert_file is not None

    def service() -> StationService:
        return state["service"]

    async def session_of(request: Request) -> Session | None:
        return await state["sessions"].get(request.cookies.get(COOKIE))

    async def require(request: Request, act: bool = False) -> Session:
        session = await session_of(request)
        if session is None:
            raise HTTPException(401, "log in first")
        if act:
            if request.headers.get(ACTION_HEADER) != "1":
                raise HTTPException(403, f"missing header {ACTION_HEADER}")
            if not session.may_act:
                raise HTTPException(403, "this login may view, not act (scope station-view)")
        return session

    def logged_in(token: str) -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure,
            max_age=int(settings.station.session_idle_s),
        )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok" if state.get("service") and service().ready.is_set() else "starting"}

    @app.get("/login")
    async def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html")

    @app.post("/login")
    async def login(key: str = Form(...)) -> Any:
        token = await state["sessions"].login_with_key(key)
        if token is None:
            await asyncio.sleep(0.5)  # slows guessing; the keys have 256 bits anyway
            return RedirectResponse("/login?refused=1", status_code=303)
        return logged_in(token)

    @app.get("/login/once")
    async def login_once(token: str) -> Any:
        key_id = await redeem_login_token(service().pool, token)
        opened = await state["sessions"].login_with_key_id(key_id) if key_id else None
        if opened is None:
            await asyncio.sleep(0.5)
            return RedirectResponse("/login?refused=1", status_code=303)
        return logged_in(opened)

    @app.post("/logout")
    async def logout(request: Request) -> RedirectResponse:
        state["sessions"].end(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    async def page(request: Request) -> Any:
        if await session_of(request) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "index.html")

    @app.get("/api/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        session = await require(request)
        return {"name": session.name, "may_act": session.may_act, "ward": settings.station.ward}

    @app.get("/api/ward")
    async def ward(request: Request) -> dict[str, Any]:
        await require(request)
        return service().snapshot()

    @app.get("/api/events")
    async def events(request: Request) -> StreamingResponse:
        await require(request)
        station = service()

        async def stream() -> AsyncIterator[str]:
            queue = station.subscribe()
            try:
                yield f"data: {json.dumps(station.snapshot(), separators=(',', ':'))}\n\n"
                while True:
                    try:
                        text = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if text == RESYNC:
                        text = json.dumps(station.snapshot(), separators=(",", ":"))
                    yield f"data: {text}\n\n"
            finally:
                station.unsubscribe(queue)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/beds/{bed}")
    async def bed(bed: str, request: Request) -> dict[str, Any]:
        await require(request)
        station = service()
        if bed not in station.ward.beds:
            raise HTTPException(404, "no such bed")
        now = time.time()
        return {
            **station.bed_summary(bed, now),
            "strip": station.ward.beds[bed].strip(station.ward.rules.keep_s),
            "alarms": [a.view(now, station.board.rules) for a in station.board.of_bed(bed)],
            "history": station.bed_history(bed, await bed_history(station.pool, bed)),
        }

    @app.post("/api/alarms/{alarm_id}/acknowledge")
    async def acknowledge(alarm_id: str, request: Request) -> dict[str, Any]:
        session = await require(request, act=True)
        station = service()
        try:
            action = station.board.acknowledgement(alarm_id, session.name, time.time())
        except AlarmActionError as exc:
            raise HTTPException(409, str(exc)) from None
        await _recorded(station, action, session.key_id)
        return _alarm_view(station, alarm_id)

    @app.post("/api/alarms/{alarm_id}/silence")
    async def silence(alarm_id: str, body: Silence, request: Request) -> dict[str, Any]:
        session = await require(request, act=True)
        station = service()
        try:
            action = station.board.silencing(alarm_id, session.name, body.seconds, time.time())
        except AlarmActionError as exc:
            raise HTTPException(409, str(exc)) from None
        await _recorded(station, action, session.key_id)
        return _alarm_view(station, alarm_id)

    @app.get("/api/status")
    async def status(request: Request) -> dict[str, Any]:
        await require(request)
        station = service()
        return {
            "beds": len(station.ward.beds),
            "alarms_known": len(station.board),
            **station.counters.view(),
        }

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app


async def _recorded(station: StationService, action: AlarmAction, key_id: str) -> None:
    """The action, once the audit trail has it; if the database cannot take it, nothing
    changes and the nurse is told so (503), rather than an acknowledgement nobody recorded."""
    try:
        await station.act(action, key_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("an alarm action was not recorded (%s); nothing changed", type(exc).__name__)
        raise HTTPException(503, "the audit trail is unavailable: nothing was changed") from None


def _alarm_view(station: StationService, alarm_id: str) -> dict[str, Any]:
    alarm = station.board.get(alarm_id)
    assert alarm is not None  # the board refused unknown alarms before
    return alarm.view(time.time(), station.board.rules)


def serve(settings: Settings) -> None:
    """Run the station in the foreground (what `ecgstream station serve` and the Kubernetes
    Deployment run); HTTPS when a certificate is configured."""
    import uvicorn

    station = settings.station
    tls: dict[str, Any] = {}
    if station.tls_cert_file is not None:
        if station.tls_key_file is None:
            raise ConfigurationError("ECGSTREAM_STATION__TLS_CERT_FILE needs TLS_KEY_FILE too")
        tls = {"ssl_certfile": str(station.tls_cert_file), "ssl_keyfile": str(station.tls_key_file)}
    config = uvicorn.Config(
        build_app(settings),
        host=station.host,
        port=station.port,
        log_level="info",
        access_log=False,  # URLs name beds and alarm ids: not in the logs
        **tls,
    )
    asyncio.run(uvicorn.Server(config).serve())
