"""`ecgstream bench nodes`: does the capacity model's per-core arithmetic hold when the pipeline
is spread over several Ray nodes? (docs/scaling.md)

Two Ray clusters are started on this machine with `ray.cluster_utils.Cluster`, with the same
logical CPUs, consumers and Serve replicas: one node holding all of them, and N nodes (separate
raylets and object stores, so beats cross node boundaries as on Kubernetes). The same workload
runs through each against the stack's Kafka and PostgreSQL. On this machine all nodes share two
physical cores, so N nodes cannot be faster; what the ratio shows is the price of crossing
nodes, and the placement shows that consumers and replicas spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import ray

from actors.naming import namespace
from ecgstream.benchmarks.pipeline import Workload, pipeline_run
from ecgstream.errors import ConfigurationError
from ecgstream.settings import Settings

CPUS_PER_NODE = 2
SERVE_PORT_OFFSET = 123  # the bench clusters' HTTP proxy, beside the stack's
DASHBOARD_PORT_OFFSET = 100


@contextlib.contextmanager
def _cluster(node_cpus: list[int], settings: Settings) -> Iterator[Settings]:
    from ray import serve
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        # the dashboard serves Ray's state API (placement below), beside the stack's own
        head_node_args={
            "num_cpus": node_cpus[0],
            "include_dashboard": True,
            "dashboard_port": settings.local.ray_dashboard_port + DASHBOARD_PORT_OFFSET,
        },
    )
    for cpus in node_cpus[1:]:
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    spread = settings.model_copy(
        update={"ray": settings.ray.model_copy(update={"address": cluster.address})}
    )
    try:
        ray.init(address=cluster.address, namespace=spread.ray.namespace, log_to_driver=False)
        port = settings.local.serve_http_port + SERVE_PORT_OFFSET
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield spread
    finally:
        with contextlib.suppress(Exception):
            from actors.pipeline import stream_down

            stream_down(spread)
        ray.shutdown()
        cluster.shutdown()


def _placement(coordinator: Any) -> dict[str, Any]:
    """Consumers and classifier replicas per node (node ids shortened)."""
    from ray.util.state import list_actors

    status = ray.get(coordinator.status.remote(), timeout=120)
    consumers = Counter((c.get("node_id") or "?")[:8] for c in status["consumers"])
    address = ray.get_runtime_context().gcs_address
    replicas = Counter(
        (a.node_id or "?")[:8]
        for a in list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name.startswith("ServeReplica:ecgstream-inference")
    )
    return {"consumers_per_node": dict(consumers), "replicas_per_node": dict(replicas)}


def _stack_pipeline_running(settings: Settings) -> bool:
    from actors.coordinator import COORDINATOR_NAME
    from actors.pipeline import connect

    connect(settings)
    try:
        ray.get_actor(COORDINATOR_NAME, namespace=namespace())
        return True
    except ValueError:
        return False
    finally:
        ray.shutdown()


def bench_nodes(
    settings: Settings,
    workload: Workload,
    nodes: int = 3,
    consumers: int = 3,
    replicas: int = 3,
    repeats: int = 2,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    from actors.pipeline import coordinator_handle, stream_up

    if _stack_pipeline_running(settings):
        raise ConfigurationError(
            "the stack's pipeline is running and would share the consumer group: "
            "`ecgstream stream down` first"
        )
    layouts = {"one_node": [CPUS_PER_NODE * nodes], "nodes": [CPUS_PER_NODE] * nodes}
    out: dict[str, Any] = {}
    for name, node_cpus in layouts.items():
        on_step(f"{name}: starting {len(node_cpus)} node(s)")
        with _cluster(node_cpus, settings) as spread:
            stream_up(spread, consumers=consumers, replicas=replicas)
            coordinator = coordinator_handle()
            runs = []
            for repeat in range(repeats):
                on_step(f"{name}: run {repeat + 1}/{repeats}")
                prefix = f"bnodes{uuid.uuid4().hex[:6]}"
                runs.append(asyncio.run(pipeline_run(spread, workload, prefix, coordinator)))
            out[name] = {
                "node_cpus": node_cpus,
                "beats_per_s": round(float(np.median([r["beats_per_s"] for r in runs])), 1),
                "lost": sum(r["lost"] for r in runs),
                "duplicates": sum(r["duplicates"] for r in runs),
                "runs": runs,
                **_placement(coordinator),
            }
    single, spread_rate = out["one_node"]["beats_per_s"], out["nodes"]["beats_per_s"]
    return {
        "nodes": nodes,
        "consumers": consumers,
        "replicas": replicas,
        "one_node_beats_per_s": single,
        "nodes_beats_per_s": spread_rate,
        "nodes_vs_one_node": round(spread_rate / single, 3) if single else None,
        "lost": out["one_node"]["lost"] + out["nodes"]["lost"],
        "duplicates": out["one_node"]["duplicates"] + out["nodes"]["duplicates"],
        "workload": {
            "records": list(workload.records),
            "patients": workload.patients,
            "seconds_per_patient": workload.duration_s,
        },
        "details": out,
    }
