"""A posted invoice stays what the customer received: renaming the account or a service later
changes neither its show, its list entry nor its export (the next invoice carries the new
names), and the database refuses to edit or delete it (migration 0018). The machines behind
its prorated lines stay as posted when a later re-derivation rewrites or withdraws their
change (migration 0023). Both engines."""

from __future__ import annotations

import csv
import io
import json

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from tests.billing.conftest import ORG

from agent_billing.contracts import apply_contracts
from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config


def apply_named(books, account_name: str, service_name: str) -> None:
    """Contract C (one rmm service S at 12.00 from March 2024) under the names given."""
    apply_contracts(books.engine, {"accounts": [{
        "account_id": "A-C", "name": account_name, "vsa_org_id": ORG,
        "contracts": [{"contract_id": "C", "currency": "USD", "start_date": "2024-03-01",
                       "services": [books.rmm("S", "12.00", "2024-03-01", name=service_name)]}],
    }]})


@pytest.fixture
def renamed(books):
    """March posted as "Contoso Ltd" / "Managed workstations"; both renamed before April's invoice."""
    apply_named(books, "Contoso Ltd", "Managed workstations")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    apply_named(books, "Contoso Holdings plc", "Workstations (managed)")
    books.bill("2024-04-01")
    return books


def run_json(agent_billing_cli, *args: str):
    process = agent_billing_cli(*args, "--format", "json")
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout)


def test_a_rename_leaves_posted_invoices_as_the_customer_received_them(renamed, agent_billing_cli):
    march = run_json(agent_billing_cli, "invoices", "show", "INV-C-2024-03")
    assert march["account_name"] == "Contoso Ltd"
    assert [line["service_name"] for line in march["lines"]] == ["Managed workstations"]
    assert [r["account_name"] for r in run_json(agent_billing_cli, "invoices", "list", "--month", "2024-03")] \
        == ["Contoso Ltd"]
    exported = agent_billing_cli("invoices", "export", "--month", "2024-03")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["account_id"], r["account_name"], r["service_name"]) for r in rows] == [
        ("A-C", "Contoso Ltd", "Managed workstations")]
    assert rows[0]["description"].startswith("Managed workstations, ")  # agrees with its own line

    april = run_json(agent_billing_cli, "invoices", "show", "INV-C-2024-04")  # posted after the rename
    assert april["account_name"] == "Contoso Holdings plc"
    assert [line["service_name"] for line in april["lines"]] == ["Workstations (managed)"]


@pytest.mark.parametrize("statement", [
    "UPDATE invoices SET total = 0, total_e4 = 0",
    "UPDATE invoices SET account_name = 'someone else'",
    "DELETE FROM invoices",
    "UPDATE invoice_lines SET amount = 0, amount_e4 = 0",
    "DELETE FROM invoice_lines",
])
def test_the_database_refuses_to_edit_or_delete_a_posted_invoice(renamed, statement):
    before = renamed.invoices()
    with pytest.raises(DBAPIError, match="a posted invoice is never edited or deleted"):
        with renamed.engine.begin() as conn:
            conn.execute(text(statement))
    assert renamed.invoices() == before


def test_invoices_posted_before_the_upgrade_get_the_names_current_at_the_upgrade(books, agent_billing_cli):
    apply_named(books, "Contoso Ltd", "Managed workstations")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    command.downgrade(alembic_config(books.engine), "0017")  # as if posted before 0018
    assert "account_name" not in {c["name"] for c in inspect(books.engine).get_columns("invoices")}
    assert "service_name" not in {c["name"] for c in inspect(books.engine).get_columns("invoice_lines")}
    with books.engine.begin() as conn:  # no triggers before 0018: the downgrade removed them
        conn.execute(text("UPDATE invoices SET as_of = as_of"))
        # renamed as that release's apply did (today's apply writes tables of later revisions)
        conn.execute(text("UPDATE accounts SET name = 'Contoso Holdings plc'"))
        conn.execute(text("UPDATE services SET name = 'Workstations (managed)'"))
    upgrade(books.engine)

    march = run_json(agent_billing_cli, "invoices", "show", "INV-C-2024-03")
    assert (march["account_name"], march["lines"][0]["service_name"]) == (
        "Contoso Holdings plc", "Workstations (managed)")
    with pytest.raises(DBAPIError, match="a posted invoice is never edited or deleted"):
        with books.engine.begin() as conn:
            conn.execute(text("DELETE FROM invoice_lines"))


