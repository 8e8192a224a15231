"""Clients of the real services (Kafka, PostgreSQL), configured from `Settings`.

The domain modules of `ecgstream` never import these: only actors, tools and the CLI do.
"""
