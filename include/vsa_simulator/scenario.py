"""The world model: what the simulated VSA holds on each date.

A :class:`World` answers ``state(date)`` with a :class:`WorldState` (orgs, machine groups,
views, agents and view members). Two worlds:

- :class:`GeneratedScenario`: deterministic from a seed, any size up to a million agents and
  beyond, changing day by day (adds, deletions, moves, view churn); for demos and benchmarks.
- :class:`ScriptedScenario`: every org, group, view and agent history given explicitly
  (``from_dict`` / ``from_file``), so a test knows the exact state of every date.
"""

from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.model import World, WorldState
from vsa_simulator.scripted import ScenarioError, ScriptedScenario

__all__ = ["GeneratedScenario", "ScenarioError", "ScriptedScenario", "World", "WorldState"]
