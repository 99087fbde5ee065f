"""`regards-order orders` and `regards-order status` as a user runs them: a real subprocess
against the simulator over HTTP, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from regards_order.simulator import Scenario, Simulator
from tests.helpers.cli import assert_no_secret_and_no_traceback, cli, download_args
from tests.helpers.scenarios import LONG_LIVED_TOKEN, PASSWORD, USER, scenario

Start = Callable[[Scenario], Simulator]

EXPIRES = "2026-03-01T12:00:00Z"
#: Orders of the test user (21, 22, 24) and one of another user (23).
ORDERS: list[dict[str, Any]] = [
    {"id": 21, "label": "tiles", "generate": [{"count": 3, "size": 1000}]},
    {"id": 22, "label": "old", "state": "expired", "expiration_date": EXPIRES, "files": []},
    {"id": 23, "owner": "other@example.org", "generate": [{"count": 1, "size": 10}]},
    {
        "id": 24,
        "label": "with errors",
        "files": [
            {"id": 71, "filename": "lost.bin", "size": 10, "in_error": True},
            {"id": 72, "filename": "flaky.bin", "size": 100, "faults": [
                {"kind": "status", "status": 503, "times": None}]},
            {"id": 73, "filename": "fine.bin", "size": 100},
        ],
    },
]  # fmt: skip


def connection(sim: Simulator, password: str = PASSWORD) -> dict[str, str]:
    """The connection as environment variables, as a cron job would give it."""
    return {
        "REGARDS_HOST": sim.url,
        "REGARDS_PROJECT": "test",
        "REGARDS_USERNAME": USER,
        "REGARDS_PASSWORD": password,
    }


def started(start_simulator: Start) -> Simulator:
    # Two orders a page: the listing takes two pages, which the command must walk.
    return start_simulator(scenario(ORDERS, max_page_size=2))


def fail_download(sim: Simulator, file_id: int) -> None:
    """Make a file DOWNLOAD_ERROR the way a user does: a download storage answers in error."""
    answer = httpx.get(
        f"{sim.url}/api/v1/rs-order/orders/files/{file_id}",
        headers={"Authorization": f"Bearer {LONG_LIVED_TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 503


def test_orders_json_lists_the_users_orders_newest_first(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("orders", "--json", env=connection(sim))
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    # The other user's order is not among them; every page was read.
    assert [order["id"] for order in listed] == [24, 22, 21]
    by_id = {order["id"]: order for order in listed}
    assert set(by_id[21]) == {
        "id",
        "label",
        "status",
        "percent_completed",
        "available_files_count",
        "files_in_error_count",
        "expiration_date",
        "waiting_for_user",
    }
    assert by_id[21]["status"] == "DONE" and by_id[21]["available_files_count"] == 3
    assert by_id[21]["percent_completed"] == 100 and by_id[21]["waiting_for_user"] is True
    assert by_id[22]["status"] == "EXPIRED"
    assert by_id[22]["expiration_date"] == "2026-03-01T12:00:00+00:00"
    assert by_id[24]["files_in_error_count"] == 1 and by_id[24]["label"] == "with errors"
    assert result.stderr == ""


def test_orders_table_on_a_pipe(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("orders", env=connection(sim))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "LABEL", "STATUS", "RESTORED", "AVAILABLE", "IN", "ERROR", "EXPIRES", "WAITING"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["24", "22", "21"]
    assert re.fullmatch(r"22\s+old\s+EXPIRED\s+0%\s+0\s+0\s+2026-03-01 12:00 UTC\s+no", lines[2])
    assert re.fullmatch(r"21\s+tiles\s+DONE\s+100%\s+3\s+0\s+\S+ \S+ UTC\s+yes", lines[3])
    assert "\x1b" not in result.stdout


def test_orders_status_filter_any_case(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("orders", "--json", "--status", "expired", "--status", "Done", env=connection(sim))
    assert result.returncode == 0, result.stderr
    assert [order["id"] for order in json.loads(result.stdout)] == [22, 21]
    none = cli("orders", "--status", "PAUSED", env=connection(sim))
    assert none.returncode == 0 and none.stdout.strip() == "no orders of status PAUSED"
    wrong = cli("orders", "--status", "SOMETIME", env=connection(sim))
    assert wrong.returncode == 2 and "SOMETIME" in wrong.stderr


def test_status_json_counts_files_and_shows_their_errors(start_simulator: Start) -> None:
    sim = started(start_simulator)
    fail_download(sim, 72)
    result = cli("status", "24", "--json", env=connection(sim))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["order"]["id"] == 24 and document["order"]["files_in_error_count"] == 1
    files = document["files"]
    assert files["listed"] is True and files["total"] == 3
    assert files["counts"] == {"AVAILABLE": 1, "DOWNLOAD_ERROR": 1, "ERROR": 1}
    recorded = sim.stats()["files"]["72"]["download_error"]
    assert recorded
    assert files["in_error"] == [
        {"id": 71, "filename": "lost.bin", "state": "ERROR", "download_error": None},
        {"id": 72, "filename": "flaky.bin", "state": "DOWNLOAD_ERROR", "download_error": recorded},
    ]
    assert "target" not in document


def test_status_table(start_simulator: Start) -> None:
    sim = started(start_simulator)
    fail_download(sim, 72)
    result = cli("status", "24", env=connection(sim))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith('order 24 "with errors": ')
    assert "files on the server: 3 (1 AVAILABLE, 1 DOWNLOAD_ERROR, 1 ERROR)" in text
    assert "files in an error state: 2" in text
    assert re.search(r"^  71\s+lost\.bin\s+ERROR$", text, re.MULTILINE)
    message = sim.stats()["files"]["72"]["download_error"]
    assert re.search(rf"^  72\s+flaky\.bin\s+DOWNLOAD_ERROR\s+{re.escape(message)}$", text, re.M)
    assert "\x1b" not in text


def test_status_of_an_expired_order_is_a_valid_read(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("status", "22", env=connection(sim))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('order 22 "old": EXPIRED\n')
    assert "expires          2026-03-01 12:00 UTC" in result.stdout


def test_status_without_the_all_files_endpoint(start_simulator: Start) -> None:
    sim = start_simulator(scenario(ORDERS, dataset_files_endpoint=False))
    result = cli("status", "21", env=connection(sim))
    assert result.returncode == 0, result.stderr
    assert "the server does not list every file of this order" in result.stdout
    document = json.loads(cli("status", "21", "--json", env=connection(sim)).stdout)
    assert document["files"] == {"listed": False, "counts": None, "in_error": None}


def test_status_of_another_users_order_exits_1(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("status", "23", env=connection(sim))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "HTTP 403" in result.stderr
    as_json = cli("status", "23", "--json", env=connection(sim))
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False and document["order_id"] == 23
    assert "HTTP 403" in document["problem"]
    assert_no_secret_and_no_traceback(as_json)


def test_status_of_an_unknown_order_exits_1(start_simulator: Start) -> None:
    sim = started(start_simulator)
    result = cli("status", "99", "--json", env=connection(sim))
    assert result.returncode == 1
    assert "HTTP 404" in json.loads(result.stdout)["problem"]
    assert result.stderr.count("\n") == 1


def test_bad_credentials_exit_2(start_simulator: Start) -> None:
    sim = started(start_simulator)
    for command in (["orders"], ["status", "21"]):
        result = cli(*command, env=connection(sim, password="wrong-password"))
        assert result.returncode == 2, command
        assert result.stderr.startswith("regards-order: error: authentication failed: ")
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


def test_unreachable_server_exits_1(start_simulator: Start) -> None:
    sim = started(start_simulator)
    env = connection(sim)
    sim.stop()  # its port is closed now: nothing listens there
    result = cli("orders", env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot reach" in result.stderr


def test_status_with_target_counts_what_is_verified_there(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    sim = started(start_simulator)
    target = tmp_path / "data"
    downloaded = cli(*download_args(sim, 21, target), env=connection(sim), api=prefect_api)
    assert downloaded.returncode == 0, downloaded.stderr
    before = _tree(target)

    result = cli("status", "21", "--target", str(target), "--json", env=connection(sim))
    assert result.returncode == 0, result.stderr
    counted = json.loads(result.stdout)["target"]
    assert counted["recorded"] == 3 and counted["verified"] == 3 and counted["failed"] == 0
    assert counted["record"] == str(target / ".regards-order" / "order-21.json")

    # A file changed at the target (same size, other bytes) is no longer verified there.
    changed = next(p for p in target.iterdir() if p.is_file() and p.suffix == ".dat")
    changed.write_bytes(bytes(len(changed.read_bytes())))
    before[changed.name] = changed.stat().st_size, changed.stat().st_mtime_ns
    table = cli("status", "21", "--target", str(target), env=connection(sim))
    assert table.returncode == 0, table.stderr
    assert f"at {target}: 2 verified of 3 files in its record" in table.stdout
    assert _tree(target) == before  # read only


def test_status_with_an_empty_target(start_simulator: Start, tmp_path: Path) -> None:
    sim = started(start_simulator)
    result = cli("status", "21", "--target", str(tmp_path / "none"), "--json", env=connection(sim))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["target"]["recorded"] == 0
    assert not (tmp_path / "none").exists()


def test_the_reads_import_no_prefect(start_simulator: Start) -> None:
    sim = started(start_simulator)
    program = (
        "import sys\n"
        "from regards_order.cli import main\n"
        "codes = [main(['orders', '--json']), main(['status', '24', '--json'])]\n"
        "print(codes, sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", **connection(sim)}
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[0, 0] []"


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }
