"""Notifications through an outbox (SPEC 4.7): queued in the run's transaction, sent by SMTP.

Messages have deterministic ids (one per contract per snapshot date, one per data-team
alert), so a re-run finds the message already queued or sent and never sends it twice; a
failed send stays in the outbox with its error and is retried by every later delivery, each of
which fails (a red ``notify`` task) while any message is not sent: mail is never given up
silently. A message that can never go out (a refused address) is deleted by hand (runbook).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from sqlalchemy import Connection, Engine, text

from agent_billing.connections import ConnectionInfo, as_bool
from agent_billing.errors import ConfigurationError, UserError
from agent_billing.wording import units_text

log = logging.getLogger(__name__)
CLAIM_LEASE = timedelta(minutes=10)  # far beyond one SMTP send (30 s timeout)
ERRORS_SHOWN = 5  # a week of an SMTP outage must not make a message of every unsent mail


class DeliveryFailed(UserError):
    """Some queued messages could not be sent (they stay in the outbox for the next try), or
    were sent but refused by some recipients (``refused``: nobody retries those, the mail is
    sent; a person fixes the addresses)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused

    @property
    def transient(self) -> bool:
        """Whether a task retries the delivery: yes for messages not sent (the server may take
        them later), not for a refused recipient. The message was sent to the others, so a
        retry would find nothing to send and end the task green, with nobody told."""
        return not self.refused


#: What the run's watcher says in a backstop alert, for a task that ended failed without an alert
#: of its own: the task's own callback would have carried its error.
KILLED = (
    "the task ended failed and the run's watcher found no alert of its own: its process was "
    "killed before it could report an error (out of memory, a lost worker, a timeout's kill); "
    "if an alert of the task itself reached you too, that one carries its error. See the task's log"
)

#: What a backstop alert says instead when it is mailed directly: the watcher could not read
#: the warehouse, so it does not know whether the task alerted itself (most often it did, with
#: the same unreachable warehouse as its error).
KILLED_UNCHECKED = (
    "the task ended failed, and the run's watcher could not read the warehouse to see whether "
    "the task alerted itself: if an alert of the task reached you, it carries the error (often "
    "this same warehouse); if none did, its process was killed before it could report one (out "
    "of memory, a lost worker, a timeout's kill). See the task's log"
)

#: How a task's own alert begins when the watcher's backstop alert went out before it.
FOLLOW_UP = (
    "This follows an alert that said the task was killed before it could report an error: the "
    "task has reported this error since (its failure callback ran after that alert was sent, or "
    "the task was cleared and failed again)."
)
FOLLOW_UP_SUFFIX = ":error"


def queue_failure_alert(conn: Connection, message_id: str, recipients: list[str], subject: str, body: str,
                        *, backstop: bool = False) -> str | None:
    """Queue an alert to the data team, once per ``message_id``; returns the id of the message
    queued (``message_id``, or its follow-up's: ``is_follow_up``), None when none was.

    ``backstop``: the run's watcher's (the task ended failed without an alert of its own, so
    its text is ``KILLED``); it never replaces the task's own. The task's own alert replaces an
    unsent backstop, and follows one already sent or being sent, once, with its error: a slow
    failure callback (a slow warehouse) can still be running when the watcher finds the task
    failed and mails. The run's deliveries are then over: the caller sends a follow-up at once."""
    if queue_message(conn, message_id, "failure", recipients, subject, body, refresh=not backstop):
        return message_id
    told = conn.execute(
        text(f"SELECT body FROM notification_outbox WHERE message_id = :id AND {TOLD}"),
        {"id": message_id, "stale": datetime.now(UTC) - CLAIM_LEASE},
    ).scalar()
    if backstop or told is None or KILLED not in told:
        return None
    follow_up = message_id + FOLLOW_UP_SUFFIX
    new = queue_message(conn, follow_up, "failure", recipients, f"{subject}: its error", f"{FOLLOW_UP}\n\n{body}")
    return follow_up if new else None


def is_follow_up(message_id: str | None) -> bool:
    """Whether ``queue_failure_alert`` queued a follow-up (which nothing else will send soon)."""
    return bool(message_id) and message_id.endswith(FOLLOW_UP_SUFFIX)


