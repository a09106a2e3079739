"""Run states that tell the truth: what every DAG of agent-billing shares.

* :func:`fail_fast` — wraps every task function: an input error
  (:class:`agent_billing.errors.UserError` and subclasses: a future or malformed date, an
  unknown service, a refused action, a failed quality gate, a date beyond the billing
  horizon, mail a recipient refused) fails the task at once, without retries. An error whose
  ``transient`` attribute is true (VSA 429/5xx or unreachable, mail not sent) and every other
  exception (network, database connection) keep the task's retries.
* :func:`fail_run_if_work_failed` — the "watcher": a last task, downstream of every other
  task, that fails when one of them failed (and makes sure each alerted) and skips
  otherwise. DAGs whose final task runs on ``all_done`` (``notify`` delivers mail after a
  failure too) would otherwise end green; with the watcher as a failed leaf the run is failed.

Cheap to import (DAG files import it at parse time): the package is imported in the tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, task

WATCHER_TASK_ID = "fail_if_work_failed"


def run_params(context: Any) -> Any:
    """The run's params, after refusing a key of the run's conf that the DAG has no param for:
    Airflow accepts any key, so a misspelt ``snapshot_dat`` would run on the default (another
    date) and end green. Each DAG's first task calls it."""
    from agent_billing.errors import UserError

    declared = set(context["dag"].params)  # the run's params also hold every conf key
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    unknown = sorted(set(conf) - declared)
    if unknown:
        raise UserError(
            f"the run's conf has {', '.join(repr(k) for k in unknown)}, which this DAG does not take "
            f"(its params: {', '.join(sorted(declared)) or 'none'}): trigger it again with the right name"
        )
    return context["params"]


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
    ``@dag`` function, after every other task is defined.

    It runs once every other task is done. When one failed, it fails (so the run is failed)
    after making sure each failed task alerted: a task whose process is killed on its last
    try ends failed without its ``on_failure_callback`` (Airflow runs callbacks in the task's
    own process), so the watcher calls that callback for it as a backstop, which never
    replaces what the task wrote itself, and sends the mail it queued. Otherwise it skips."""

    @task(
        task_id=WATCHER_TASK_ID,
        trigger_rule=TriggerRule.ALL_DONE,
        retries=0,
        on_failure_callback=None,  # it alerts for the failed tasks itself
        execution_timeout=timedelta(minutes=5),
    )
    def watcher() -> None:
        """Fails the run when a task of it failed, after the backstop alerts; else skips."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        context = get_current_context()
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(t for t, state in states.items() if state == "failed" and t != WATCHER_TASK_ID)
        if not failed:
            raise AirflowSkipException("no task of this run failed")
        backstop_alerts(context, failed)
        raise AirflowFailException(
            f"{', '.join(failed)} of run {ti.run_id} failed (see the task logs; the data team was "
            "alerted): the run is marked failed"
        )

    watcher_task = watcher().operator
    for other in watcher_task.dag.tasks:
        if other.task_id != WATCHER_TASK_ID:
            other >> watcher_task
    return watcher_task


class _FailedTask:
    """The failed task as its callback reads it, seen from the watcher (same run)."""

    def __init__(self, watcher_ti: Any, task_id: str) -> None:
        self._watcher = watcher_ti
        self.dag_id, self.run_id, self.task_id = watcher_ti.dag_id, watcher_ti.run_id, task_id
        self.try_number = "last"

    def xcom_pull(self, *args: Any, **kwargs: Any) -> Any:
        return self._watcher.xcom_pull(*args, **kwargs)


def backstop_alerts(context: dict, failed: list[str]) -> None:
    """Run the failure callbacks of the ``failed`` tasks as a backstop, then send the mail."""
    import logging

    from agent_billing.sync.notify import KILLED

    log = logging.getLogger(__name__)
    dag, ti = context["dag"], context["ti"]
    for task_id in failed:
        if task_id not in dag.task_dict:
            continue
        callbacks = dag.task_dict[task_id].on_failure_callback
        for callback in callbacks if isinstance(callbacks, (list, tuple)) else [callbacks] if callbacks else []:
            try:
                callback({**context, "ti": _FailedTask(ti, task_id), "exception": KILLED, "backstop": True})
            except Exception:  # one alert failing must not keep the others
                log.exception("backstop alert for %s failed", task_id)
    try:
        from outbox_delivery import deliver_pending_mail

        deliver_pending_mail()  # the run's notify may have run before this queued anything
    except Exception:
        log.exception("backstop alerts queued but not sent: the next delivery sends them")
