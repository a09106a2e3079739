"""Package list of the agent-billing wheel (the rest of the metadata is in pyproject.toml):
the product package found under include/, plus include/sql shipped as agent_billing.sql_files."""

from setuptools import find_packages, setup

setup(packages=[*find_packages("include", include=["agent_billing", "agent_billing.*"]), "agent_billing.sql_files"])
