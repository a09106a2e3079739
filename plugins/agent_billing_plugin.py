"""The Airflow plugin of agent-billing and the list of the project's hooks.

Airflow 3 loads this file from the plugins folder, which is also on ``sys.path``: DAGs import
``from vsa_hook import VsaHook``. Airflow 3 dropped ``AirflowPlugin.hooks`` (ruff AIR301) and
takes connection types for the UI form only from provider packages, so ``HOOKS`` is the
project's own registry (for docs and tests); the plugin makes the project visible in
``airflow plugins``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseHook

from vsa_hook import VsaHook

HOOKS: list[type[BaseHook]] = [VsaHook]


class AgentBillingPlugin(AirflowPlugin):
    name = "agent_billing"
