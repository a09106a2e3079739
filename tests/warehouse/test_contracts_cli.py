"""Bad input through the real command line: exit 2, one line naming file, line and entry,
no traceback, and a warehouse left exactly as it was (every row of every table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent_billing.cli import main
from agent_billing.contracts import ContractsFileError, load_contracts_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "contracts.yaml"
LONG_ID = "S-" + "X" * 63  # 65 characters: one more than the limit
LONG_NAME = "N" * 201

# (what is wrong, [(old text, new text)], text on the line the message must point at,
#  what the message must say)
MISTAKES = [
    ("contract ends before it starts",
     [("        end_date: null ", "        end_date: 2024-02-01 ")],
     "end_date: 2024-02-01",
     "accounts[0] (CONTOSO) > contracts[0] (C-CONTOSO-2024) > end_date: end_date 2024-02-01 is before start_date 2024-03-01"),
    ("service ends before it starts",
     [("end_date: 2025-02-28", "end_date: 2023-12-31")],
     "end_date: 2023-12-31",
     "services[1] (S-CONTOSO-SRV) > end_date: end_date 2023-12-31 is before start_date 2024-03-01"),
    ("currency that is not ISO 4217",
     [("currency: EUR", "currency: EUU")],
     "currency: EUU",
     "contracts[0] (C-FABRIKAM) > currency: 'EUU' is not an active ISO 4217 currency code"),
    ("negative unit price",
     [('unit_price: "99.00"', 'unit_price: "-1"')],
     'unit_price: "-1"',
     "services[2] (S-CONTOSO-SUP) > unit_price: -1 is outside 0 … 999,999,999.9999"),
    ("unit price above the limit",
     [('unit_price: "99.00"', "unit_price: 1000000000")],
     "unit_price: 1000000000",
     "services[2] (S-CONTOSO-SUP) > unit_price: 1000000000 is outside 0 … 999,999,999.9999"),
    ("a manual service whose line no money column holds",
     [('unit_price: "99.00"', 'unit_price: "99999.00"'), ("units: 3\n", "units: 2147483647\n")],
     "service_id: S-CONTOSO-SUP",
     "services[2] (S-CONTOSO-SUP): units × unit_price = 214,746,217,216,353.00 is more than an "
     "invoice line can hold (99,999,999,999,999.9999)"),
    ("unit price with 5 decimals",
     [('unit_price: "7.1250"', 'unit_price: "7.12501"')],
     'unit_price: "7.12501"',
     "services[0] (S-FABRIKAM-BACKUP) > unit_price: 7.12501 has more than 4 decimals"),
    ("a unit price that is no number",
     [('unit_price: "7.1250"', "unit_price: .inf")],
     "unit_price: .inf",
     "services[0] (S-FABRIKAM-BACKUP) > unit_price: "),
    ("a timestamp where a date belongs",
     [("start_date: 2024-06-15\n        services:", "start_date: 2024-06-15 10:00:00\n        services:")],
     "start_date: 2024-06-15 10:00:00",
     "contracts[0] (C-FABRIKAM) > start_date: 2024-06-15 10:00:00 has a time of day; write the date only"),
    ("service id longer than the schema allows",
     [("service_id: S-CONTOSO-SUP", f"service_id: {LONG_ID}")],
     f"service_id: {LONG_ID}",
     f"services[2] ({LONG_ID}) > service_id: 65 characters, at most 64 allowed"),
    ("account name longer than the schema allows",
     [("name: Fabrikam GmbH", f"name: {LONG_NAME}")],
     f"name: {LONG_NAME}",
     "accounts[1] (FABRIKAM) > name: 201 characters, at most 200 allowed"),
    ("a date YAML itself cannot build",
     [("start_date: 2024-06-15\n        services:", "start_date: 2024-02-30\n        services:")],
     "start_date: 2024-02-30",
     "contracts[0] (C-FABRIKAM) > start_date: '2024-02-30' is not a valid date (YYYY-MM-DD): day is out of range for month"),
    ("a year-1 date, a typo that would bill every month since year 1 on an invoice never edited",
     [("start_date: 2024-06-15\n        services:", "start_date: 0001-06-15\n        services:")],
     "start_date: 0001-06-15",
     "contracts[0] (C-FABRIKAM) > start_date: 0001-06-15: expected a date from 1900-01-01 to 9998-12-31"),
    ("an end written 9999-12-31 for no end, past the last date a run can bill",
     [("units: 4\n            start_date: 2024-06-15", "units: 4\n            start_date: 2024-06-15\n"
                                                         "            end_date: 9999-12-31")],
     "end_date: 9999-12-31",
     "services[0] (S-FABRIKAM-BACKUP) > end_date: 9999-12-31: expected a date from 1900-01-01 to 9998-12-31; "
     "for no end, leave end_date out (null)"),
    ("a service that ends before its contract starts, so it would never bill",
     [("units: 4\n            start_date: 2024-06-15",
       "units: 4\n            start_date: 2024-01-01\n            end_date: 2024-05-31")],
     "contract_id: C-FABRIKAM",
     "contracts[0] (C-FABRIKAM): service S-FABRIKAM-BACKUP ends on 2024-05-31, before the contract starts "
     "(2024-06-15): it would never be billed"),
    ("an end-of-file byte an old editor appended, which YAML refused with a traceback",
     [("units: 4\n", "units: 4\x1a\n")],
     "units: 4",
     "the character U+001A (a control character) cannot be in a YAML file: remove it"),
    ("a stray NUL in a UTF-8 file: named as a character to remove, not as UTF-16",
     [("name: Fabrikam GmbH", "name: Fabrikam\x00GmbH")],
     "name: Fabrikam",
     "the character U+0000 (a control character) cannot be in a YAML file: remove it"),
    ("a quoted invalid date",
     [("units_effective_date: 2024-04-01", 'units_effective_date: "2024-13-01"')],
     'units_effective_date: "2024-13-01"',
     "services[2] (S-CONTOSO-SUP) > units_effective_date: '2024-13-01' is not a valid date"),
    ("a number where an id must be a string",
     [("account_id: FABRIKAM", "account_id: 4711")],
     "account_id: 4711",
     'accounts[1] (4711) > account_id: 4711 is read as a int, not text: quote it ("4711")'),
    ("a zero-padded number where an id must be a string: the advice keeps the zeros",
     [("account_id: FABRIKAM", "account_id: 004711")],
     "account_id: 004711",
     'account_id: 004711 is read as a int, not text: quote it ("004711")'),
    ("the same service id twice",
     [("service_id: S-FABRIKAM-BACKUP", "service_id: S-CONTOSO-WS")],
     "service_id: S-CONTOSO-WS\n            name: Offsite",
     "duplicate service_id S-CONTOSO-WS (first on line"),
    ("the same service id twice, once with a trailing space",
     [("service_id: S-FABRIKAM-BACKUP", 'service_id: "S-CONTOSO-WS "')],
     'service_id: "S-CONTOSO-WS "',
     "duplicate service_id S-CONTOSO-WS (first on line"),
    ("a number YAML reads as hexadecimal",
     [("units: 4\n", "units: 0x10\n")],
     "units: 0x10",
     "0x10 is not a decimal number (YAML reads 0x as hex"),
    ("a number YAML reads in base 60",
     [("units: 4\n", "units: 1:30\n")],
     "units: 1:30",
     "1:30 is not a decimal number"),
    ("a name with a line break, which would break every one-line message and export row",
     [("name: Fabrikam GmbH", 'name: "Fabrikam\\nGmbH"')],
     'name: "Fabrikam\\nGmbH"',
     "accounts[1] (FABRIKAM) > name: 'Fabrikam\\nGmbH' holds a control character"),
    ("a service id with a zero-width space pasted from a web page, which made a second service",
     [("service_id: S-CONTOSO-WS", 'service_id: "S-CONTOSO-WS\u200b"')],
     'service_id: "S-CONTOSO-WS\u200b"',
     "service_id: 'S-CONTOSO-WS\\u200b' holds a control character or an "
     "invisible one (U+200B ZERO WIDTH SPACE): retype it"),
    ("a name reordered by a bidirectional override",
     [("name: Fabrikam GmbH", 'name: "Fabrikam \u202eHbmG"')],
     'name: "Fabrikam \u202eHbmG"',
     "holds a control character or an invisible one (U+202E RIGHT-TO-LEFT OVERRIDE): retype it"),
    ("a VSA id in digits that are not 0-9",
     [('vsa_org_id: "73511820644390182275501461"', 'vsa_org_id: "\u0667\u0663\u0665"')],
     'vsa_org_id: "\u0667\u0663\u0665"',
     "accounts[0] (CONTOSO) > vsa_org_id: '٧٣٥' is not a VSA id: decimal digits only, at most 26, "
     "without spaces (copy it from VSA)"),
    ("a VSA id with a space, as a person groups digits",
     [('vsa_org_id: "73511820644390182275501461"', 'vsa_org_id: "7351 1820"')],
     'vsa_org_id: "7351 1820"',
     "accounts[0] (CONTOSO) > vsa_org_id: '7351 1820' is not a VSA id: decimal digits only"),
    ("a service id YAML reads as no",
     [("service_id: S-FABRIKAM-BACKUP", "service_id: NO")],
     "service_id: NO",
     'service_id: a yes/no word (yes, no, on, off, true, false) is read as a bool, not text: quote it as you '
     'wrote it ("NO")'),
    ("a name holding a colon, unquoted",
     [("name: Fabrikam GmbH", "name: Fabrikam: GmbH")],
     "name: Fabrikam: GmbH",
     "mapping values are not allowed here: a value holding ': ' must be quoted"),
    ("a name holding ' #', which YAML reads as the start of a comment (the example's '# up to' is one)",
     [("name: Fabrikam GmbH", "name: Fabrikam #2 GmbH")],
     "name: Fabrikam #2 GmbH",
     "YAML reads this name as 'Fabrikam' and '#2 GmbH' as a comment: if it is part of the name, quote the "
     'whole name (name: "Fabrikam #2 GmbH"); a comment goes on a line of its own'),
    ("a tab where YAML wants spaces",
     [("    name: Fabrikam GmbH", "\tname: Fabrikam GmbH")],
     "\tname: Fabrikam GmbH",
     "found character '\\t' that cannot start any token: indent with spaces, not tabs"),
    ("a price with a decimal comma",
     [('unit_price: "12.50"', 'unit_price: "12,50"')],
     'unit_price: "12,50"',
     "services[0] (S-CONTOSO-WS) > unit_price: '12,50' is not a price: write digits with a dot before the "
     'decimals, without a currency sign, spaces or thousands separators ("12.50")'),
    ("a price with a currency sign",
     [('unit_price: "12.50"', 'unit_price: "$12.50"')],
     'unit_price: "$12.50"',
     "unit_price: '$12.50' is not a price: write digits with a dot"),
    ("units written as YAML's yes, which would be 1 unit",
     [("units: 4\n", "units: yes\n")],
     "units: yes",
     "services[0] (S-FABRIKAM-BACKUP) > units: true is a yes/no, not a number"),
    ("exclude_offline_days written as a flag, which would be a 1-day cutoff",
     [("exclude_offline_days: 30", "exclude_offline_days: yes")],
     "exclude_offline_days: yes",
     "services[0] (S-CONTOSO-WS) > exclude_offline_days: true is a yes/no, not a number"),
    ("an offline cutoff beyond a hundred years, which PostgreSQL's column refused with no line",
     [("exclude_offline_days: 30", "exclude_offline_days: 3000000000")],
     "exclude_offline_days: 3000000000",
     "services[0] (S-CONTOSO-WS) > exclude_offline_days: Input should be less than or equal to 36500"),
    ("a price in fullwidth digits, which Python reads as 12",
     [('unit_price: "12.50"', 'unit_price: "\uff11\uff12"')],
     'unit_price: "\uff11\uff12"',
     "services[0] (S-CONTOSO-WS) > unit_price: '\uff11\uff12' is not a price: write it with the digits 0-9"),
    ("a manual unit change before its service starts",
     [("units_effective_date: 2024-04-01", "units_effective_date: 2023-04-01")],
     "service_id: S-CONTOSO-SUP",
     "services[2] (S-CONTOSO-SUP): units_effective_date 2023-04-01 is before the service starts (2024-03-01)"),
    ("a service that starts after its contract ends",
     [("start_date: 2024-06-15\n        services:", "start_date: 2024-06-15\n        end_date: 2024-06-30\n        services:"),
      ("units: 4\n            start_date: 2024-06-15", "units: 4\n            start_date: 2024-07-01")],
     "contract_id: C-FABRIKAM",
     "service S-FABRIKAM-BACKUP starts on 2024-07-01, after the contract ends (2024-06-30)"),
    ("a key YAML reads as a list",
     [("name: Fabrikam GmbH", "? [a, b]\n    : 1\n    name: Fabrikam GmbH")],
     "? [a, b]",
     "a key must be a field name, not a list"),
    ("the same key twice in one entry",
     [("units: 4\n", "units: 4\n            units: 5\n")],
     "units: 5",
     "'units' appears twice in the same entry"),
    ("a locked change: the view of a saved service",
     [('vsa_view_id: "55120913"', 'vsa_view_id: "55120914"')],
     "service_id: S-CONTOSO-SRV",
     "service S-CONTOSO-SRV: vsa_view_id cannot change once the service is saved"),
]


def contents(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            table: sorted(repr(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))
            for table in sorted(sa.inspect(conn).get_table_names())
        }


def write_mistake(tmp_path: Path, replacements: list[tuple[str, str]]) -> Path:
    text = EXAMPLE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "contracts.yaml"
    path.write_text(text)
    return path


def line_of(path: Path, needle: str) -> int:
    text = path.read_text()
    return text[: text.index(needle)].count("\n") + 1


def test_every_mistake_is_one_line_naming_file_line_and_entry_and_changes_nothing(warehouse, tmp_path, capsys):
    assert main(["contracts", "apply", str(EXAMPLE)]) == 0
    capsys.readouterr()
    before = contents(warehouse)
    for what, replacements, needle, expected in MISTAKES:
        path = write_mistake(tmp_path, replacements)
        for mode in ([], ["--plan"], ["--check"]):
            code = main(["contracts", "apply", str(path), *mode])
            err = capsys.readouterr().err
            lines = err.strip().splitlines()
            assert code == 2, (what, mode, err)
            assert len(lines) == 1, (what, mode, err)
            if "refused" in lines[0] and mode:  # a lock in a preview: the plan names it on stdout
                continue
            assert lines[0].startswith(f"agent-billing contracts apply: error: {path}:{line_of(path, needle)}: "), (what, err)
            assert expected in lines[0], (what, err)
            assert "Traceback" not in err
        assert contents(warehouse) == before, what


def test_a_refusal_in_a_preview_is_printed_in_the_plan(warehouse, tmp_path, capsys):
    assert main(["contracts", "apply", str(EXAMPLE)]) == 0
    path = write_mistake(tmp_path, [('vsa_view_id: "55120913"', 'vsa_view_id: "55120914"')])
    capsys.readouterr()
    before = contents(warehouse)
    assert main(["contracts", "apply", str(path), "--check"]) == 2
    out, err = capsys.readouterr()
    line = line_of(path, "service_id: S-CONTOSO-SRV")
    assert out.splitlines()[0].startswith(f"! REFUSED   service S-CONTOSO-SRV (line {line}): vsa_view_id cannot change")
    assert "= unchanged" not in out and "1 refused" in out.splitlines()[-1]
    assert err.strip() == "agent-billing contracts apply: error: 1 entry refused; nothing would be applied"
    assert main(["contracts", "apply", str(path), "--plan"]) == 2
    out = capsys.readouterr().out
    assert "= unchanged account CONTOSO (line 10)" in out and "      vsa_view_id: 55120913 → 55120914" in out
    assert contents(warehouse) == before


def test_plan_of_the_applied_example_says_unchanged(warehouse, capsys):
    assert main(["contracts", "apply", str(EXAMPLE), "--plan"]) == 0
    assert contents(warehouse)["services"] == []
    out = capsys.readouterr().out
    assert out.count("+ create") == 8 and "would apply" in out
    assert main(["contracts", "apply", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["contracts", "apply", str(EXAMPLE), "--plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("= unchanged") for line in out) == 8
    assert out[-1].endswith("(no changes)")


def test_prune_needs_an_end_date_and_the_end_date_must_be_a_date(warehouse, capsys):
    for argv in (["--prune"], ["--end-date", "2024-12-31"], ["--prune", "--end-date", "2024-02-30"],
                 ["--prune", "--end-date", "2025-W01-1"], ["--prune", "--end-date", "20250101"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["contracts", "apply", str(EXAMPLE), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        if "W01" in argv[-1] or argv[-1] == "20250101":  # Python reads both: ended entries on 2024-12-30
            assert f"invalid --end-date '{argv[-1]}': expected YYYY-MM-DD" in err


@pytest.mark.parametrize("replacements, needle", [
    ([("start_date: 2024-06-15\n        services:", "start_date: 2024-02-30\n        services:")],
     "start_date: 2024-02-30"),
    ([("      - contract_id: C-FABRIKAM", "      - contract_id: [C-FABRIKAM")], "contract_id: [C-FABRIKAM"),
])
def test_a_separate_process_prints_one_line_and_no_traceback(sqlite_warehouse_url, tmp_path, replacements, needle):
    path = write_mistake(tmp_path, replacements)
    env = {**os.environ, "AIRFLOW_CONN_BILLING_WAREHOUSE": sqlite_warehouse_url}
    result = subprocess.run([sys.executable, "-m", "agent_billing.cli", "contracts", "apply", str(path)],
                            env=env, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(errors) == 1 and str(path) in errors[0]
    line = line_of(path, needle)
    assert f"{path}:{line}: " in errors[0] or f"on line {line})" in errors[0]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "cp1252"])
@pytest.mark.parametrize("name", ["Fabrikam Müller GmbH", "Fabrikam GmbH"])
def test_a_file_saved_in_another_encoding_says_to_save_it_as_utf8(tmp_path, encoding, name):
    """Excel's "Unicode text" is UTF-16 (with a byte-order mark, or without one from other
    tools: then every other byte of its text is a NUL, which YAML refused with a traceback);
    Notepad's "ANSI" is the local code page."""
    path = tmp_path / "contracts.yaml"
    path.write_bytes(EXAMPLE.read_text().replace("Fabrikam GmbH", name).encode(encoding))
    if encoding == "cp1252" and name.isascii():
        load_contracts_file(path)  # ASCII is ASCII in every one of them
        return
    with pytest.raises(ContractsFileError) as refused:
        load_contracts_file(path)
    line = 1 if encoding == "utf-16" or name.isascii() else line_of(EXAMPLE, "name: Fabrikam GmbH")
    kind = "not UTF-8" if encoding == "cp1252" else "UTF-16"
    assert str(refused.value).startswith(f"{path}:{line}: the file is {kind} (")
    assert str(refused.value).endswith("save it as UTF-8 (Excel: Save As, CSV UTF-8 or text; Notepad: Save As, "
                                       "Encoding UTF-8)")


