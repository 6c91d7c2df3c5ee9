"""Database triggers that make the log tables append-only (UPDATE, DELETE, TRUNCATE refused).

They are installed by the moderation app's first migration. Tests that simulate an attacker
with full database access remove them first, as such an attacker would.
"""

from __future__ import annotations

from typing import Any

PROTECTED_TABLES = ("agora_log_entry", "agora_tree_head")

_POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION agora_refuse_log_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the moderation log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql
"""


def _statements(dialect: str) -> list[str]:
    if dialect == "postgres":
        statements = [_POSTGRES_FUNCTION]
        for table in PROTECTED_TABLES:
            statements += [
                f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION agora_refuse_log_change()",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION agora_refuse_log_change()",
            ]
        return statements
    statements = []
    for table in PROTECTED_TABLES:
        for operation in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the moderation log is append-only: {operation} "
                f"on {table} refused'); END"
            )
    return statements


def _drop_statements(dialect: str) -> list[str]:
    if dialect == "postgres":
        drops = []
        for table in PROTECTED_TABLES:
            drops += [
                f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}",
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
            ]
        return drops
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_{operation}"
        for table in PROTECTED_TABLES
        for operation in ("update", "delete")
    ]


async def install(client: Any) -> None:
    for statement in _statements(client.capabilities.dialect):
        await client.execute_script(statement)


async def remove(client: Any) -> None:
    for statement in _drop_statements(client.capabilities.dialect):
        await client.execute_script(statement)
