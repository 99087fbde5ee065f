"""A fake REGARDS server for the demo, the tests and the benchmarks.

It serves what a client of rs-order, rs-catalog and rs-storage meets: logins and tokens, orders
restored in suborders, the available-files listing, every file of a dataset task, downloads
(with DOWNLOAD_ERROR and DONE_WITH_WARNING as rs-order records them), the download quota, a
catalogue searched with the legacy engine's Lucene ``q``, baskets and auto-orders, order
actions, plus faults and switches to play older or stricter servers. Modules: ``scenario``
(what a scenario file holds), ``state`` and ``ordering`` (the rules, behind one lock),
``records`` (orders, suborders, files), ``catalog``, ``basket`` and ``lucene`` (ordering from the
catalogue), ``content`` (deterministic bytes), ``server`` (HTTP).

Usage::

    with Simulator(load_scenario("scenario.json")) as sim:
        sim.url  # http://127.0.0.1:PORT, clients append /api/v1/...
"""

from __future__ import annotations

from regards_order.simulator.scenario import Scenario, load_scenario
from regards_order.simulator.server import Simulator, serve

__all__ = ["Scenario", "Simulator", "load_scenario", "serve"]
