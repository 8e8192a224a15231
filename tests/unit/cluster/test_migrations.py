from __future__ import annotations

from cluster.migrate import load_migrations


def test_migrations_are_numbered_without_gaps_and_have_sql() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all("CREATE" in m.sql.upper() or "ALTER" in m.sql.upper() for m in migrations)
    assert len({m.checksum for m in migrations}) == len(migrations)
