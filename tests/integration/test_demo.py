"""The demo's path: real MIT-BIH chunks through the real broker, read back unchanged."""

from __future__ import annotations

from ecgstream.settings import Settings
from ecgstream.tools.demo import publish_and_read_back


async def test_real_record_chunks_survive_kafka(settings: Settings) -> None:
    results = await publish_and_read_back(settings, "114", n_chunks=5, device_id="test-dev-114")
    assert [r.seq for r in results] == [0, 1, 2, 3, 4]
    assert all(r.identical for r in results)
    assert all(r.n_samples == 360 for r in results)
    assert len({r.partition for r in results}) == 1  # one device, one partition
