"""Operator tools that drive the real services: the demo, the device replay."""
