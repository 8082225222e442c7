"""Tell every server process when a customer's credentials change, so it may cache token lookups.

A statement that changes a token, the previous token's window or `is_active`, or deletes or
truncates customers, sends a notification on `fleet_token_change` when it commits (nothing when
it rolls back). A server process that listens keeps a short cache of token lookups and drops it
on each notification (docs/DESIGN.md, "Authentication"); writes by `fleet-server` commands, by
another worker or by hand in psql are seen the same way. Statement-level: one notification per
statement however many rows it changes, and the payload names nothing (the cache is dropped
whole; credentials change rarely).

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION fleet.notify_token_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('fleet_token_change', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER tg_customers_token_change "
        "AFTER UPDATE OF token_hash, previous_token_hash, previous_token_expires_at, is_active "
        "OR DELETE OR TRUNCATE ON fleet.customers "
        "FOR EACH STATEMENT EXECUTE FUNCTION fleet.notify_token_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tg_customers_token_change ON fleet.customers")
    op.execute("DROP FUNCTION fleet.notify_token_change()")