def test_zero_padded_numbers_are_decimal(tmp_path):
    """A zero-padded number (from a spreadsheet) means what it says: YAML 1.1 would read 010 as
    octal 8 and 07 as 7 but 08 as text; every one of them is its decimal value here."""
    from agent_billing.contracts.schema import read_contracts_file

    path = write_mistake(tmp_path, [("units: 4\n", "units: 010\n"), ("units: 3\n", "units: 08\n"),
                                    ("billing_day: 15", "billing_day: 07")])
    accounts = read_contracts_file(path).spec.accounts
    fabrikam = accounts[1].contracts[0]
    assert (fabrikam.billing_day, fabrikam.services[0].units) == (7, 10)
    assert accounts[0].contracts[0].services[2].units == 8


@pytest.mark.parametrize("name", ["شرکت نرم\u200cافزار", "Dev \U0001F469\u200d\U0001F4BB team", "Café Ltd"])
def test_names_keep_the_joiners_their_spelling_needs(tmp_path, name):
    """The rule against invisible characters refuses none that spelling needs: Persian's
    zero-width non-joiner, the joiner of emoji sequences, accents."""
    path = write_mistake(tmp_path, [("name: Fabrikam GmbH", f'name: "{name}"')])
    assert any(a.name == name for a in load_contracts_file(path).accounts)


