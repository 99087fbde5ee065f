"""A fake REGARDS server (orders, suborders, downloads, faults) for the demo, tests and benchmarks.

Usage::

    with Simulator(load_scenario("scenario.json")) as sim:
        sim.url  # http://127.0.0.1:PORT, clients append /api/v1/...
"""

from __future__ import annotations

from regards_order.simulator.scenario import Scenario, load_scenario
from regards_order.simulator.server import Simulator, serve

__all__ = ["Scenario", "Simulator", "load_scenario", "serve"]
