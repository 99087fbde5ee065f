"""download-orders: a batch of orders shared by two process workers, landing in S3 (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

from regards_order.flows.download_order import download_order
from regards_order.flows.download_orders import download_orders
from regards_order.settings import Connection, DownloadOptions
from regards_order.simulator import Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.deployments import Served
from tests.helpers.prefect_server import (
    PREFECT,
    PrefectServer,
    start_process,
    stop_group,
    tail,
    using,
)
from tests.helpers.scenarios import PASSWORD, USER, scenario

POOL = "regards-batch"
DEPLOYMENT = "download-order-batch"
ORDERS = [201, 202, 203, 204]


def batch_scenario() -> Any:
    slow = [{"kind": "slow", "bytes_per_second": 200_000, "times": None}]
    return scenario(
        [
            {
                "id": order_id,
                "owner": USER,
                "files": [
                    {"filename": f"{order_id}-{i}.bin", "size": 100_000, "faults": slow}
                    for i in range(3)
                ],
            }
            for order_id in ORDERS
        ],
        max_active_suborders=100,
    )


def test_a_batch_of_orders_is_shared_by_two_workers(
    prefect_server: PrefectServer, served: Served, s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3
    from prefect.types.entrypoint import EntrypointType

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="batch")
    env = prefect_server.client_env(REGARDS_PASSWORD=PASSWORD)
    subprocess.run(
        [str(PREFECT), "work-pool", "create", POOL, "--type", "process", "--overwrite"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    workers, logs = [], []
    with Simulator(batch_scenario()) as regards, served.stopped():
        try:
            with using(prefect_server.api_url):
                download_order.deploy(
                    DEPLOYMENT,
                    work_pool_name=POOL,
                    build=False,
                    push=False,
                    entrypoint_type=EntrypointType.MODULE_PATH,
                    print_next_steps=False,
                    ignore_warnings=True,
                )
            for name in ("worker-a", "worker-b"):
                folder = tmp_path / name
                folder.mkdir()
                logs.append(folder / "worker.log")
                # At most 2 runs each: 4 orders cannot all go to the first worker that polls.
                argv = [str(PREFECT), "worker", "start", "--pool", POOL, "--name", name]
                workers.append(start_process([*argv, "--limit", "2"], env, logs[-1], folder))
            connection = Connection(host=regards.url, project="test", username=USER)
            options = DownloadOptions(
                poll_interval=0.2,
                max_poll_interval=1.0,
                retry_delay=0.2,
                storage_options={"endpoint_url": s3_endpoint},
            )
            with using(prefect_server.api_url):
                state = asyncio.run(
                    download_orders(
                        target="s3://batch/regards",
                        connection=connection,
                        order_ids=ORDERS,
                        deployment=f"download-order/{DEPLOYMENT}",
                        options=options,
                        return_state=True,
                    )
                )
            assert state.is_completed(), f"{state.message}\n{tail(logs[0])}\n{tail(logs[1])}"
            assert state.result() == dict.fromkeys(ORDERS, "COMPLETED")
        finally:
            for worker in workers:
                stop_group(worker)
            with prefect_server.client() as client:
                found = client.read_deployment_by_name(f"download-order/{DEPLOYMENT}")
                client.delete_deployment(found.id)

        for order_id in ORDERS:
            for file in regards.scenario.resolve()[order_id]:
                body = s3.get_object(Bucket="batch", Key=f"regards/{order_id}/{file.filename}")
                digest = hashlib.md5(body["Body"].read()).hexdigest()
                assert digest == content_md5(order_id, file.id, file.size)
                assert body["Metadata"]["regards-md5"] == digest
    # Both workers took some of the orders (each log names the flow runs it submitted).
    submitted = [
        set(re.findall(r"[Ss]ubmitting flow run '([0-9a-f-]{36})'", log.read_text()))
        for log in logs
    ]
    assert all(submitted), [tail(log) for log in logs]
    assert len(submitted[0] | submitted[1]) == len(ORDERS)
