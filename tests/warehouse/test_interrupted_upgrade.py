"""An upgrade interrupted half-way (Ctrl-C, a killed task) leaves the warehouse at the last
migration it finished, never half of one: the next ``db upgrade`` completes it. On SQLite the
driver commits before each DDL statement unless the migration runs in a transaction it holds,
and a half-made migration then failed every later upgrade ("table ... already exists")."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, event, text

from agent_billing.warehouse import connect_warehouse, upgrade
from agent_billing.warehouse.migrate import alembic_config, current_revision, head_revision


def schema(engine) -> list[tuple]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")).all()
        return conn.execute(text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2")).all()


# from 0016, of its first 16 statements: in 0017, at the start and the middle of 0018; from
# 0019: in the middle of 0020 (its column dropped, a view made again)
@pytest.mark.parametrize(("base", "cut_at"), [("0016", 6), ("0016", 9), ("0016", 13), ("0019", 5)])
def test_an_upgrade_interrupted_half_way_is_completed_by_the_next(warehouse_url, tmp_path, base, cut_at):
    engine = connect_warehouse(warehouse_url)
    command.downgrade(alembic_config(engine), base)
    statements = {"n": 0}

    def interrupt(conn, cursor, statement, *args):
        statements["n"] += 1
        if statements["n"] == cut_at:
            raise KeyboardInterrupt  # what SIGINT raises

    event.listen(Engine, "before_cursor_execute", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            upgrade(engine)
    finally:
        event.remove(Engine, "before_cursor_execute", interrupt)

    assert current_revision(engine) in (base, f"{int(base) + 1:04d}")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    reference = connect_warehouse(f"sqlite:///{tmp_path / 'reference.db'}") if engine.dialect.name == "sqlite" else None
    if reference is not None:
        upgrade(reference)
        assert schema(engine) == schema(reference)
        reference.dispose()
    engine.dispose()
