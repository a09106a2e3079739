"""Run states that tell the truth: what every DAG of agent-billing shares.

* :func:`fail_fast` — wraps every task function: an input error
  (:class:`agent_billing.errors.UserError` and subclasses: a future or malformed date, an
  unknown service, a refused action, a failed quality gate, a date beyond the billing
  horizon) fails the task at once, without retries. An error whose ``transient`` attribute is
  true (VSA 429/5xx or unreachable, an SMTP delivery) and every other exception (network,
  database connection) keep the task's retries.
* :func:`fail_run_if_work_failed` — the "watcher": a last task, downstream of every other
  task, that runs only when one of them failed and then fails itself. DAGs whose final task
  runs on ``all_done`` (``notify`` delivers mail after a failure too) would otherwise end
  green; with the watcher as a failed leaf the run is failed.

Cheap to import (DAG files import it at parse time): the package is imported in the tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, task

WATCHER_TASK_ID = "fail_if_work_failed"


def fail_fast(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a task function (below ``@task``) so that input errors fail it at once."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        from agent_billing.errors import UserError

        try:
            return function(*args, **kwargs)
        except UserError as exc:
            if getattr(exc, "transient", False):
                raise  # may succeed later: the task's retries apply
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    run.fails_fast = True  # type: ignore[attr-defined]  # checked by tests/dags/test_dag_integrity.py
    return run


def fail_run_if_work_failed():
    """Add the watcher task downstream of every task of the DAG; call it last in the
    ``@dag`` function, after every other task is defined."""

    @task(
        task_id=WATCHER_TASK_ID,
        trigger_rule=TriggerRule.ONE_FAILED,
        retries=0,
        on_failure_callback=None,  # the failed task has alerted already
        execution_timeout=timedelta(minutes=5),
    )
    def watcher() -> None:
        """Runs only when a task of this run failed; fails so that the run is failed."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        ti = get_current_context()["ti"]
        raise AirflowFailException(
            f"a task of run {ti.run_id} failed (see its log; the data team was alerted): "
            "the run is marked failed"
        )

    watcher_task = watcher().operator
    for other in watcher_task.dag.tasks:
        if other.task_id != WATCHER_TASK_ID:
            other >> watcher_task
    return watcher_task
