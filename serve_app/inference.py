"""The Ray Serve deployment that classifies beats.

Callers send *many beats per request* (a consumer's whole poll batch): on a 2-core machine a
Serve request costs milliseconds of fixed overhead, so one request per beat would waste most of
the model's capacity. `@serve.batch` then merges concurrent requests from several consumers into
one forward pass.

Which model a replica runs is decided by the model directory (`actors/model_directory.py`): the
replica asks it at start and then about once a second, and swaps models between requests, so a
promotion needs no redeploy and has no gap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray import serve

from ecgstream.artifact import ModelArtifact, load_artifact

log = logging.getLogger("ecgstream.serve")

APP_NAME = "ecgstream-inference"
DEPLOYMENT_NAME = "BeatClassifier"
FORWARD_BATCH = 256
POLL_S = 1.0  # how often a replica asks the model directory what it should run


@dataclass(frozen=True)
class BeatBatch:
    windows: np.ndarray  # float32 (n, 2, 256)
    rr: np.ndarray  # float32 (n, n_rr)


@dataclass(frozen=True)
class Classified:
    probabilities: np.ndarray  # float32 (n, n_classes)
    classes: tuple[str, ...]
    model_version: str
    batch_beats: int = 0  # beats in the forward batch this request was merged into


@serve.deployment(
    name=DEPLOYMENT_NAME,
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 0.5},
)
class BeatClassifierDeployment:
    def __init__(
        self, model_dir: str | None = None, threads: int = 1, lane: str = "production"
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self._lane = lane
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._replica = _replica_name()
        self._directory = None  # the model directory's handle, looked up when needed
        self.batch_sizes: list[int] = []
        # a replica that (re)starts after a promotion loads the promoted model, not its argument
        target = self._ask_directory(None)
        self._artifact = self._load(target.model_dir if target is not None else model_dir)
        self._stop = threading.Event()
        threading.Thread(target=self._follow_directory, daemon=True, name="model-poll").start()

    def _load(self, model_dir: str | None) -> ModelArtifact:
        artifact = load_artifact(Path(model_dir) if model_dir else None)
        artifact.model.to(self._device)
        return artifact

    def _ask_directory(self, version: str | None) -> object | None:
        import ray

        from actors.model_directory import MODEL_DIRECTORY_NAME

        try:
            if self._directory is None:
                self._directory = ray.get_actor(MODEL_DIRECTORY_NAME)
            return ray.get(
                self._directory.report.remote(self._lane, self._replica, version or ""), timeout=5
            )
        except Exception:  # not there (yet), or restarted: look it up again next time
            self._directory = None
            return None

    def _follow_directory(self) -> None:
        while not self._stop.wait(POLL_S):
            target = self._ask_directory(self._artifact.version)
            if target is None or target.version == self._artifact.version:
                continue
            try:
                loaded = self._load(target.model_dir)
            except Exception as exc:  # keep serving the current model; the promoter times out
                log.error("cannot load %s: %s", target.version, exc)
                continue
            if loaded.version != target.version:
                log.error("%s holds %s, not %s", target.model_dir, loaded.version, target.version)
                continue
            self._artifact = loaded  # one assignment: a batch uses the old or the new model
            self._ask_directory(loaded.version)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stop.set()

    def model_version(self) -> str:
        return self._artifact.version

    def rss_mb(self) -> float:
        """Peak resident memory of this replica (infravalidation holds it to a budget)."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def __call__(self, batch: BeatBatch) -> Classified:
        return await self.classify(batch)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def classify(self, batches: list[BeatBatch]) -> list[Classified]:
        import torch

        artifact = self._artifact  # the same model for the whole batch, even during a swap
        sizes = [len(b.windows) for b in batches]
        windows = np.concatenate([b.windows for b in batches])
        rr = np.concatenate([b.rr for b in batches])
        parts = []
        with torch.inference_mode():
            # forward passes of FORWARD_BATCH beats: on a CPU a few thousand beats at once
            # spill the caches and run ~30 % slower per beat than a few hundred
            for begin in range(0, len(windows), FORWARD_BATCH):
                logits = artifact.model(
                    torch.from_numpy(windows[begin : begin + FORWARD_BATCH]).to(self._device),
                    torch.from_numpy(rr[begin : begin + FORWARD_BATCH]).to(self._device),
                )
                parts.append(torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32))
        proba = np.concatenate(parts) if parts else np.zeros((0, len(artifact.classes)))
        self.batch_sizes.append(int(windows.shape[0]))
        del self.batch_sizes[:-1000]
        out, begin = [], 0
        for size in sizes:
            out.append(
                Classified(
                    proba[begin : begin + size],
                    artifact.classes,
                    artifact.version,
                    int(windows.shape[0]),
                )
            )
            begin += size
        return out


def _replica_name() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # outside Serve (unit tests)
        return f"local-{id(threading.current_thread())}"


def build_app(
    model_dir: str | None = None, replicas: int = 1, lane: str = "production"
) -> serve.Application:
    """The inference application of a lane; `model_dir` None means the shipped default model."""
    from actors.lanes import lane as lane_named

    return BeatClassifierDeployment.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": lane_named(lane).actor_cpus},
    ).bind(model_dir, 1, lane)