def queue_message(
    conn: Connection, message_id: str, kind: str, recipients: list[str], subject: str, body: str,
    *, snapshot_date: date | None = None, refresh: bool = True,
) -> bool:
    """Queue a message unless it is already queued or sent; an unsent one is refreshed (unless
    ``refresh`` is false: a backstop alert never replaces the one its task wrote).

    Atomic on both engines (``INSERT … ON CONFLICT DO NOTHING``, then an update of the row
    only while it is unsent): two runs queueing the same message at once never fail or
    double it. Returns whether the message is new. ``snapshot_date``: the date a unit-change
    message is about (how the mail already sent for a date is found).
    """
    params = {
        "id": message_id, "kind": kind, "recipients": ",".join(recipients),
        "subject": subject, "body": body, "now": datetime.now(UTC), "snapshot_date": snapshot_date,
    }
    inserted = conn.execute(
        text(
            "INSERT INTO notification_outbox (message_id, kind, recipients, subject, body, "
            "created_at, snapshot_date) VALUES (:id, :kind, :recipients, :subject, :body, :now, :snapshot_date) "
            "ON CONFLICT (message_id) DO NOTHING"
        ),
        params,
    ).rowcount == 1
    if not inserted and refresh:  # not while a delivery sends it: it would be marked sent unsaid
        conn.execute(
            text(
                "UPDATE notification_outbox SET recipients = :recipients, subject = :subject, "
                "body = :body WHERE message_id = :id AND sent_at IS NULL "
                "AND (claimed_at IS NULL OR claimed_at < :stale)"
            ),
            {**params, "stale": params["now"] - CLAIM_LEASE},
        )
    return inserted


def _recipients(notify_emails: str) -> list[str]:
    return [e for e in notify_emails.split(",") if e]


def _change_line(name: str, service_id: str, before: int, after: int, effective: date) -> str:
    return f"- {name} ({service_id}): {before} → {units_text(after)}, effective {effective}\n"


