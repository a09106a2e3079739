"""``agent-billing vsa probe``: check the VSA connection and show what the user can see."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    vsa = sub.add_parser("vsa", help="Kaseya VSA connection")
    vsa_sub = vsa.add_subparsers(dest="vsa_command", required=True)
    probe = vsa_sub.add_parser(
        "probe",
        help="authenticate with AIRFLOW_CONN_VSA_DEFAULT and print the record counts as JSON",
    )
    probe.add_argument("--conn-id", default="vsa_default", help="connection id (vsa_default)")
    probe.set_defaults(handler=_probe, check_schema=False, check_settings=False)  # VSA only: no warehouse, no setting


def _probe(args: argparse.Namespace) -> int:
    from agent_billing.vsa import VsaClient

    with VsaClient.from_env(args.conn_id) as client:
        client.authenticate()
        counts = {
            name: client.count(name) for name in ("orgs", "machine_groups", "agents", "views")
        }
    print(json.dumps(counts))
    return 0
