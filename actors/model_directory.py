"""The model directory: which model each lane's Serve replicas should run, and which they do.

Promotion does not redeploy Serve (a redeploy restarts replicas, and with one replica that is a
gap in service). Instead each replica polls this actor about once a second; when its lane's
target changes it loads the new artifact beside the old one, swaps them between two requests,
and acknowledges. `release promote` waits for every replica's acknowledgement, so when it
returns, every later beat carries the new version.

The registry's `production` alias stays the source of truth: if this actor is restarted it is
empty, replicas keep the model they have, and `stream up` / `release promote` set it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray

from actors.naming import namespace

MODEL_DIRECTORY_NAME = "ecgstream-model-directory"
REPLICA_TTL_S = 15.0  # a replica silent this long is no longer counted (stopped or dead)


@dataclass(frozen=True)
class ModelTarget:
    version: str
    model_dir: str | None  # None: the shipped default model


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ModelDirectory:
    def __init__(self) -> None:
        self._targets: dict[str, ModelTarget] = {}
        self._loaded: dict[str, dict[str, tuple[str, float]]] = {}  # lane -> replica -> ack

    def set_target(self, lane: str, target: ModelTarget) -> None:
        self._targets[lane] = target

    def target(self, lane: str) -> ModelTarget | None:
        return self._targets.get(lane)

    def report(self, lane: str, replica: str, version: str) -> ModelTarget | None:
        """A replica says what it runs; the answer is what it should run."""
        self._loaded.setdefault(lane, {})[replica] = (version, time.time())
        return self._targets.get(lane)

    def loaded(self, lane: str) -> dict[str, str]:
        """Version per live replica of the lane."""
        now = time.time()
        return {
            replica: version
            for replica, (version, seen) in self._loaded.get(lane, {}).items()
            if now - seen <= REPLICA_TTL_S
        }

    def forget(self, lane: str) -> None:
        self._targets.pop(lane, None)
        self._loaded.pop(lane, None)


def model_directory() -> ray.actor.ActorHandle:
    return ModelDirectory.options(  # type: ignore[attr-defined]
        name=MODEL_DIRECTORY_NAME, namespace=namespace(), lifetime="detached", get_if_exists=True
    ).remote()
