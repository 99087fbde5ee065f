"""What the deployment tests share: the serve script, the session's scenario, checks.

`deployments/serve.py` runs as a subprocess pointed at a `prefect server start` of the tests
(tests/helpers/prefect_server.py); the tests talk to that server through
`PrefectServer.client()`, never through the session's test harness.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regards_order.paths import MANIFEST_NAME
from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from regards_order.transfer import PARTIAL_SUFFIX
from tests.helpers.archives import Entry, build_tar, build_zip
from tests.helpers.prefect_server import PrefectServer, start_process, stop_group, tail
from tests.helpers.scenarios import PASSWORD, USER, scenario
from tests.helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = REPO / "deployments" / "serve.py"

#: A second REGARDS user whose password only a Prefect Secret block holds.
OPS_USER = "ops@example.org"
OPS_PASSWORD = "ops-password-5d1e"

#: One order per test (the simulator forgets a file once it is downloaded).
ORDER_SERVE, ORDER_UI, ORDER_OVERLAP, ORDER_SECRET, ORDER_WORKER = 101, 102, 103, 104, 105
#: An order of slow files for the scheduled deployment's concurrency limit.
ORDER_LIMITED = 106
#: Two orders for the served download-orders deployment.
ORDERS_MANY = (107, 108)
#: An order of archives, one of them hostile, and a plain file: events and the unpack trigger.
ORDER_ARCHIVES = 109
ARCHIVE_MEMBERS = {"readme.txt": b"the product", "data/values.csv": b"1,2,3\n"}
HOSTILE_MEMBERS = [
    Entry("../evil.txt", b"out of the folder"),
    Entry("/tmp/absolute-evil.txt", b"anywhere"),
    Entry("link", kind="symlink", link="/etc/passwd"),
    Entry("fine.txt", b"the one safe member"),
]
#: The catalogue's products, by start date: a subscription from SUBSCRIPTION_SINCE orders the
#: two NEW ones and not the OLD one; the on-demand order-and-download orders ORDERED_PRODUCT.
CATALOGUE_DATES = {
    "OLD_0001": "2024-03-01T10:00:00Z",
    "NEW_0002": "2024-06-01T10:00:00Z",
    "NEW_0003": "2024-07-01T10:00:00Z",
    "ASK_0004": "2023-01-01T10:00:00Z",
}
SUBSCRIPTION_SINCE = "2024-05-01T00:00:00Z"
ORDERED_PRODUCT = "ASK_0004"
#: The scheduled deployment's order: never run by the tests (its schedule is read back).
ORDER_SCHEDULED = 999
#: An order the simulator does not know.
ORDER_UNKNOWN = 424242

#: Fast pacing for runs started by the tests (the UI run keeps the flow's defaults).
FAST_OPTIONS = {"poll_interval": 0.2, "max_poll_interval": 1.0, "retry_delay": 0.2}


class Served:
    """`deployments/serve.py` in a subprocess: the deployments and their runner."""

    def __init__(self, server: PrefectServer, env: dict[str, str], folder: Path) -> None:
        self.server = server
        self.env = env
        self.folder = folder
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        argv = [sys.executable, str(SERVE_SCRIPT)]
        self.process = start_process(argv, self.env, self.log, self.folder)
        wait_until(self._serving, "serve.py to serve its deployments", timeout=300, every=0.5)

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"serve.py exited with {self.process.returncode}:\n{tail(self.log)}")
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            # The runner prints this once every deployment is applied and it polls for runs.
            return b"Your deployments are being served" in log.read()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop serving for the duration of the block (its runner would race a worker)."""
        self.stop()
        try:
            yield
        finally:
            self.start()


def session_scenario() -> Scenario:
    """One order per test; the test user's password is in serve.py's environment, the ops
    user's only in a Secret block."""
    slow = [{"kind": "slow", "bytes_per_second": 96_000, "times": None}]
    overlap_files = [
        {"filename": f"slow-{i}.bin", "size": 128_000, "faults": slow} for i in range(8)
    ]

    def generated(order_id: int, count: int, owner: str = USER) -> dict[str, Any]:
        name = f"o{order_id}-{{i:02d}}.bin"
        return {
            "id": order_id,
            "owner": owner,
            "generate": [{"count": count, "size": 40_000, "name": name}],
        }

    return scenario(
        [
            generated(ORDER_SERVE, 5),
            generated(ORDER_UI, 3),
            {"id": ORDER_OVERLAP, "owner": USER, "files": overlap_files},
            generated(ORDER_SECRET, 3, owner=OPS_USER),
            generated(ORDER_WORKER, 4),
            {"id": ORDER_LIMITED, "owner": USER, "files": overlap_files[:4]},
            *(generated(order_id, 2) for order_id in ORDERS_MANY),
            {"id": ORDER_ARCHIVES, "owner": USER, "files": archive_files()},
        ],
        users=[
            {"username": USER, "password": PASSWORD},
            {"username": OPS_USER, "password": OPS_PASSWORD},
        ],
        catalog={
            "datasets": [{"label": "Archive"}],
            "products": [
                {
                    "provider_id": name,
                    "dataset": "Archive",
                    "properties": {"start_date": date},
                    "files": {"RAWDATA": [{"filename": f"{name}.dat", "size": 20_000}]},
                }
                for name, date in CATALOGUE_DATES.items()
            ],
        },
        suborder_max_files=4,
        # Every order restores at once: no test waits for another test's order to be fetched.
        max_active_suborders=100,
    )


def archive_files() -> list[dict[str, Any]]:
    """The files of ORDER_ARCHIVES: a zip, a hostile tar, a plain file (base64 bodies)."""
    product = build_zip([Entry(name, data) for name, data in ARCHIVE_MEMBERS.items()])
    hostile = build_tar(HOSTILE_MEMBERS)
    return [
        {"filename": "product.zip", "content_base64": base64.b64encode(product).decode()},
        {"filename": "hostile.tar", "content_base64": base64.b64encode(hostile).decode()},
        {"filename": "plain.bin", "size": 5_000},
    ]


def catalogue_files(simulator: Simulator, *provider_ids: str) -> dict[str, str]:
    """File name -> MD5 of the raw data of these products of the simulator's catalogue."""
    return {
        file.filename: file.checksum
        for product in simulator.state.catalog.products
        if product.provider_id in provider_ids
        for file in product.files["RAWDATA"]
    }


def expected_files(simulator: Simulator, order_id: int) -> dict[str, str]:
    """File name -> MD5 of every file of `order_id`, as the simulator generates them."""
    files = simulator.scenario.resolve()[order_id]
    return {f.filename: content_md5(*(f.content or (order_id, f.id)), f.size) for f in files}


def delivered_files(folder: Path) -> dict[str, str]:
    """File name -> MD5 of every file delivered to `folder` (the record folder and the
    MD5SUMS manifest aside; the manifest must list exactly those)."""
    files = {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in folder.iterdir()
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = (folder / MANIFEST_NAME).read_text().splitlines() if files else []
    assert sorted(manifest) == sorted(f"{md5}  {name}" for name, md5 in files.items())
    return files


def assert_delivered(simulator: Simulator, order_id: int, folder: Path) -> None:
    """Every file of the order is in `folder` with its MD5, nothing else, nothing partial."""
    assert delivered_files(folder) == expected_files(simulator, order_id)
    assert not [p for p in folder.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]
