"""The local Ray head: a driver attaches by address and an actor answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray

from ecgstream.settings import Settings


@pytest.fixture(scope="module")
def ray_session(settings: Settings) -> Iterator[None]:
    ray.init(address=settings.ray_address, namespace="pytest", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0.1)
class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, amount: int) -> int:
        self.value += amount
        return self.value


def test_actor_round_trip(ray_session: None, settings: Settings) -> None:
    counter = Counter.remote(10)
    assert ray.get(counter.add.remote(5), timeout=60) == 15
    assert ray.get(counter.add.remote(-3), timeout=60) == 12
    resources = ray.cluster_resources()
    assert resources["CPU"] == settings.local.ray_num_cpus
    ray.kill(counter)


def test_actor_sees_the_project_code(ray_session: None) -> None:
    @ray.remote(num_cpus=0.1)
    def decode_in_worker(payload: bytes) -> int:
        from ecgstream.wire import decode_chunk

        return decode_chunk(payload).n_samples

    import numpy as np

    from ecgstream.wire import encode_chunk, make_chunk

    chunk = make_chunk(
        device_id="d",
        patient_id="p",
        seq=0,
        first_sample=0,
        start_time=0.0,
        fs=360.0,
        lead_names=("MLII",),
        adc_gain=(200.0,),
        adc_baseline=(1024,),
        samples=np.zeros((1, 360), dtype=np.int16),
    )
    assert ray.get(decode_in_worker.remote(encode_chunk(chunk)), timeout=60) == 360