NEW_01 = {"agent_id": "91000000000000000000000001", "agent_name": "ws-new-01", "event": "added"}
NEW_02 = {"agent_id": "91000000000000000000000002", "agent_name": "ws-new-02", "event": "added"}
SRV_01 = {"agent_id": "91000000000000000000000003", "agent_name": "srv-new-01", "event": "moved_in"}


def behind(books, change_id: str, *agents: dict) -> None:
    """The change's agents are ``agents`` (as the night's derivation writes them)."""
    books._exec("DELETE FROM unit_change_agents WHERE change_id = :c", c=change_id)
    for a in agents:
        books._exec("INSERT INTO unit_change_agents (change_id, agent_id, agent_name, event) "
                    "VALUES (:c, :agent_id, :agent_name, :event)", c=change_id, **a)


@pytest.fixture
def billed_change(books):
    """S at 10 from March 1st, +1 on the 15th (ws-new-01 added), billed on April's invoice."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    change = books.change("S", "2024-03-15", 10, 11)
    behind(books, change, NEW_01)
    books.bill("2024-04-01")
    return books, change


def agents_shown(agent_billing_cli, invoice_id: str) -> list[tuple[str, int, list[dict]]]:
    return [(x["kind"], x["units"], x["agents"])
            for x in run_json(agent_billing_cli, "invoices", "show", invoice_id)["lines"] if x["change_id"]]


def test_a_posted_line_keeps_the_machines_it_billed_when_its_night_is_counted_again(billed_change, agent_billing_cli):
    """A dispute of April's invoice, after a backfill counted the 15th again (+2: ws-new-02 too),
    the service's end moved back and the change then withdrawn: April still shows the one
    machine it billed; May's +1 correction the change's machines as corrected; a correction of
    days only, and one of a line that no longer applies, none (they bill no machine)."""
    books, change = billed_change
    assert agents_shown(agent_billing_cli, "INV-C-2024-04") == [("prorated", 1, [NEW_01])]
    books.rewrite(change, 10, 12)
    behind(books, change, NEW_01, NEW_02)
    books.bill("2024-05-01")
    assert agents_shown(agent_billing_cli, "INV-C-2024-05") == [("adjustment", 1, [NEW_01, NEW_02])]
    books.service("C", books.rmm("S", "12.00", "2024-03-01", end_date="2024-03-20"), start="2024-03-01")
    books.bill("2024-06-01")
    assert agents_shown(agent_billing_cli, "INV-C-2024-06") == [("adjustment", 0, [])]  # 17 days → 6
    books.delete(change)  # withdrawn: its agent rows go with it (ON DELETE CASCADE)
    books.bill("2024-07-01")
    assert agents_shown(agent_billing_cli, "INV-C-2024-07") == [("adjustment", -2, [])]
    assert agents_shown(agent_billing_cli, "INV-C-2024-04") == [("prorated", 1, [NEW_01])]
    assert agents_shown(agent_billing_cli, "INV-C-2024-05") == [("adjustment", 1, [NEW_01, NEW_02])]
    text_show = agent_billing_cli("invoices", "show", "INV-C-2024-04").stdout
    assert "91000000000000000000000001  ws-new-01   added" in text_show, text_show


def test_a_reviewed_invoice_keeps_the_machines_of_the_lines_post_posts(books, agent_billing_cli):
    """A review contract: `post` posts the pending lines (their adjustments under another id),
    with the machines the preview showed for them."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01", posting="review")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C").returncode == 0
    change = books.change("S", "2024-03-15", 10, 11)
    behind(books, change, NEW_01)
    books.bill("2024-04-01")
    preview = run_json(agent_billing_cli, "invoices", "preview", "--contract", "C")
    assert [(x["kind"], x["agents"]) for x in preview["lines"] if x["change_id"]] == [("prorated", [NEW_01])]
    assert agent_billing_cli("post", "--contract", "C").returncode == 0
    assert agents_shown(agent_billing_cli, "INV-C-2024-04") == [("prorated", 1, [NEW_01])]
    books.rewrite(change, 10, 12)
    behind(books, change, NEW_01, NEW_02)
    books.bill("2024-05-01")
    preview = run_json(agent_billing_cli, "invoices", "preview", "--contract", "C")
    assert [(x["kind"], x["agents"]) for x in preview["lines"] if x["change_id"]] == [
        ("adjustment", [NEW_01, NEW_02])]
    assert agent_billing_cli("post", "--contract", "C").returncode == 0
    assert agents_shown(agent_billing_cli, "INV-C-2024-05") == [("adjustment", 1, [NEW_01, NEW_02])]
    books.delete(change)
    books.bill("2024-06-01")
    preview = run_json(agent_billing_cli, "invoices", "preview", "--contract", "C")
    assert [(x["kind"], x["agents"]) for x in preview["lines"] if x["change_id"]] == [("adjustment", [])]