@pytest.mark.parametrize(("old_id", "new_id", "after"), [("S-CONTOSO-WS", "S-CONTOSO-WS-NEW", " "),
                                                     ("S-CONTOSO-SUP", "S-SUP-2", "\n")], ids=["counted", "manual"])
def test_a_renamed_service_id_is_refused_not_billed_twice(warehouse, tmp_path, capsys, old_id, new_id, after):
    """Renaming a service_id in the file adds a service and leaves the old one, not in the file,
    billing as it was: the customer would pay twice for the same agents (or the same manual
    line). Refused, naming both and the way out; pruning the old one (ended the day before), or
    keeping both in the file (two products on the same agents), is applied."""
    assert main(["contracts", "apply", str(EXAMPLE)]) == 0
    capsys.readouterr()
    before = contents(warehouse)
    renamed = write_mistake(tmp_path, [(f"service_id: {old_id}{after}", f"service_id: {new_id}{after}")])
    assert main(["contracts", "apply", str(renamed)]) == 2
    out, err = capsys.readouterr()
    line = line_of(renamed, f"service_id: {new_id}")
    refusal = next(x for x in err.splitlines() if ": error: " in x)
    bills = "the same agents" if old_id == "S-CONTOSO-WS" else "the same name (Support block)"
    assert refusal.startswith(f"agent-billing contracts apply: error: {renamed}:{line}: service {new_id}: bills {bills} "
                              f"as service {old_id}, which is not in the file and still bills from 2024-03-01"), refusal
    assert "the customer would pay twice" in refusal and "--prune --end-date D" in refusal
    assert contents(warehouse) == before

    text = renamed.read_text()
    at = text.index(f"service_id: {new_id}")
    moved = text[at:].replace("start_date: 2024-03-01", "start_date: 2024-04-11", 1)
    if after == "\n":  # the manual service's units take effect within its dates
        moved = moved.replace("units_effective_date: 2024-04-01", "units_effective_date: 2024-04-11", 1)
    renamed.write_text(text[:at] + moved)
    assert main(["contracts", "apply", str(renamed), "--prune", "--end-date", "2024-04-10"]) == 0, capsys.readouterr()
    with warehouse.connect() as conn:
        ends = dict(conn.execute(sa.text("SELECT service_id, end_date FROM services WHERE service_id IN (:a, :b)"),
                                 {"a": old_id, "b": new_id}).all())
    assert {k: None if v is None else str(v)[:10] for k, v in ends.items()} == {old_id: "2024-04-10", new_id: None}
