"""Initial warehouse schema: contracts, VSA snapshots, units, unit changes, invoices.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Conventions: dates are DATE, money NUMERIC (unit prices 4 decimals, amounts rounded to the
currency's minor unit and stored with scale 4 so that 0-, 2- and 3-decimal currencies fit),
every VSA id is TEXT (decimal strings of up to 26 digits).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 4)
PRICE = sa.Numeric(18, 4)
NOW = sa.text("CURRENT_TIMESTAMP")

LOCK_MESSAGE = (
    "units_source and the unit scope (machine group, subgroups, view, exclusions) of a "
    "service are locked once saved; end the service and add a new one"
)
LOCKED_COLUMNS = (
    "units_source",
    "vsa_machine_group_id",
    "include_subgroups",
    "vsa_view_id",
    "exclude_never_checked_in",
    "exclude_offline_days",
)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("vsa_org_id", sa.Text),
    )
    op.create_table(
        "contracts",
        sa.Column("contract_id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.account_id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("billing_day", sa.Integer, nullable=False, server_default="1"),
        sa.Column("posting", sa.Text, nullable=False, server_default="automatic"),
        sa.Column("notify_emails", sa.Text, nullable=False, server_default=""),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date),
        sa.CheckConstraint("billing_day BETWEEN 1 AND 28", name="ck_contracts_billing_day"),
        sa.CheckConstraint("posting IN ('automatic', 'review')", name="ck_contracts_posting"),
    )
    op.create_table(
        "services",
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("unit_price", PRICE, nullable=False),
        sa.Column("units_source", sa.Text, nullable=False),
        sa.Column("vsa_machine_group_id", sa.Text),
        sa.Column("include_subgroups", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("vsa_view_id", sa.Text),
        sa.Column("exclude_never_checked_in", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("exclude_offline_days", sa.Integer),
        sa.Column("units", sa.Integer, nullable=False, server_default="0"),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date),
        sa.CheckConstraint(
            "units_source IN ('manual', 'rmm_agent_count')", name="ck_services_units_source"
        ),
        sa.CheckConstraint("units >= 0", name="ck_services_units"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="ck_services_dates"),
    )
    op.create_index("ix_services_contract", "services", ["contract_id"])

    op.create_table(
        "sync_runs",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True)),
        sa.Column("agents_total", sa.Integer),
        sa.Column("orgs_total", sa.Integer),
        sa.Column("machine_groups_total", sa.Integer),
        sa.Column("message", sa.Text),
        # Set when a person releases a quarantined snapshot; a re-run then does not re-quarantine it.
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "status IN ('complete', 'gap', 'quarantined', 'failed', 'discarded')",
            name="ck_sync_runs_status",
        ),
    )
    op.create_table(
        "vsa_orgs",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("org_name", sa.Text),
        sa.Column("org_ref", sa.Text),
        sa.Column("parent_org_id", sa.Text),
    )
    op.create_table(
        "vsa_machine_groups",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("machine_group_id", sa.Text, primary_key=True),
        sa.Column("machine_group_name", sa.Text),
        sa.Column("parent_machine_group_id", sa.Text),
        sa.Column("org_id", sa.Text),
    )
    # No unique key on agents: duplicates must reach the quality gate, which reports them.
    op.create_table(
        "vsa_agents",
        sa.Column("snapshot_date", sa.Date, nullable=False),
        sa.Column("agent_id", sa.Text),
        sa.Column("agent_name", sa.Text),
        sa.Column("org_id", sa.Text),
        sa.Column("machine_group_id", sa.Text),
        sa.Column("online", sa.Integer),
        sa.Column("last_checkin_time", sa.DateTime(timezone=True)),
        sa.Column("first_checkin", sa.DateTime(timezone=True)),
        # Whole days between the last check-in and the snapshot date (NULL: never checked in);
        # computed at load so the "offline for more than N days" exclusion is engine-neutral SQL.
        sa.Column("days_since_checkin", sa.Integer),
    )
    op.create_index("ix_vsa_agents_date_agent", "vsa_agents", ["snapshot_date", "agent_id"])
    op.create_table(
        "vsa_views",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("view_id", sa.Text, primary_key=True),
        sa.Column("view_name", sa.Text),
    )
    op.create_table(
        "vsa_view_members",
        sa.Column("snapshot_date", sa.Date, nullable=False),
        sa.Column("view_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_vsa_view_members", "vsa_view_members", ["snapshot_date", "view_id", "agent_id"]
    )
    op.create_table(
        "quality_results",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("expectation", sa.Text, primary_key=True),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("element_count", sa.Integer),
        sa.Column("unexpected_count", sa.Integer),
        sa.Column("details", sa.Text),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )

    # Which agents a service counted on a date: the evidence behind every unit count. Derived
    # in bulk from the snapshot (a million rows a night), so no per-row foreign-key check.
    op.create_table(
        "service_agents",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, primary_key=True),
    )
    op.create_table(
        "service_unit_counts",
        sa.Column("service_id", sa.Text, sa.ForeignKey("services.service_id"), primary_key=True),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("units", sa.Integer, nullable=False),
        sa.CheckConstraint("units >= 0", name="ck_service_unit_counts_units"),
    )
    # Get Units Now readings (SPEC 4.4): counts taken outside the nightly snapshot.
    op.create_table(
        "units_now_readings",
        sa.Column("service_id", sa.Text, sa.ForeignKey("services.service_id"), primary_key=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("observed_date", sa.Date, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "unit_changes",
        sa.Column("change_id", sa.Text, primary_key=True),
        sa.Column("service_id", sa.Text, sa.ForeignKey("services.service_id"), nullable=False),
        sa.Column("effective_date", sa.Date, nullable=False),
        sa.Column("units_before", sa.Integer, nullable=False),
        sa.Column("units_after", sa.Integer, nullable=False),
        sa.Column("delta", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("delta = units_after - units_before AND delta <> 0", name="ck_unit_changes_delta"),
        sa.CheckConstraint(
            "source IN ('nightly_sync', 'get_units_now', 'manual')", name="ck_unit_changes_source"
        ),
        sa.UniqueConstraint("service_id", "effective_date", "source", name="uq_unit_changes_natural"),
    )
    op.create_table(
        "unit_change_agents",
        sa.Column(
            "change_id",
            sa.Text,
            sa.ForeignKey("unit_changes.change_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("agent_name", sa.Text),
        sa.Column("event", sa.Text, nullable=False),
        sa.CheckConstraint(
            "event IN ('added', 'removed', 'moved_in', 'moved_out')", name="ck_unit_change_agents_event"
        ),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )

    op.create_table(
        "invoices",
        sa.Column("invoice_id", sa.Text, primary_key=True),
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), nullable=False),
        sa.Column("invoice_date", sa.Date, nullable=False),
        sa.Column("invoice_month", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("document_type", sa.Text, nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "document_type IN ('invoice', 'credit_note')", name="ck_invoices_document_type"
        ),
        sa.UniqueConstraint("contract_id", "invoice_month", name="uq_invoices_contract_month"),
    )
    line_columns = [
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), nullable=False),
        sa.Column("service_id", sa.Text, sa.ForeignKey("services.service_id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("unit_price", PRICE, nullable=False),
        sa.Column("days", sa.Integer, nullable=False),
        sa.Column("days_in_period", sa.Integer, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("change_id", sa.Text),
        sa.Column("adjusts_line_id", sa.Text),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        # Natural key (normal:<service>:<month>, prorated:<change>, adjustment:<line>:<invoice>)
        sa.Column("line_key", sa.Text, nullable=False),
    ]
    op.create_table(
        "invoice_lines",
        sa.Column("line_id", sa.Text, primary_key=True),
        sa.Column("invoice_id", sa.Text, sa.ForeignKey("invoices.invoice_id"), nullable=False),
        *line_columns,
        sa.CheckConstraint(
            "kind IN ('normal', 'prorated', 'adjustment')", name="ck_invoice_lines_kind"
        ),
        sa.UniqueConstraint("line_key", name="uq_invoice_lines_line_key"),
    )
    op.create_index("ix_invoice_lines_invoice", "invoice_lines", ["invoice_id"])
    op.create_index("ix_invoice_lines_service", "invoice_lines", ["service_id", "period_start"])
    # Lines the latest billing run would post now (refreshed by every run).
    op.create_table(
        "billing_pending",
        sa.Column("line_id", sa.Text, primary_key=True),
        *[c.copy() for c in line_columns],
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("line_key", name="uq_billing_pending_line_key"),
    )
    op.execute(
        """
        CREATE VIEW billing_review AS
        SELECT p.line_id, p.contract_id, c.posting, p.service_id, p.kind, p.period_start,
               p.period_end, p.units, p.unit_price, p.days, p.days_in_period, p.amount,
               p.change_id, p.adjusts_line_id, p.description, p.as_of, p.computed_at
        FROM billing_pending p
        JOIN contracts c ON c.contract_id = p.contract_id
        """
    )
    _create_lock_trigger()


def _create_lock_trigger() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in LOCKED_COLUMNS)
        op.execute(
            f"""
            CREATE FUNCTION services_lock_derivation() RETURNS trigger AS $$
            BEGIN
                IF {changed} THEN
                    RAISE EXCEPTION 'service %: {LOCK_MESSAGE}', OLD.service_id
                        USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER services_lock_derivation BEFORE UPDATE ON services "
            "FOR EACH ROW EXECUTE FUNCTION services_lock_derivation()"
        )
    else:
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in LOCKED_COLUMNS)
        op.execute(
            f"""
            CREATE TRIGGER services_lock_derivation BEFORE UPDATE ON services
            FOR EACH ROW WHEN {changed}
            BEGIN
                SELECT RAISE(ABORT, 'service: {LOCK_MESSAGE}');
            END
            """
        )


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP VIEW IF EXISTS billing_review")
    op.execute("DROP TRIGGER IF EXISTS services_lock_derivation" + (" ON services" if bind.dialect.name == "postgresql" else ""))
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS services_lock_derivation()")
    for table in (
        "billing_pending", "invoice_lines", "invoices", "notification_outbox",
        "unit_change_agents", "unit_changes", "units_now_readings", "service_unit_counts",
        "service_agents", "quality_results", "vsa_view_members", "vsa_views", "vsa_agents",
        "vsa_machine_groups", "vsa_orgs", "sync_runs", "services", "contracts", "accounts",
    ):
        op.drop_table(table)
