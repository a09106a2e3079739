"""Package list of the agent-billing wheel (the rest of the metadata is in pyproject.toml):
the product package found under include/ (its data folders, the migrations and the SQL, are
listed as namespace packages so setuptools ships them without warning), plus include/sql
shipped as agent_billing.sql_files."""

from setuptools import find_namespace_packages, setup

SQL_FOLDERS = ("billing", "contracts", "quality", "sync")

setup(packages=[
    *find_namespace_packages("include", include=["agent_billing", "agent_billing.*"], exclude=["*.__pycache__"]),
    "agent_billing.sql_files", *(f"agent_billing.sql_files.{folder}" for folder in SQL_FOLDERS),
])