def queue_unit_change_mail(conn: Connection, snapshot_date: date) -> int:
    """One message per contract with recipients and nightly changes effective on the date.

    Called after every derivation of the date's changes: an unsent message is refreshed to
    the latest derivation; once a message was sent, a derivation that alters or removes its
    changes queues a correction (never silence), and an unchanged one queues nothing.
    """
    rows = conn.execute(
        text(
            "SELECT c.contract_id, c.notify_emails, s.service_id, s.name, uc.change_id, "
            "uc.units_before, uc.units_after, uc.effective_date "
            "FROM unit_changes uc JOIN services s ON s.service_id = uc.service_id "
            "JOIN contracts c ON c.contract_id = s.contract_id "
            "WHERE uc.effective_date = :d AND uc.source = 'nightly_sync' "
            "ORDER BY c.contract_id, s.service_id"
        ),
        {"d": snapshot_date},
    ).all()
    agents: dict[str, list[str]] = defaultdict(list)
    net: dict[str, int] = defaultdict(int)
    for change_id, agent_name, event in conn.execute(
        text(
            "SELECT a.change_id, a.agent_name, a.event FROM unit_change_agents a "
            "JOIN unit_changes uc ON uc.change_id = a.change_id "
            "WHERE uc.effective_date = :d AND uc.source = 'nightly_sync' ORDER BY a.agent_name"
        ),
        {"d": snapshot_date},
    ):
        agents[change_id].append(f"{agent_name} ({event})")
        net[change_id] += 1 if event in ("added", "moved_in") else -1
    by_contract: dict[str, list] = defaultdict(list)
    emails: dict[str, list[str]] = {}
    for contract_id, notify, service_id, name, cid, before, after, effective in rows:
        emails[contract_id] = _recipients(notify or "")
        # After a Get Units Now reading the change starts from the reading, while its agents
        # are the movement since the previous snapshot: say so when the two differ.
        note = (
            "    (agents below: the movement since the previous snapshot; a Get Units Now "
            "reading in between already counted part of it)\n"
            if agents[cid] and net[cid] != after - before else ""
        )
        by_contract[contract_id].append(
            _change_line(name, service_id, before, after, effective) + note + "".join(f"    {a}\n" for a in agents[cid])
        )
    bodies = {
        contract_id: (
            f"Agent counts changed for contract {contract_id} in the snapshot of {snapshot_date}.\n\n"
            + "".join(lines)
            + "\nThe changes will be prorated from their effective date on the next invoice.\n"
        )
        for contract_id, lines in by_contract.items()
    }
    _hold(conn, "snapshot_date = :d AND kind = 'unit_changes'", {"d": snapshot_date})
    sent = _sent_unit_change_mail(conn, snapshot_date)
    queued, keep = 0, set()
    if sent.keys() - emails.keys():  # the recipients now of contracts told of changes now gone
        emails.update(
            (contract_id, _recipients(notify or ""))
            for contract_id, notify in conn.execute(text("SELECT contract_id, notify_emails FROM contracts"))
            if contract_id in sent and contract_id not in emails
        )
    for contract_id in sorted(bodies.keys() | sent.keys()):
        if not emails.get(contract_id):
            continue  # no recipients (any more): nothing to tell, and an unsent message is withdrawn
        head = f"unit-changes:{contract_id}:{snapshot_date}"
        new, kept = _latest_version(
            conn, head, emails.get(contract_id, []), bodies.get(contract_id), sent.get(contract_id),
            f"[agent-billing] Unit changes for {contract_id} on {snapshot_date}",
            f"[agent-billing] Corrected unit changes for {contract_id} on {snapshot_date}",
            f"This corrects the unit changes we sent for contract {contract_id} in the snapshot of "
            f"{snapshot_date}: the snapshot was processed again (a re-run or a backfill).",
            snapshot_date,
            "The snapshot of that date no longer finds any unit change (a Get Units Now change of that "
            "date, if any, has its own mail).",
        )
        queued += new
        keep.add(kept)
    _withdraw_unsent(
        conn, "snapshot_date = :d AND kind = 'unit_changes' AND SUBSTR(message_id, 1, 13) = 'unit-changes:'",
        {"d": snapshot_date}, keep,
    )
    return queued


@dataclass(frozen=True)
class Told:
    """The latest version of a message the customer has (or is being sent)."""

    message_id: str
    body: str


def _latest_version(
    conn: Connection, head: str, recipients: list[str], body: str | None, last_sent: Told | None,
    subject: str | None, correction_subject: str, why: str, snapshot_date: date | None, nothing_left: str,
) -> tuple[int, str | None]:
    """Keep what the customer is told about a set of unit changes (message ``head``) true to
    their latest derivation (``body``; None: no change left, which a correction says with
    ``nothing_left``). While nothing was sent: the message, refreshed while unsent. Once a
    version was sent: a correction when the changes differ from those last sent (never
    silence), nothing when they do not. Returns the new messages (0 or 1) and the id that stays
    queued (the caller withdraws any other unsent one)."""
    if last_sent is None:
        if body is None:
            return 0, None
        return queue_message(conn, head, "unit_changes", recipients, subject, body, snapshot_date=snapshot_date), head
    if _changes_part(body or "") == _changes_part(last_sent.body):  # what was last told still holds
        return 0, None
    correction = (
        f"{why}\n\n"
        + (_changes_part(body) if body else f"{nothing_left}\n")
        + "\nBilling follows the corrected changes.\n"
    )
    # The id follows what it corrects too: a text told before (changes that flip back) is new
    # after another version (by the text alone it hit the sent one and was never queued).
    version = hashlib.sha256(f"{last_sent.message_id}\n{correction}".encode()).hexdigest()[:12]
    # to the contract's recipients now, as every message: an address removed from the contracts
    # file (a contact who left, a dead mailbox) gets nothing more, its replacement gets this
    message_id = f"{head}:correction:{version}"
    new = queue_message(conn, message_id, "unit_changes", recipients, correction_subject, correction,
                        snapshot_date=snapshot_date)
    return new, message_id


