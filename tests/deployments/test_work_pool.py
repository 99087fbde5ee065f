"""deployments/prefect.yaml: `prefect deploy --all` as documented, then a process worker runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from regards_order.simulator import Simulator
from tests.helpers.deployments import FAST_OPTIONS, ORDER_WORKER, REPO, Served, assert_delivered
from tests.helpers.prefect_server import PREFECT, PrefectServer, start_process, stop_group, tail
from tests.helpers.scenarios import PASSWORD, USER
from tests.helpers.wheel import InstalledWheel

POOL = "regards"


def test_prefect_yaml_deploys_to_a_work_pool_that_a_worker_runs(
    prefect_server: PrefectServer,
    served: Served,
    regards: Simulator,
    tmp_path: Path,
    installed_wheel: InstalledWheel,
) -> None:
    env = prefect_server.client_env(
        REGARDS_HOST=regards.url,
        REGARDS_PROJECT="test",
        REGARDS_USERNAME=USER,
        REGARDS_PASSWORD_BLOCK="",  # empty: the worker's REGARDS_PASSWORD
        REGARDS_SCHEDULED_TARGET=str(tmp_path / "scheduled"),
    )
    # The served deployments have the same names: their runner would race the worker.
    with served.stopped():
        _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env, tmp_path)
        _prefect(
            ["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
            env,
            REPO,
        )
        on_demand = prefect_server.deployment("download-order")
        scheduled = prefect_server.deployment("download-order-scheduled")
        many = prefect_server.deployment("download-orders", flow="download-orders")
        unpack = prefect_server.deployment("unpack-archive", flow="unpack-archive")
        ordering = prefect_server.deployment("order-and-download", flow="order-and-download")
        subscription = prefect_server.deployment("subscription", flow="order-and-download")
        try:
            for deployment in (ordering, subscription):
                assert deployment.entrypoint == (
                    "regards_order.flows.order_and_download.order_and_download"
                )
            assert subscription.parameters["queries"] == ["start_date:[{since} TO {until}]"]
            assert [s.schedule.cron for s in subscription.schedules] == ["0 * * * *"]
            for deployment in (on_demand, scheduled, many, ordering, subscription):
                assert deployment.work_pool_name == POOL
                assert deployment.pull_steps == []
                assert deployment.parameters["connection"] == {
                    "host": regards.url,
                    "project": "test",
                    "username": USER,
                    # Variables left unset: empty, which the connection reads as its defaults.
                    "client_id": "",
                    "password_block": "",
                    "client_secret_block": "",
                }
            for deployment in (on_demand, scheduled):
                assert deployment.entrypoint == "regards_order.flows.download_order.download_order"
            assert many.entrypoint == "regards_order.flows.download_orders.download_orders"
            assert unpack.entrypoint == "regards_order.flows.unpack_archive.unpack_archive"
            with prefect_server.client() as client:
                automations = [
                    automation
                    for automation in client.read_automations()
                    if any(
                        getattr(a, "deployment_id", None) == unpack.id for a in automation.actions
                    )
                ]
            # Its trigger is there, and off until someone turns it on.
            assert [a.enabled for a in automations] == [False]
            [schedule] = scheduled.schedules
            assert schedule.active
            assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
            assert scheduled.parameters["order_id"] == 1234
            assert scheduled.parameters["target"] == str(tmp_path / "scheduled")
            assert scheduled.global_concurrency_limit.limit == 1
            assert scheduled.concurrency_options.collision_strategy == "CANCEL_NEW"

            # A worker started anywhere, where only the wheel is installed (no checkout), loads
            # the flow by module.
            worker_dir = tmp_path / "worker"
            worker_dir.mkdir()
            log = worker_dir / "worker.log"
            worker = start_process(
                [installed_wheel.bin("prefect"), "worker", "start", "--pool", POOL],
                env | {"REGARDS_PASSWORD": PASSWORD},
                log,
                worker_dir,
            )
            try:
                target = tmp_path / "by-the-worker"
                started = prefect_server.run(
                    "download-order",
                    order_id=ORDER_WORKER,
                    target=str(target),
                    options=FAST_OPTIONS,
                )
                run = prefect_server.wait_final(started.id, timeout=120)
                assert run.state.is_completed(), f"{run.state.message}\n{tail(log)}"
                assert run.work_pool_name == POOL
                assert_delivered(regards, ORDER_WORKER, target)
            finally:
                stop_group(worker)
        finally:
            # Leave the names to serve.py again, which re-creates its deployments on restart.
            with prefect_server.client() as client:
                for deployment in (on_demand, scheduled, many, unpack):
                    client.delete_deployment(deployment.id)


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the prefect command line; its output, or a failure that shows it."""
    done = subprocess.run(
        [str(PREFECT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
