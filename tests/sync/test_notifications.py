"""Unit-change mail through the outbox and a real local SMTP server: sent once, retried on failure."""

from __future__ import annotations

import socket
import time as clock
from datetime import UTC, datetime, time

import pytest
from sqlalchemy import text

from agent_billing.connections import ConnectionInfo, parse_connection
from agent_billing.errors import ConfigurationError
from agent_billing.settings import get_settings
from agent_billing.sync.notify import DeliveryFailed, deliver_outbox
from agent_billing.sync.pipeline import count_step, diff_step, load_step
from agent_billing.wording import units_text

from ..conftest import AuthSmtp, RefusingSmtp
from .conftest import DAYS, write_landing

D1, D2, _ = sorted(DAYS)


def d3_before_d2(engine, settings) -> None:
    """D2's night missed: D1, then D3 (holding D2's agents) synced against D1, so D3 carries the
    changes a backfill of D2 will move to D2."""
    d1, d2, d3 = sorted(DAYS)
    for day, content in ((d1, DAYS[d1]), (d3, DAYS[d2])):
        write_landing(settings.raw_path, day, *content)
        for step in (load_step, count_step, diff_step):
            step(engine, settings, day)


def sync_days(engine, settings, days):
    for day in days:
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(engine, settings, day)
        count_step(engine, settings, day)
        diff_step(engine, settings, day)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_one_mail_per_contract_per_run_never_twice(contoso, settings, local_smtp):
    inbox, smtp = local_smtp, local_smtp.connection
    sync_days(contoso, settings, (D1, D2))
    assert deliver_outbox(contoso, smtp, settings.notify_from).sent == 1
    # The same date re-run and delivered again: the message exists and was sent, nothing new.
    diff_step(contoso, settings, D2)
    assert deliver_outbox(contoso, smtp, settings.notify_from).sent == 0
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail.rcpt_tos == ["billing@contoso.example"]
    body = mail.content.decode()
    assert "Unit changes for C-CONTOSO on 2024-03-02" in body
    assert "Workstations (S-WS): 3 → 4 units, effective 2024-03-02" in body
    assert "a7.laptops.workstations.root.contoso (added)" in body
    assert "Servers (S-SRV): 2 → 1 unit," in body


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_sender_with_a_display_name_is_taken_as_written(contoso, settings, local_smtp, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_NOTIFY_FROM", "Agent Billing <billing@msp.example>")
    sender = get_settings().notify_from  # one address with its name: valid (a list of two is not)
    sync_days(contoso, settings, (D1, D2))
    smtp = local_smtp.connection
    without_from = ConnectionInfo(**{**smtp.__dict__, "extra": {k: v for k, v in smtp.extra.items() if k != "from_email"}})
    assert deliver_outbox(contoso, without_from, sender).sent == 1
    deadline = clock.monotonic() + 5
    while not local_smtp.messages and clock.monotonic() < deadline:
        clock.sleep(0.05)
    assert b"From: Agent Billing <billing@msp.example>" in local_smtp.messages[0].content
    monkeypatch.setenv("AGENT_BILLING_NOTIFY_FROM", "billing@msp.example, ops@msp.example")
    with pytest.raises(ConfigurationError, match="the sender must be one e-mail address"):
        get_settings()


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_failed_send_stays_queued_and_is_retried(contoso, settings, local_smtp):
    inbox, smtp = local_smtp, local_smtp.connection
    sync_days(contoso, settings, (D1, D2))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = ConnectionInfo(**{**smtp.__dict__, "port": dead_port})
    bare = parse_connection("smtp_default", "mail.example.com")  # the host without smtp://: read as a path
    with pytest.raises(ConfigurationError, match=r"^connection 'smtp_default' has no host: write it as "
                                                 r"smtp://mail\.example\.com:587 .*1 message\(s\) wait"):
        deliver_outbox(contoso, bare, settings.notify_from)
    unclear = ConnectionInfo(**{**smtp.__dict__, "extra": {**smtp.extra, "disable_ssl": "maybe"}})
    with pytest.raises(ConfigurationError, match=r"^connection 'smtp_default': extra disable_ssl='maybe' is neither"):
        deliver_outbox(contoso, unclear, settings.notify_from)  # refused once, before any message is tried
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT attempts FROM notification_outbox")).scalar() == 0
    with pytest.raises(DeliveryFailed, match="1 message") as failed:
        deliver_outbox(contoso, dead, settings.notify_from)
    assert failed.value.transient  # the server may answer later: the task's retries apply
    with contoso.connect() as conn:
        attempts, error = conn.execute(
            text("SELECT attempts, last_error FROM notification_outbox")
        ).one()
    assert attempts == 1 and "ConnectionRefusedError" in error
    for _ in range(7):  # a night's retries and the next nights' (mail is never given up silently)
        with pytest.raises(DeliveryFailed, match="1 message.*every delivery retries them"):
            deliver_outbox(contoso, dead, settings.notify_from)
    assert deliver_outbox(contoso, smtp, settings.notify_from).sent == 1
    deadline = clock.monotonic() + 5
    while not inbox.messages and clock.monotonic() < deadline:
        clock.sleep(0.05)
    assert len(inbox.messages) == 1


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_without_smtp_messages_wait_in_the_outbox(contoso, settings):
    sync_days(contoso, settings, (D1, D2))
    result = deliver_outbox(contoso, None, settings.notify_from)
    assert (result.sent, result.waiting) == (0, 1)


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_two_deliveries_at_once_send_a_message_once(contoso, settings, local_smtp):
    """The CLI and the DAG (or two backfill runs) deliver at the same moment: the second one
    reads the message while the first is still talking to the SMTP server."""
    import asyncio
    import threading

    inbox, smtp = local_smtp, local_smtp.connection
    slow = inbox.handle_DATA

    async def slow_handle(server, session, envelope):
        await asyncio.sleep(0.5)
        return await slow(server, session, envelope)

    inbox.handle_DATA = slow_handle
    sync_days(contoso, settings, (D1, D2))
    results = []
    first = threading.Thread(target=lambda: results.append(deliver_outbox(contoso, smtp, settings.notify_from)))
    first.start()
    clock.sleep(0.2)  # the first delivery has claimed the message and is sending it
    results.append(deliver_outbox(contoso, smtp, settings.notify_from))
    first.join()
    assert sorted(r.sent for r in results) == [0, 1]
    assert len(inbox.messages) == 1


def test_a_sent_change_that_a_later_derivation_alters_gets_a_correction(contoso, settings, local_smtp):
    """D3 synced against D1 and its mail sent; D2 arrives late (a backfill): D3's changes are
    derived again against D2. The customer gets a correction with the new changes, once."""
    from agent_billing.sync.notify import queue_unit_change_mail

    inbox, smtp = local_smtp, local_smtp.connection
    d1, d2, d3 = sorted(DAYS)
    sync_days(contoso, settings, [d1, d3])
    assert deliver_outbox(contoso, smtp, settings.notify_from).sent == 1
    sync_days(contoso, settings, [d2])
    with contoso.begin() as conn:
        queue_unit_change_mail(conn, d3)
        queue_unit_change_mail(conn, d3)  # a second derivation that changes nothing: no mail
        rows = conn.execute(text(
            "SELECT message_id, subject, body FROM notification_outbox WHERE sent_at IS NULL "
            "AND message_id LIKE :p"), {"p": f"unit-changes:C-CONTOSO:{d3}:correction:%"}).all()
        changes = conn.execute(text(
            "SELECT service_id, units_before, units_after FROM unit_changes WHERE effective_date = :d "
            "AND source = 'nightly_sync' ORDER BY service_id"), {"d": d3}).all()
    assert len(rows) == 1
    (_, subject, body), = rows
    assert subject == f"[agent-billing] Corrected unit changes for C-CONTOSO on {d3}"
    for service_id, before, after in changes:
        assert f"({service_id}): {before} → {units_text(after)}" in body
    assert deliver_outbox(contoso, smtp, settings.notify_from).sent >= 1
    assert any(b"Corrected unit changes" in m.content for m in inbox.messages)


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_an_unsent_mail_about_changes_a_backfill_removed_is_withdrawn(contoso, settings, local_smtp):
    """D2 missed; D3 (the same agents as D2) synced against D1 queues its changes; SMTP is down.
    The backfill of D2 moves the changes to D2: the customer is told once, of D2's changes."""
    d1, d2, d3 = sorted(DAYS)
    for day, content in ((d1, DAYS[d1]), (d3, DAYS[d2]), (d2, DAYS[d2])):
        write_landing(settings.raw_path, day, *content)
        for step in (load_step, count_step, diff_step):
            step(contoso, settings, day)
        if day == d3:
            with contoso.connect() as conn:
                assert conn.execute(text("SELECT message_id FROM notification_outbox")).scalars().all() == [
                    f"unit-changes:C-CONTOSO:{d3}"]

    assert deliver_outbox(contoso, local_smtp.connection, settings.notify_from).sent == 1
    [mail] = local_smtp.messages
    assert f"on {d2}".encode() in mail.content and str(d3).encode() not in mail.content


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_message_being_sent_when_a_backfill_changes_it_is_corrected_not_rewritten(contoso, settings, local_smtp):
    """A delivery has claimed D3's message and is sending it when the backfill of D2 moves its
    changes: the message goes out as claimed (it is not rewritten under the delivery, which
    would mark a text sent that nobody received), and a correction follows it."""
    from datetime import UTC, datetime

    d1, d2, d3 = sorted(DAYS)
    head = f"unit-changes:C-CONTOSO:{d3}"
    d3_before_d2(contoso, settings)
    with contoso.begin() as conn:  # a delivery claims it (and is sending it)
        conn.execute(text("UPDATE notification_outbox SET claimed_at = :now WHERE message_id = :id"),
                     {"now": datetime.now(UTC), "id": head})
        claimed_body = conn.execute(text("SELECT body FROM notification_outbox WHERE message_id = :id"),
                                    {"id": head}).scalar()
    write_landing(settings.raw_path, d2, *DAYS[d2])
    for step in (load_step, count_step, diff_step):
        step(contoso, settings, d2)
    with contoso.begin() as conn:
        assert conn.execute(text("SELECT body FROM notification_outbox WHERE message_id = :id"),
                            {"id": head}).scalar() == claimed_body  # not rewritten, not withdrawn
        corrections = conn.execute(text(
            "SELECT body FROM notification_outbox WHERE message_id LIKE :p"), {"p": f"{head}:correction:%"}).scalars().all()
        assert len(corrections) == 1 and "The snapshot of that date no longer finds any unit change" in corrections[0]
        conn.execute(text("UPDATE notification_outbox SET sent_at = :now, claimed_at = NULL WHERE message_id = :id"),
                     {"now": datetime.now(UTC), "id": head})  # the delivery finished
    assert deliver_outbox(contoso, local_smtp.connection, settings.notify_from).sent == 2  # D2's and the correction


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_delivery_claiming_a_message_while_a_backfill_rederives_it_waits_for_the_backfill(
    contoso, settings, local_smtp, monkeypatch
):
    """The race the test above cannot show: the delivery claims D3's unsent message just after
    the backfill of D2 has read what was told (nothing) and before it withdraws the message.
    The delivery sent the old text, the withdrawal skipped a claimed message, and no correction
    followed. The claim now waits for the backfill and finds the message withdrawn."""
    import threading

    from agent_billing.sync import notify

    d1, d2, d3 = sorted(DAYS)
    head = f"unit-changes:C-CONTOSO:{d3}"
    d3_before_d2(contoso, settings)
    claims: list = []
    delivery = threading.Thread(target=lambda: claims.append(notify._claim(contoso, head)))
    told_then = notify._sent_unit_change_mail

    def delivery_claims_right_after_the_read(conn, snapshot_date):
        told = told_then(conn, snapshot_date)
        if snapshot_date == d3 and not delivery.is_alive() and not claims:
            delivery.start()
            delivery.join(timeout=1.5)  # it claims now, or waits for this transaction
        return told

    monkeypatch.setattr(notify, "_sent_unit_change_mail", delivery_claims_right_after_the_read)
    write_landing(settings.raw_path, d2, *DAYS[d2])
    for step in (load_step, count_step, diff_step):  # the backfill: D3's changes move to D2
        step(contoso, settings, d2)
    delivery.join(timeout=30)
    with contoso.connect() as conn:
        left = conn.execute(text("SELECT message_id FROM notification_outbox WHERE snapshot_date = :d"),
                            {"d": d3}).scalars().all()
    assert claims == [None] and left == []  # nothing of D3 went out, and nothing is left to send


def _outbox(engine, prefix: str) -> list[tuple[str, str, object]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT message_id, body, sent_at FROM notification_outbox WHERE message_id LIKE :p ORDER BY created_at"),
            {"p": f"{prefix}%"})]


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_late_night_that_turns_a_quiet_press_into_a_change_mails_it(contoso, settings):
    """D2's night is missing; on D3 S-WS is pressed at 3, as D1 counted: no change, no mail.
    D2's night arrives late with 4: the press on D3 is now a change 4 → 3, billed, and it was
    never mailed (only the night's own changes were)."""
    from agent_billing.sync.changes import record_reading
    from agent_billing.sync.notify import queue_mail_for

    d1, d2, d3 = sorted(DAYS)
    sync_days(contoso, settings, [d1])
    pressed_at = datetime.combine(d3, time(14), tzinfo=UTC)
    with contoso.begin() as conn:  # what get_units_now does after counting 3 in VSA
        found = record_reading(conn, settings.tz, "S-WS", pressed_at, 3)
        queue_mail_for(conn, found.moved | {(d3, "get_units_now", "S-WS")})
    assert _outbox(contoso, "units-now:") == []
    sync_days(contoso, settings, [d2])
    [(message_id, body, _)] = _outbox(contoso, "units-now:")
    assert message_id == f"units-now:S-WS:{d3}" and "(S-WS): 4 → 3 units" in body


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_late_night_that_takes_over_a_sent_press_change_corrects_it(contoso, settings):
    """D2's night is missing; on D3 S-WS is pressed at 4 and the customer told "3 → 4 on D3".
    D2's night arrives late with the 4: the change is D2's now (mailed with that night), the
    press on D3 changes nothing, and the customer was told +1 twice: the press's mail is corrected."""
    from agent_billing.sync.changes import record_reading
    from agent_billing.sync.notify import queue_mail_for

    d1, d2, d3 = sorted(DAYS)
    sync_days(contoso, settings, [d1])
    with contoso.begin() as conn:
        found = record_reading(conn, settings.tz, "S-WS", datetime.combine(d3, time(14), tzinfo=UTC), 4)
        queue_mail_for(conn, found.moved | {(d3, "get_units_now", "S-WS")})
        conn.execute(text("UPDATE notification_outbox SET sent_at = :now"), {"now": datetime.now(UTC)})
    [(_, told, _)] = _outbox(contoso, "units-now:")
    assert "(S-WS): 3 → 4 units" in told
    sync_days(contoso, settings, [d2])
    corrections = _outbox(contoso, f"units-now:S-WS:{d3}:correction:")
    assert len(corrections) == 1 and "There is no longer a Get Units Now change of S-WS on that date" in corrections[0][1]
    [(_, night, _)] = _outbox(contoso, f"unit-changes:C-CONTOSO:{d2}")
    assert "(S-WS): 3 → 4 units, effective " + str(d2) in night


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_changes_that_flip_back_twice_are_corrected_each_time(contoso, settings):
    """Presses of S-WS on D2 at 4, 3, 4, 3 units (each mail sent before the next press): the
    fourth needs the correction the second already was ("no change left"); its id was the hash
    of that text, the sent one's, so it was never queued and the customer kept "3 → 4"."""
    from agent_billing.sync.changes import record_reading
    from agent_billing.sync.notify import queue_mail_for

    d1, d2, _ = sorted(DAYS)
    sync_days(contoso, settings, [d1])  # S-WS counts 3
    for hour, units in ((10, 4), (11, 3), (12, 4), (13, 3)):
        with contoso.begin() as conn:
            found = record_reading(conn, settings.tz, "S-WS", datetime.combine(d2, time(hour), tzinfo=UTC), units)
            queue_mail_for(conn, found.moved | {(d2, "get_units_now", "S-WS")})
            conn.execute(text("UPDATE notification_outbox SET sent_at = :now WHERE sent_at IS NULL"),
                         {"now": datetime.combine(d2, time(hour, 30), tzinfo=UTC)})
    told = _outbox(contoso, "units-now:")
    assert len(told) == 4  # the message and three corrections, each sent
    assert "There is no longer a Get Units Now change of S-WS on that date" in told[-1][1]


