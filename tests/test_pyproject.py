"""The distribution claims one top-level name, regards_order: a Prefect project with its own
`flows` and `tasks` packages installs it and both keep working."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from regards_order.simulator import Scenario, Simulator
from tests.helpers.scenarios import PASSWORD, USER, scenario
from tests.helpers.waiting import md5
from tests.helpers.wheel import InstalledWheel

Start = Callable[[Scenario], Simulator]


def test_the_wheel_holds_regards_order_alone(installed_wheel: InstalledWheel) -> None:
    with zipfile.ZipFile(installed_wheel.wheel) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist()}
        names = set(wheel.namelist())
    assert tops == {"regards_order", "regards_order-0.1.0.dist-info"}
    # The Prefect layer's folders are inside the package, as regards_order.flows and so on.
    assert {
        "regards_order/flows/download_order.py",
        "regards_order/tasks/transfer.py",
        "regards_order/deployments/serve.py",
        "regards_order/deployments/prefect.yaml",
        "regards_order/simulator/scenarios/demo.json",
    } <= names


def test_a_prefect_project_with_its_own_flows_and_tasks_keeps_both(
    installed_wheel: InstalledWheel, start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    project = tmp_path / "project"
    for package, body in {
        "tasks": "from prefect import task\n\n\n@task\ndef double(x: int) -> int:\n"
        "    return 2 * x\n",
        "flows": "from prefect import flow\n\nfrom tasks import double\n\n\n@flow\n"
        "def mine(x: int) -> int:\n    return double(x)\n",
    }.items():
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGARDS_", "PREFECT_API"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": prefect_api}
    python = installed_wheel.bin("python")
    own = subprocess.run(
        [python, "-c", "from flows import mine; print(mine(21))"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip().splitlines()[-1] == "42"

    sim = start_simulator(
        scenario([{"id": 41, "owner": USER, "generate": [{"count": 2, "size": 1000}]}])
    )
    target = tmp_path / "data"
    ours = subprocess.run(
        [
            installed_wheel.bin("regards-order"), "download", "41", "--host", sim.url,
            "--project", "test", "--username", USER, "--target", str(target), "--json",
            "--poll-interval", "0.05",
        ],
        cwd=project, env=env | {"REGARDS_PASSWORD": PASSWORD}, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    report = json.loads(ours.stdout)
    assert report["ok"] and len(report["files"]) == 2
    for entry in report["files"]:
        assert md5(Path(entry["target"])) == entry["md5"]
