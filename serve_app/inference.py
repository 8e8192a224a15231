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

from dataclasses import dataclass

import numpy as np
from ray import serve

from serve_app.followed_model import FollowedModel, replica_name

APP_NAME = "ecgstream-inference"
DEPLOYMENT_NAME = "BeatClassifier"
FORWARD_BATCH = 256


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
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = FollowedModel(lane, replica_name(), model_dir, self._device)
        self.batch_sizes: list[int] = []

    def model_version(self) -> str:
        return self._model.version

    def rss_mb(self) -> float:
        """Peak resident memory of this replica (infravalidation holds it to a budget)."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def __call__(self, batch: BeatBatch) -> Classified:
        return await self.classify(batch)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def classify(self, batches: list[BeatBatch]) -> list[Classified]:
        import torch

        artifact = self._model.artifact  # the same model for the whole batch, even during a swap
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


def build_app(
    model_dir: str | None = None, replicas: int = 1, lane: str = "production", gpus: float = 0.0
) -> serve.Application:
    """The inference application of a lane; `model_dir` None means the shipped default model.
    `gpus` > 0 places each replica on a GPU (the model then runs there)."""
    from actors.lanes import lane as lane_named

    return BeatClassifierDeployment.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": lane_named(lane).actor_cpus, "num_gpus": gpus},
    ).bind(model_dir, 1, lane)


def app_builder(args: dict[str, str]) -> serve.Application:
    """For a Serve config (a RayService's serveConfigV2): args `model_dir`, `replicas`, `gpus`;
    always the production lane (the release tools deploy the others)."""
    return build_app(
        args.get("model_dir") or None,
        int(args.get("replicas") or 1),
        "production",
        float(args.get("gpus") or 0),
    )
