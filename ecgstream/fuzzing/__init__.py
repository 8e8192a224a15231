"""Fuzzing of what the platform parses from outside: the wire format and the REST API's requests.

Each target is a plain function (`checks`) that returns the rejection reason of one input, or
None when the input was accepted, and raises `FuzzBugError` when the code under test misbehaves: an
exception that is not the clear rejection, an accepted input that breaks an invariant, or a
rejection that echoes more than a bounded amount of the input. `runner.run_fuzz` drives every
target with hypothesis (and with atheris where it is installed) for a time budget; the unit tests
run the same targets with a fixed example count.

Lives under `tools` because the API targets import `serve_app` (and so ray), which domain code
may not (tests/unit/test_architecture.py).
"""

__all__ = [  # the public modules; others are private by their leading underscore
    "runner",
]
