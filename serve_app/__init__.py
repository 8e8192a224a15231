"""Ray Serve deployments (runtime): the beat classifier, the REST API, the model they follow;
`stream_app` is the Kubernetes supervisor of the pool (control plane)."""

__all__ = [  # the public modules; others are private by their leading underscore
    "api",
    "inference",
    "stream_app",
]