def _hold(conn: Connection, where: str, params: dict) -> None:
    """Lock the messages ``where`` until the transaction ends, before reading what was told.
    A delivery's claim then either came first (and the message counts as told) or waits for
    this transaction and sends what it leaves (refreshed, or nothing: withdrawn). Without it a
    claim between the read and the refresh sent the old text, and the refresh, skipping a
    claimed message, was lost with no correction. SQLite: the derivation already holds the
    database's write lock, which a claim waits for."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(f"SELECT message_id FROM notification_outbox WHERE {where} ORDER BY message_id FOR UPDATE"),
            params,
        )


def withdraw_unsent(conn: Connection, message_ids: str, keep: Iterable[str] = ()) -> int:
    """Withdraw the messages whose id matches ``message_ids`` (a LIKE pattern: ``%`` for any
    text) but ``keep``, if they are still unsent: what they say is no longer true (the gap alert
    of a night since filled, the quarantine alert of a night since released). A message already
    sent stays, as the record of what was told."""
    return _withdraw_unsent(conn, "message_id LIKE :message_ids", {"message_ids": message_ids}, set(keep))


def was_sent(conn: Connection, message_ids: str) -> bool:
    """Whether a message whose id matches ``message_ids`` (a LIKE pattern) was sent."""
    return conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox WHERE message_id LIKE :m AND sent_at IS NOT NULL)"
    ), {"m": message_ids}).scalar() in (True, 1)


def _withdraw_unsent(conn: Connection, where: str, params: dict, keep: set[str | None]) -> int:
    """Delete the unsent messages matching ``where`` other than ``keep``: what they say is no
    longer true (a backfill or another press changed a unit-change message, a gap was filled),
    and a newer version or a correction replaces them. A message a delivery is sending right
    now is left to it."""
    stale = datetime.now(UTC) - CLAIM_LEASE
    candidates = conn.execute(
        text(
            f"SELECT message_id FROM notification_outbox WHERE {where} AND sent_at IS NULL "
            "AND (claimed_at IS NULL OR claimed_at < :stale)"
        ),
        {**params, "stale": stale},
    ).scalars().all()
    withdrawn = sorted(m for m in candidates if m not in keep)
    for message_id in withdrawn:
        conn.execute(
            text("DELETE FROM notification_outbox WHERE message_id = :id AND sent_at IS NULL "
                 "AND (claimed_at IS NULL OR claimed_at < :stale)"),
            {"id": message_id, "stale": stale},
        )
    if withdrawn:
        log.info("outbox: withdrew %d unsent message(s) no longer true: %s", len(withdrawn), ", ".join(withdrawn))
    return len(withdrawn)


def _changes_part(body: str) -> str:
    """The change lines of a unit-change message or correction (what a correction compares)."""
    lines = body.splitlines(keepends=True)
    return "".join(line for line in lines if line.startswith(("- ", "    ")))


#: A unit-change message the customer has (or is being sent right now: a delivery claims it,
#: then sends what it holds): what was told, which a later derivation corrects, never refreshes.
TOLD = "(sent_at IS NOT NULL OR claimed_at >= :stale)"
TOLD_ORDER = "COALESCE(sent_at, claimed_at), created_at"


def _sent_unit_change_mail(conn: Connection, snapshot_date: date) -> dict[str, Told]:
    """Per contract, the id and body of the latest unit-change message (original or
    correction) told for the date (found by the date's index, migration 0010)."""
    prefix = "unit-changes:"
    latest: dict[str, Told] = {}
    for message_id, body in conn.execute(
        text(
            "SELECT message_id, body FROM notification_outbox "
            f"WHERE snapshot_date = :d AND kind = 'unit_changes' AND {TOLD} ORDER BY {TOLD_ORDER}"
        ),
        {"d": snapshot_date, "stale": datetime.now(UTC) - CLAIM_LEASE},
    ):
        head = message_id.split(":correction:")[0]
        if head.endswith(f":{snapshot_date}"):
            latest[head[len(prefix):-len(f":{snapshot_date}")]] = Told(message_id, body)
    return latest


def queue_mail_for(conn: Connection, moved: Iterable[tuple[date, str, str]], nights: Iterable[date] = ()) -> int:
    """After a re-derivation: what customers were told follows every change it moved, of any
    day and either source (``Rederived.moved``: effective date, source, service), and each of
    ``nights`` is mailed in any case (a night's first mail). A night's changes are one message
    per contract and date; a press's, one per service and day. Returns the messages queued."""
    # here, not at the top: sync.changes imports sync.scopes, which imports this module
    from agent_billing.sync.changes import NIGHTLY, READING, day_change

    moved = set(moved)
    queued = 0
    for night in sorted({d for d, source, _ in moved if source == NIGHTLY} | set(nights)):
        queued += queue_unit_change_mail(conn, night)
    for day, service_id in sorted({(d, sid) for d, source, sid in moved if source == READING}):
        press = day_change(conn, service_id, day, READING)
        queued += queue_units_now_mail(
            conn, service_id, press.detected_at if press else None, day,
            (press.units_before, press.units_after) if press else None,
        )
    return queued


def queue_units_now_mail(conn: Connection, service_id: str, observed_at: datetime | None, day: date,
                         change: tuple[int, int] | None) -> bool:
    """After a Get Units Now press: the message about the service's press change of ``day``
    (``change``: units before and after, None when the day has none left) kept true as for
    a night's changes: one message per service and day, refreshed while unsent, corrected once
    sent when another press that day changes or withdraws it. Returns whether one was queued."""
    row = conn.execute(
        text(
            "SELECT c.contract_id, c.notify_emails, s.name FROM services s "
            "JOIN contracts c ON c.contract_id = s.contract_id WHERE s.service_id = :sid"
        ),
        {"sid": service_id},
    ).first()
    head = f"units-now:{service_id}:{day}"
    same_head = "(message_id = :head OR SUBSTR(message_id, 1, :n) = :corrections)"
    params = {"head": head, "n": len(head) + 12, "corrections": f"{head}:correction:"}
    _hold(conn, same_head, params)
    if row is None or not row.notify_emails:  # no recipients (any more): nothing to tell
        _withdraw_unsent(conn, same_head, params, set())
        return False
    told = conn.execute(
        text(f"SELECT message_id, body FROM notification_outbox WHERE {same_head} AND {TOLD} "
             f"ORDER BY {TOLD_ORDER}"),
        {**params, "stale": datetime.now(UTC) - CLAIM_LEASE},
    ).all()
    last_sent = Told(told[-1].message_id, told[-1].body) if told else None
    body = subject = None
    if change is not None:
        before, after = change
        at = observed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = (
            f"Agent counts changed for contract {row.contract_id} (Get Units Now at {at}).\n\n"
            + _change_line(row.name, service_id, before, after, day)
            + "\nThe change will be prorated from its effective date on the next invoice.\n"
        )
        subject = f"[agent-billing] Unit change for {row.contract_id}: {service_id} now {after}"
    new, kept = _latest_version(
        conn, head, _recipients(row.notify_emails), body, last_sent, subject,
        f"[agent-billing] Corrected unit change for {row.contract_id}: {service_id} on {day}",
        f"This corrects the Get Units Now change we sent for {service_id} on {day}: a later press "
        "that day, or a night processed since, replaced it.",
        None,
        f"There is no longer a Get Units Now change of {service_id} on that date (a change the snapshot "
        "of that date found is in that snapshot's own unit-change mail).",
    )
    _withdraw_unsent(conn, same_head, params, {kept})
    return bool(new)


@dataclass(frozen=True)
class DeliveryResult:
    sent: int
    waiting: int


def deliver_outbox(engine: Engine, smtp: ConnectionInfo | None, sender: str,
                   only: str | None = None) -> DeliveryResult:
    """Send every unsent message (``only``: that one message, if unsent). Each is claimed first
    (``claimed_at``, for ``CLAIM_LEASE``), so two deliveries running at once never send one
    message twice."""
    with engine.connect() as conn:
        pending = conn.execute(
            text(
                "SELECT message_id FROM notification_outbox "
                "WHERE sent_at IS NULL AND (claimed_at IS NULL OR claimed_at < :stale) "
                + ("AND message_id = :only " if only is not None else "")
                + "ORDER BY created_at, message_id"
            ),
            {"stale": datetime.now(UTC) - CLAIM_LEASE, "only": only},
        ).all()
    if not pending:
        return DeliveryResult(0, 0)
    if smtp is None:
        log.warning("smtp_default is not configured: %d message(s) wait in notification_outbox", len(pending))
        return DeliveryResult(0, len(pending))
    if not smtp.host:  # a host name alone (mail.example.com) reads as a URI's path, and no host
        raise ConfigurationError(
            f"connection {smtp.conn_id!r} has no host: write it as smtp://mail.example.com:587 (or in JSON "
            f"form); {len(pending)} message(s) wait in notification_outbox"
        )
    _security(smtp)  # a yes/no extra that is neither: refused once, not once per message
    sent, errors, refused, unreachable, why = 0, [], [], None, ""
    for position, (message_id,) in enumerate(pending):
        if (claimed := _claim(engine, message_id)) is None:
            continue  # another delivery is sending it, or it was withdrawn meanwhile
        recipients, subject, body = claimed
        try:
            turned_away = send_now(smtp, sender, message_id, recipients, subject, body)
        except LoginRefused as exc:  # every message would fail the same way, one login each
            _mark(engine, message_id, error=str(exc))
            raise ConfigurationError(
                f"{exc}: fix its login and password (README 'Configuration'); no other message was "
                "tried, as servers lock an account after repeated failed logins, and every unsent "
                "message stays in notification_outbox"
            ) from None
        except Exception as exc:  # noqa: BLE001 - whatever it is, the message waits with its error
            error = f"{type(exc).__name__}: {exc}"
            errors.append(f"{message_id}: {error}")
            _mark(engine, message_id, error=error)  # the claim is released: the next delivery retries
            if why := _server_down(exc):
                # down, mute or taking no login now: each other message would fail the same way
                unreachable = len(pending) - position - 1
                break
            continue
        if turned_away:  # delivered to the others: sent (never twice), the refusal told
            refusal = refused_by(turned_away)
            refused.append(f"{message_id}: {refusal}")
            _mark(engine, message_id, error=refusal, sent=True)
        else:
            _mark(engine, message_id, error=None)
        sent += 1
    log.info("outbox: %d sent, %d failed, %d with refused recipients", sent, len(errors), len(refused))
    if errors or refused:
        problems = errors + refused
        more = len(problems) - ERRORS_SHOWN
        shown = "; ".join(problems[:ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        parts = []
        if errors:
            parts.append(f"{len(errors)} message(s) not sent via SMTP {smtp.host}:{smtp.port}"
                         + (f" ({unreachable} more not tried: {why})" if unreachable else ""))
        if refused:
            parts.append(f"{len(refused)} sent but refused by some recipients (fix their notify_emails)")
        raise DeliveryFailed(
            "; ".join(parts) + f": {shown}"
            + (" (unsent messages stay in notification_outbox and every delivery retries them)" if errors else ""),
            refused=bool(refused),
        )
    return DeliveryResult(sent, 0)


def _server_down(exc: BaseException) -> str:
    """Why no other message can go now (empty when the others may): the server cannot be
    reached or stopped answering, or cannot take a login for now (4xx; 5xx is ``LoginRefused``).
    Not one message's refusal (smtplib's errors are OSErrors too: a refused recipient or content
    is the message's, the others go)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "the server could not take a login"
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected) or (
            isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)):
        return "the server did not answer"
    return ""


def send_now(smtp: ConnectionInfo, sender: str, message_id: str, recipients: str, subject: str, body: str) -> dict:
    """Send one message by SMTP (``recipients``: comma-separated, as the outbox keeps them).
    The outbox's delivery uses it, and an alert that the warehouse cannot take. Returns the
    recipients the server refused while it took the others (address: (code, reason))."""
    mail = EmailMessage()
    mail["From"] = smtp.extra.get("from_email") or sender
    mail["To"] = recipients
    mail["Subject"] = subject
    mail["Date"] = formatdate(usegmt=True)
    # Header-safe and unique whatever the ids hold (a space or a non-ASCII letter in a contract
    # id cut the header short: every mail of the contract had one id, or none could be sent);
    # the outbox id itself travels in its own header, for support.
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:32]
    mail["Message-ID"] = f"<{digest}@{_mail_domain(str(mail['From']))}>"
    mail["X-Agent-Billing-Message"] = message_id
    mail.set_content(body)
    return _send(smtp, mail)


def refused_by(turned_away: dict) -> str:
    """``refused by a@x (550 why), …``: the recipients ``send_now`` says the server refused."""
    return "refused by " + ", ".join(f"{address} ({code} {_text(why)})" for address, (code, why) in turned_away.items())


def _mail_domain(sender: str) -> str:
    """The sender's domain as ASCII (IDNA), for Message-IDs; a placeholder when there is none."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii") if domain else "agent-billing.invalid"
    except UnicodeError:
        return "agent-billing.invalid"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _claim(engine: Engine, message_id: str) -> tuple[str, str, str] | None:
    """Take the message for this delivery unless another one holds a fresh claim on it (a
    claim older than the lease belongs to a delivery that died and is taken over); returns its
    recipients, subject and body as claimed, which no refresh changes until it is sent."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        claimed = conn.execute(
            text(
                "UPDATE notification_outbox SET claimed_at = :now, attempts = attempts + 1 "
                "WHERE message_id = :id AND sent_at IS NULL "
                "AND (claimed_at IS NULL OR claimed_at < :stale)"
            ),
            {"id": message_id, "now": now, "stale": now - CLAIM_LEASE},
        )
        if claimed.rowcount != 1:
            return None
        row = conn.execute(
            text("SELECT recipients, subject, body FROM notification_outbox WHERE message_id = :id"),
            {"id": message_id},
        ).one()
        return row.recipients, row.subject, row.body


def _mark(engine: Engine, message_id: str, error: str | None, *, sent: bool | None = None) -> None:
    """Sent (``sent``, by default when there is no error) or waiting with its error; the claim ends."""
    sent = error is None if sent is None else sent
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE notification_outbox SET sent_at = :sent_at, last_error = :error, "
                "claimed_at = NULL WHERE message_id = :id"
            ),
            {"sent_at": datetime.now(UTC) if sent else None,
             "error": error[:1000] if error else None, "id": message_id},
        )


def _security(smtp: ConnectionInfo) -> tuple[bool, bool]:
    """(plain: no SSL, ``disable_ssl``; STARTTLS on a plain connection, unless ``disable_tls``)."""
    what = f"connection {smtp.conn_id!r}: extra"
    plain = as_bool(smtp.extra.get("disable_ssl"), False, f"{what} disable_ssl")
    return plain, not as_bool(smtp.extra.get("disable_tls"), False, f"{what} disable_tls")


def _send(smtp: ConnectionInfo, mail: EmailMessage) -> dict:
    """Send like Airflow's SMTP provider: SSL unless ``disable_ssl``; STARTTLS unless ``disable_tls``."""
    timeout = float(smtp.extra.get("timeout", 30))
    plain, starttls = _security(smtp)
    port = smtp.port or (25 if plain else 465)  # Airflow's defaults
    if not plain:
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, port, timeout=timeout)
        if starttls:
            client.starttls(context=ssl.create_default_context())
    with client:
        if smtp.login:
            try:
                client.login(smtp.login, smtp.password or "")
            except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
                if not str(getattr(exc, "smtp_code", 500)).startswith("5"):
                    raise  # 454, 421: the server's passing trouble; the delivery retries it
                raise LoginRefused(
                    f"the SMTP server {smtp.host}:{port} refused the login of smtp_default as "
                    f"{smtp.login!r}: {_smtp_reply(exc)}"
                ) from None
        return client.send_message(mail)


class LoginRefused(Exception):
    """The SMTP server refused the connection's login for good (5xx, or no login offered): a
    setting to fix, not one message's fault."""


def _smtp_reply(exc: smtplib.SMTPException) -> str:
    """The server's reply (code and text), or smtplib's own reason (no AUTH offered)."""
    code, why = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None)
    return f"{code} {_text(why)}" if code is not None else str(exc)
