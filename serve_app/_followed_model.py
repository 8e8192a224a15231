"""The model a Serve replica runs, kept equal to what the model directory says its lane runs.

Shared by the beat classifier (the stream's lanes) and the REST API's ingress, so a promotion
switches both the same way: the replica asks the directory at start and about once a second,
loads a new target beside the current model, swaps them in one assignment (a request uses the
old or the new model, never a mix) and acknowledges. `release promote` waits for every ack.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.naming import namespace
from ecgstream.artifact import ModelArtifact, load_artifact

if TYPE_CHECKING:
    from actors.model_directory import ModelTarget

log = logging.getLogger("ecgstream.serve")

POLL_S = 1.0  # how often a replica asks the model directory what it should run


class FollowedModel:
    def __init__(self, lane: str, replica: str, model_dir: str | None, device: str) -> None:
        self._lane = lane
        self._replica = replica
        self._device = device
        self._directory: Any = None  # the model directory's actor handle, looked up when needed
        # a replica that (re)starts after a promotion loads the promoted model, not its argument
        target = self._ask_directory(None)
        self.artifact: ModelArtifact = self._load(
            target.model_dir if target is not None else model_dir
        )
        self._stop = threading.Event()
        threading.Thread(target=self._follow, daemon=True, name="model-poll").start()

    @property
    def version(self) -> str:
        return self.artifact.version

    def stop(self) -> None:
        self._stop.set()

    def _load(self, model_dir: str | None) -> ModelArtifact:
        artifact = load_artifact(Path(model_dir) if model_dir else None)
        artifact.model.to(self._device)
        return artifact

    def _ask_directory(self, version: str | None) -> ModelTarget | None:
        import ray

        from actors.model_directory import MODEL_DIRECTORY_NAME

        try:
            if self._directory is None:
                self._directory = ray.get_actor(MODEL_DIRECTORY_NAME, namespace=namespace())
            return ray.get(
                self._directory.report.remote(self._lane, self._replica, version or ""), timeout=5
            )
        except Exception:  # not there (yet), or restarted: look it up again next time
            self._directory = None
            return None

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            target = self._ask_directory(self.artifact.version)
            if target is None or target.version == self.artifact.version:
                continue
            try:
                loaded = self._load(target.model_dir)
            except Exception as exc:  # keep serving the current model; the promoter times out
                log.error("cannot load %s: %s", target.version, exc)
                continue
            if loaded.version != target.version:
                log.error("%s holds %s, not %s", target.model_dir, loaded.version, target.version)
                continue
            self.artifact = loaded  # one assignment: a request uses the old or the new model
            self._ask_directory(loaded.version)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stop.set()


def replica_name() -> str:
    from ray import serve

    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside Serve (unit tests)
        return f"local-{id(threading.current_thread())}"
