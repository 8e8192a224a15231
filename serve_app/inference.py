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

from ecgstream.lanes import lane as lane_named
from ecgstream.settings import ClassifierSettings, load_settings
from serve_app._followed_model import FollowedModel, replica_name

DEPLOYMENT_NAME = "BeatClassifier"


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
        self,
        model_dir: str | None = None,
        threads: int = 1,
        lane: str = "production",
        classifier: dict | None = None,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        # the deploying process's settings, else this replica's environment (a RayService pod)
        tuning = ClassifierSettings(**classifier) if classifier else load_settings().classifier
        self._forward_batch = tuning.forward_batch_beats
        self.classify.set_max_batch_size(tuning.max_batch_requests)  # type: ignore[attr-defined]
        self.classify.set_batch_wait_timeout_s(tuning.batch_wait_s)  # type: ignore[attr-defined]
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

    # the sizes are the settings' (set in __init__); these are Serve's until then
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def classify(self, batches: list[BeatBatch]) -> list[Classified]:
        artifact = self._model.artifact  # the same model for the whole batch, even during a swap
        sizes = [len(b.windows) for b in batches]
        windows = np.concatenate([b.windows for b in batches])
        rr = np.concatenate([b.rr for b in batches])
        proba = artifact.predict_proba(windows, rr, batch=self._forward_batch, device=self._device)
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
    model_dir: str | None = None,
    replicas: int | None = 1,
    lane: str = "production",
    gpus: float = 0.0,
    classifier: ClassifierSettings | None = None,
    autoscaling: dict[str, float | int] | None = None,
) -> serve.Application:
    """The inference application of a lane; `model_dir` None means the shipped default model.
    `gpus` > 0 places each replica on a GPU (the model then runs there). `classifier`: the
    batch sizes (default: the replicas' environment). `autoscaling`: Serve's
    `autoscaling_config` (ScalingSettings.classifier_autoscaling) instead of a fixed count;
    `replicas` None leaves the count to a Serve config file's `deployments` entry."""
    options: dict[str, object] = {
        "ray_actor_options": {"num_cpus": lane_named(lane).actor_cpus, "num_gpus": gpus}
    }
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    elif replicas is not None:
        options["num_replicas"] = replicas
    return BeatClassifierDeployment.options(**options).bind(  # type: ignore[attr-defined]
        model_dir, 1, lane, classifier.model_dump() if classifier else None
    )


def app_builder(args: dict[str, str]) -> serve.Application:
    """For a Serve config (a RayService's serveConfigV2): args `model_dir`, `replicas`, `gpus`;
    always the production lane (the release tools deploy the others). Without `replicas` the
    config's `deployments` entry decides (its `autoscaling_config`)."""
    return build_app(
        args.get("model_dir") or None,
        int(args["replicas"]) if args.get("replicas") else None,
        "production",
        float(args.get("gpus") or 0),
    )
