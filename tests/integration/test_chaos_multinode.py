"""A Ray worker node lost mid-replay, on a two-node Ray cluster started on this machine.

`ray.cluster_utils.Cluster` starts a head and a worker node (separate raylets, on loopback);
the pipeline runs on it against the session's Kafka and PostgreSQL, with its consumers spread
over both nodes. The worker node is then killed the way a machine dies: SIGKILL to its raylet
and every process under it, at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.pipeline import coordinator_handle, stream_down, stream_up
from ecgstream.settings import Settings
from tests.integration.pipeline_support import replay_with_fault

pytestmark = pytest.mark.chaos


def _process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [pid] + [p for child in children.stdout.split() for p in _process_tree(int(child))]


def kill_node(node: Any) -> None:
    """SIGKILL the node's raylet and everything it started (workers, agents) at once."""
    found = subprocess.run(["pgrep", "-f", node.raylet_socket_name], capture_output=True, text=True)
    for raylet in found.stdout.split():
        for pid in _process_tree(int(raylet)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_nodes(settings: Settings) -> Iterator[tuple[Settings, Any]]:
    from ray import serve
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # Serve kills an HTTP proxy that is not ready in 5 s, three times in a row; on 2 loaded
    # cores a fresh node's proxy can take longer (CI, 2026-12-02). Its processes inherit this.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    multi = settings.model_copy(
        update={"ray": settings.ray.model_copy(update={"address": cluster.address})}
    )
    try:
        ray.init(address=cluster.address, namespace=multi.ray.namespace, log_to_driver=False)
        # the stack's own Serve may hold the default HTTP port: this cluster's proxy moves
        serve.start(http_options={"host": "127.0.0.1", "port": 8123})
        # the pipeline starts on the head alone (coordinator, monitor, Serve, 2 consumers);
        # then a worker node joins and the pool grows onto it
        stream_up(multi, consumers=2, replicas=1)
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.get(coordinator_handle().scale.remote(4), timeout=300)
        yield multi, worker
    finally:
        try:
            stream_down(multi)
        finally:
            ray.shutdown()
            cluster.shutdown()


async def test_ray_worker_node_killed(two_nodes: tuple[Settings, Any], mitdb_dir: Path) -> None:
    multi, worker = two_nodes
    status = ray.get(coordinator_handle().status.remote(), timeout=120)
    on_worker = {c["name"] for c in status["consumers"] if c.get("node_id") == worker.node_id}
    assert on_worker, status["consumers"]  # SPREAD: the worker node holds consumers
    assert len(on_worker) < len(status["consumers"])  # and so does the head

    prefix = f"nodekill{uuid.uuid4().hex[:6]}"
    try:
        after = await replay_with_fault(
            multi, mitdb_dir, prefix, lambda: kill_node(worker), duration=240, state_kept=False
        )
    finally:  # what the coordinator did, for the failure report
        print(ray.get(coordinator_handle().status.remote(), timeout=120)["events"])
    assert not on_worker & set(after["assignment"])  # the dead node's consumers are gone
    assert all(c.get("node_id") != worker.node_id for c in after["consumers"])
    assigned = sorted(p for ps in after["assignment"].values() for p in ps)
    assert assigned == after["partitions"]  # every partition has a live owner
    assert any("lost" in e for e in after["events"])