@pytest.mark.parametrize("statement", ["UPDATE invoice_line_agents SET agent_name = 'pc-else'",
                                       "DELETE FROM invoice_line_agents"])
def test_the_database_refuses_to_edit_or_delete_the_machines_of_a_posted_line(billed_change, statement):
    books, _ = billed_change
    with pytest.raises(DBAPIError, match="the agents behind a posted line, as posted: never edited or deleted"):
        with books.engine.begin() as conn:
            conn.execute(text(statement))
    with books.engine.connect() as conn:
        assert conn.execute(text("SELECT agent_name FROM invoice_line_agents")).scalars().all() == ["ws-new-01"]


def test_lines_posted_before_the_upgrade_get_their_machines_only_where_their_change_still_bills_them(
        books, agent_billing_cli):
    """Before 0023 the machines were not kept: a line whose change still has its units gets the
    change's agents (the best record there is); a line whose change a backfill re-derived since
    gets none, not another night's machines; adjustments get none."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01"), books.rmm("S2", "40.00", "2024-03-01")],
                   start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.count("S2", "2024-03-01", 2)
    books.bill("2024-03-01")
    rewritten, kept = books.change("S", "2024-03-15", 10, 11), books.change("S2", "2024-03-15", 2, 3)
    behind(books, rewritten, NEW_01)
    behind(books, kept, SRV_01)
    books.bill("2024-04-01")
    books.rewrite(rewritten, 10, 12)
    behind(books, rewritten, NEW_01, NEW_02)
    books.bill("2024-05-01")  # May corrects S's prorated line
    command.downgrade(alembic_config(books.engine), "0022")  # as if posted before 0023
    assert "invoice_line_agents" not in inspect(books.engine).get_table_names()
    upgrade(books.engine)
    assert agents_shown(agent_billing_cli, "INV-C-2024-04") == [("prorated", 1, []), ("prorated", 1, [SRV_01])]
    assert agents_shown(agent_billing_cli, "INV-C-2024-05") == [("adjustment", 1, [])]


def test_the_upgrade_writes_every_recorded_unit_price_as_money(books):
    """0022's code stored 12.5 where the plan now shows 12.50: rewritten once, before 0023 keeps
    the rows for good, so that a query on a price finds old and new rows alike."""
    command.downgrade(alembic_config(books.engine), "0022")
    with books.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO contract_edits (applied_at, source, line, kind, entity_id, action, field, old_value, "
            "new_value) VALUES ('2024-03-01 08:00:00+00:00', 'c.yaml', 9, 'service', 'S', 'update', 'unit_price', "
            "'12.5', '1.1325'), ('2024-03-01 08:00:00+00:00', 'c.yaml', 9, 'service', 'S', 'update', 'units', "
            "'3', '5')"))
    upgrade(books.engine)
    with books.engine.connect() as conn:
        assert conn.execute(text("SELECT field, old_value, new_value FROM contract_edits ORDER BY edit_id")).all() == [
            ("unit_price", "12.50", "1.1325"), ("units", "3", "5")]
