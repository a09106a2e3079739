"""agent-billing: bill MSP customers per Kaseya VSA agent, prorated by day.

The package holds the whole product logic without any Airflow import in its core:
``vsa`` (REST client), ``warehouse`` (schema, migrations, engine),
``sync`` (nightly snapshot and unit changes), ``quality`` (Great Expectations gate),
``billing`` (reconciliation into invoices) and ``cli`` (the ``agent-billing`` command).
"""

__version__ = "0.1.0"
