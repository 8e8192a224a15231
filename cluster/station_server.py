"""The central station as a process of the local stack (`ecgstream station up | down | status`):
`ecgstream station serve` started detached, with HTTPS on a secure stack (a certificate from
the stack's CA), ready when `/healthz` says so."""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path

from cluster._process import ManagedProcess, ensure_ports_free, probe_status, wait_until
from cluster._tls import CertificateAuthority
from cluster.state import ComponentStatus, StatePaths
from ecgstream.settings import Settings

MARKER = "station serve"


class StationServer:
    name = "station"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        paths = StatePaths(settings.state_dir)
        self.process = ManagedProcess(
            name=self.name,
            pid_file=paths.pid_file(self.name),
            log_file=paths.log_file(self.name),
            marker=MARKER,
        )

    @property
    def https(self) -> bool:
        return self._settings.local_secure or self._settings.station.tls_cert_file is not None

    @property
    def url(self) -> str:
        station = self._settings.station
        host = "127.0.0.1" if station.host in ("0.0.0.0", "::") else station.host
        return f"{'https' if self.https else 'http'}://{host}:{station.port}"

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        ensure_ports_free(self.name, {"station.port": self._settings.station.port})
        env = dict(os.environ)
        env["ECGSTREAM_STATE_DIR"] = str(self._settings.state_dir)
        if self._settings.local_secure and self._settings.station.tls_cert_file is None:
            pair = (
                CertificateAuthority(self._settings.tls_dir).ensure().issue("station", server=True)
            )
            env["ECGSTREAM_STATION__TLS_CERT_FILE"] = str(pair.cert)
            env["ECGSTREAM_STATION__TLS_KEY_FILE"] = str(pair.key)
        command = Path(sys.executable).with_name("ecgstream")
        self.process.start([str(command), *MARKER.split()], env=env)

    def wait_ready(self) -> None:
        wait_until(
            self._ready,
            timeout_s=self._settings.local.startup_timeout_s,
            process=self.process,
            what="GET /healthz",
        )

    def _context(self) -> ssl.SSLContext | None:
        if not self.https:
            return None
        ca = self._settings.tls_dir / "ca.pem"
        return ssl.create_default_context(cafile=str(ca) if ca.exists() else None)

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=3, context=self._context()) as r:
            return bool(json.loads(r.read())["status"] == "ok")

    def stop(self) -> bool:
        return self.process.stop()

    def status(self) -> ComponentStatus:
        return probe_status(
            self.process, self.url, self._ready, ok="/healthz ok", failed="not ready"
        )