def _mails(inbox):
    from email import message_from_bytes, policy

    deadline = clock.monotonic() + 5
    while not inbox.messages and clock.monotonic() < deadline:
        clock.sleep(0.05)
    return [message_from_bytes(m.content, policy=policy.default) for m in inbox.messages]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("contract_id", ["C ACME(EU)", "C-MÜLLER"])
def test_any_contract_id_gives_each_mail_its_own_well_formed_headers(warehouse, settings, local_smtp, contract_id):
    """A space, a bracket or a non-ASCII letter in a contract id cut the Message-ID short (every
    mail of the contract had one id: mail stores keep only the first) or failed the send."""
    from copy import deepcopy

    from agent_billing.contracts import apply_contracts

    from .conftest import CONTRACT

    contract = deepcopy(CONTRACT)
    contract["accounts"][0]["contracts"][0]["contract_id"] = contract_id
    apply_contracts(warehouse, contract)
    sync_days(warehouse, settings, sorted(DAYS))
    assert deliver_outbox(warehouse, local_smtp.connection, settings.notify_from).sent == 2
    mails = _mails(local_smtp)
    ids = [m["Message-ID"] for m in mails]
    assert len(set(ids)) == 2 and all(i.startswith("<") and i.endswith("@msp.example>") and " " not in i for i in ids)
    assert all(m["Date"] for m in mails)
    assert sorted(str(m["X-Agent-Billing-Message"]) for m in mails) == [
        f"unit-changes:{contract_id}:{d}" for d in sorted(DAYS)[1:]]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_recipient_refused_among_others_is_told_and_the_others_get_it_once(contoso, settings):
    from copy import deepcopy

    from agent_billing.contracts import apply_contracts

    from .conftest import CONTRACT

    contract = deepcopy(CONTRACT)
    contract["accounts"][0]["contracts"][0]["notify_emails"] = ["billing@contoso.example", "gone@contoso.example"]
    apply_contracts(contoso, contract)
    server = RefusingSmtp().start()
    server.refused = frozenset({"gone@contoso.example"})
    try:
        sync_days(contoso, settings, (D1, D2))
        with pytest.raises(DeliveryFailed, match=r"1 sent but refused by some recipients .*gone@contoso\.example \(550") \
                as failed:
            deliver_outbox(contoso, server.connection, settings.notify_from)
        # not retried: a retry finds nothing to send, so the task would end green with nobody told
        assert not failed.value.transient
        assert deliver_outbox(contoso, server.connection, settings.notify_from).sent == 0  # never twice
        assert [m.rcpt_tos for m in server.messages] == [["billing@contoso.example"]]
    finally:
        server.stop()
    with contoso.connect() as conn:
        sent, error = conn.execute(text("SELECT sent_at IS NOT NULL, last_error FROM notification_outbox")).one()
    assert sent and "gone@contoso.example (550" in error


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_mute_server_stops_the_delivery_at_the_first_message(contoso, settings, local_smtp):
    """A server that takes the connection and never greets: each message would wait out the
    timeout, and a week of mail outlasts the task. The first one tells, the others wait."""
    sync_days(contoso, settings, sorted(DAYS))  # two messages
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        smtp = ConnectionInfo(**{**local_smtp.connection.__dict__, "port": mute.getsockname()[1],
                                 "extra": {**local_smtp.extra, "timeout": "1"}})
        started = clock.monotonic()
        with pytest.raises(DeliveryFailed, match=r"1 message\(s\) not sent .*\(1 more not tried: the server did not answer\)"):
            deliver_outbox(contoso, smtp, settings.notify_from)
        assert clock.monotonic() - started < 10
    with contoso.connect() as conn:
        waiting = conn.execute(text("SELECT COUNT(*) FROM notification_outbox WHERE sent_at IS NULL "
                                    "AND claimed_at IS NULL")).scalar()
    assert waiting == 2  # no claim is left behind: the next delivery sends both
    assert deliver_outbox(contoso, local_smtp.connection, settings.notify_from).sent == 2


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_correction_goes_to_the_recipients_now_never_to_an_address_removed(contoso, settings, local_smtp):
    """The address told was removed from the contracts file (a contact who left, a dead mailbox:
    the runbook's fix) and a new one named: the correction goes to the new one only."""
    from copy import deepcopy

    from agent_billing.contracts import apply_contracts

    from .conftest import CONTRACT

    d1, d2, d3 = sorted(DAYS)
    sync_days(contoso, settings, [d1, d3])
    assert deliver_outbox(contoso, local_smtp.connection, settings.notify_from).sent == 1
    contract = deepcopy(CONTRACT)
    contract["accounts"][0]["contracts"][0]["notify_emails"] = ["new@contoso.example"]
    apply_contracts(contoso, contract)
    sync_days(contoso, settings, [d2])  # the backfill moves D3's changes: a correction
    with contoso.connect() as conn:
        [recipients] = conn.execute(text(
            "SELECT recipients FROM notification_outbox WHERE message_id LIKE :p"),
            {"p": f"unit-changes:C-CONTOSO:{d3}:correction:%"}).scalars().all()
    assert recipients == "new@contoso.example"
    assert deliver_outbox(contoso, local_smtp.connection, settings.notify_from).sent == 2  # D2's mail too
    assert [m.rcpt_tos for m in local_smtp.messages[1:]] == [["new@contoso.example"]] * 2


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_message_every_recipient_of_refuses_holds_back_no_other(warehouse):
    """smtplib's refusals are OSErrors too: one message refused whole (a dead address) is that
    message's trouble, not a server down. The messages after it go out."""
    from agent_billing.sync.notify import queue_message

    with warehouse.begin() as conn:
        queue_message(conn, "unit-changes:C-OLD:2024-03-02", "unit_changes", ["gone@old.example"], "old", "body")
        queue_message(conn, "unit-changes:C-OK:2024-03-02", "unit_changes", ["ok@ok.example"], "ok", "body")
        queue_message(conn, "task-failure:x", "failure", ["data@msp.example"], "alert", "body")
    server = RefusingSmtp().start()
    server.refused = frozenset({"gone@old.example"})
    try:
        with pytest.raises(DeliveryFailed, match=r"^1 message\(s\) not sent via SMTP [^(]*: unit-changes:C-OLD"):
            deliver_outbox(warehouse, server.connection, "billing@msp.example")
        assert sorted(address for m in server.messages for address in m.rcpt_tos) == ["data@msp.example", "ok@ok.example"]
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # 127.0.0.1, the test's own server
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_refused_login_stops_the_delivery_at_once_and_names_the_setting(contoso, settings):
    """A wrong SMTP password: one failed login, not one per waiting message and per retry (a
    server locks the account after a few), and an error to fix, not a delivery to retry."""
    sync_days(contoso, settings, sorted(DAYS))  # two messages
    server = AuthSmtp().start()
    try:
        with pytest.raises(ConfigurationError, match=r"the SMTP server 127\.0\.0\.1:\d+ refused the login of "
                           r"smtp_default as 'mailer': 535 .*fix its login and password") as refused:
            deliver_outbox(contoso, server.connection_with("Wrong-Smtp-PW"), settings.notify_from)
        assert "Wrong-Smtp-PW" not in str(refused.value)
        assert server.logins == 2  # one login, which smtplib tries with each mechanism offered (PLAIN, LOGIN)
        with contoso.connect() as conn:
            waiting = conn.execute(text("SELECT COUNT(*) FROM notification_outbox WHERE sent_at IS NULL "
                                        "AND claimed_at IS NULL")).scalar()
        assert waiting == 2  # nothing lost, no claim left: the next delivery sends both
        assert deliver_outbox(contoso, server.connection_with(AuthSmtp.password), settings.notify_from).sent == 2
        assert len(server.messages) == 2
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # 127.0.0.1, the test's own server
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_login_the_server_cannot_take_now_keeps_the_retries(contoso, settings):
    """454 (temporary authentication failure): the server's passing trouble, not the password.
    The delivery stops at the first message and is retried, as for a server that does not answer."""
    sync_days(contoso, settings, sorted(DAYS))  # two messages
    server = AuthSmtp().start()
    server.busy = True
    try:
        with pytest.raises(DeliveryFailed, match=r"1 message\(s\) not sent .*\(1 more not tried: the server could not take a login\): .*454") as failed:
            deliver_outbox(contoso, server.connection_with(AuthSmtp.password), settings.notify_from)
        assert failed.value.transient and server.logins == 2  # one login (PLAIN, then LOGIN)
        server.busy = False
        assert deliver_outbox(contoso, server.connection_with(AuthSmtp.password), settings.notify_from).sent == 2
    finally:
        server.stop()
