"""The demo of agent-billing (``make demo``): the real DAGs run through Airflow on the simulator.

Kept out of the product package because it drives Airflow (``agent_billing`` itself never
imports Airflow) and needs the simulator, which the production image leaves out. Installed by
``make install`` with the simulator (``dev/pyproject.toml``); it adds ``agent-billing demo``.
"""
