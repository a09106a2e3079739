"""A stand-in Kaseya VSA: a real HTTP server speaking the VSA REST API over a simulated world.

The embedded VSA of the demo and the tests: ``agent-billing vsa-sim`` on the command line,
:func:`vsa_simulator.testing.run_simulator` in tests. See ``server`` for the
endpoints, ``faults`` for what can be made to go wrong, ``scenario`` for the world model.
"""

from vsa_simulator.faults import FaultConfig
from vsa_simulator.scenario import (
    GeneratedScenario,
    ScenarioError,
    ScriptedScenario,
    World,
    WorldState,
)
from vsa_simulator.server import (
    API_PREFIX,
    DEMO_TOKEN,
    DEMO_USER,
    RequestRecord,
    SimulatorServer,
)

__all__ = [
    "API_PREFIX",
    "DEMO_TOKEN",
    "DEMO_USER",
    "FaultConfig",
    "GeneratedScenario",
    "RequestRecord",
    "ScenarioError",
    "ScriptedScenario",
    "SimulatorServer",
    "World",
    "WorldState",
]
