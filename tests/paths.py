"""Where the repository is, for tests that read its files (manifests, docs, results)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
