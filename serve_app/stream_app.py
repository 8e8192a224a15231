"""The consumer pool as a Serve application, for a RayService (k8s/base/rayservice.yaml).

On Kubernetes the Ray cluster's lifetime is the RayService's: an upgrade starts a new cluster
and deletes the old one, and with it every detached actor. So the pool is started from inside
the cluster by this one-replica deployment: it starts the monitor and the coordinator (which
starts and supervises the consumers), and its health check fails when the coordinator is gone,
so Serve restarts it and it starts them again. Kafka's consumer group hands the partitions
over; offsets are committed only after outputs are durable, so nothing is lost, and the
idempotent keys absorb what is redone.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from actors.naming import namespace
from ecgstream.settings import Settings

APP_NAME = "ecgstream-stream"


@serve.deployment(
    name="StreamSupervisor",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=30,
    health_check_timeout_s=60,
)
class StreamSupervisor:
    def __init__(self, consumers: int, model_dir: str | None = None) -> None:
        from actors.pipeline import start_consumer_pool

        self._settings = Settings()
        self._consumers = consumers
        # Serve runs constructors inside its event loop; the pool's start runs its own
        with ThreadPoolExecutor(1) as pool:
            self.started = pool.submit(
                start_consumer_pool, self._settings, consumers, model_dir
            ).result()

    def check_health(self) -> None:
        import ray

        from actors.coordinator import COORDINATOR_NAME

        ray.get_actor(
            COORDINATOR_NAME, namespace=namespace()
        )  # raises when the coordinator is gone

    async def __call__(self) -> dict[str, Any]:
        return {"consumers": self._consumers}


def app_builder(args: dict[str, str]) -> Any:
    """`import_path: serve_app.stream_app:app_builder`, args `consumers` and `model_dir`."""
    return StreamSupervisor.bind(int(args.get("consumers") or 2), args.get("model_dir") or None)  # type: ignore[attr-defined]
