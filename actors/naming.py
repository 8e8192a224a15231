"""The Ray namespace of ecgstream's named actors (model directory, coordinators, consumers,
monitor), given explicitly wherever one is created or looked up: code running in a Serve
replica (the API, the classifier, the RayService's stream supervisor) runs in Serve's own
namespace, not in the namespace of the driver that deployed it."""

from __future__ import annotations

import functools

from ecgstream.settings import Settings


@functools.cache
def namespace() -> str:
    return Settings().ray.namespace
