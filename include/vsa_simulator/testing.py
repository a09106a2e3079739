"""Test helpers: a simulator on a free localhost port for the length of a ``with`` block.

Plain context managers (no pytest import), for fixtures anywhere::

    with run_simulator() as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        ...
        assert vsa.count("/api/v1.0/assetmgmt/agents") > 0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.model import World
from vsa_simulator.server import SimulatorServer


def small_world(seed: int = 42) -> GeneratedScenario:
    """A generated world small enough to build in milliseconds: 5 orgs, 300 agents."""
    return GeneratedScenario(seed=seed, orgs=5, agents=300)


@contextmanager
def run_simulator(world: World | None = None, **kwargs: Any) -> Iterator[SimulatorServer]:
    """Serve ``world`` (default :func:`small_world`) for a block; ``kwargs`` go to
    :class:`SimulatorServer` (``faults=``, ``date=``, ``ids_as_numbers=``, ...)."""
    with SimulatorServer(world or small_world(), **kwargs) as server:
        yield server
