"""The regards-order command line as a user runs it: a real subprocess, real HTTP, exit codes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5
from tests.helpers.cli import assert_no_secret_and_no_traceback, cli, download_args, last_line
from tests.helpers.scenarios import LONG_LIVED_TOKEN, PASSWORD, USER, scenario

Start = Callable[[Scenario], Simulator]


def test_download_with_json_report_and_embedded_prefect(
    start_simulator: Start, tmp_path: Path
) -> None:
    """The whole path a user takes, with Prefect's embedded default (no API URL given)."""
    sim = start_simulator(
        scenario(
            [{"id": 9, "owner": USER, "generate": [{"count": 6, "size": 40_000}]}],
            suborder_max_files=2,
        )
    )
    target = tmp_path / "data"
    result = cli(
        *download_args(sim, 9, target, "--json"),
        env={"REGARDS_PASSWORD": PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["order_id"] == 9 and report["status"] == "DONE" and report["ok"] is True
    assert len(report["files"]) == 6
    for entry in report["files"]:
        assert set(entry) >= {
            "id",
            "productId",
            "filename",
            "target",
            "size",
            "md5",
            "outcome",
            "attempts",
            "error",
        }
        assert entry["outcome"] == "downloaded" and entry["attempts"] == 1
        assert entry["productId"] and entry["productId"].startswith("URN:AIP:")
        assert entry["md5"] == content_md5(9, entry["id"], 40_000)
        written = Path(entry["target"])
        assert written.parent == target
        assert hashlib.md5(written.read_bytes()).hexdigest() == entry["md5"]
    assert_no_secret_and_no_traceback(result)


def test_failed_file_exits_1_with_report(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    files = [
        {"filename": "rotten.bin", "size": 500, "faults": [{"kind": "corrupt", "times": None}]}
    ]
    sim = start_simulator(
        scenario([{"id": 3, "owner": USER, "files": files, "generate": [{"count": 2, "size": 99}]}])
    )
    result = cli(
        *download_args(sim, 3, tmp_path, "--json", "--password", PASSWORD), api=prefect_api
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    outcomes = {f["filename"]: f for f in report["files"]}
    assert outcomes["rotten.bin"]["outcome"] == "failed"
    assert outcomes["rotten.bin"]["attempts"] == 3
    assert "MD5" in outcomes["rotten.bin"]["error"]
    # Each attempt that is tried again is said as it happens; the last one is in the report.
    assert "rotten.bin: attempt 1 of 3 failed (MD5" in result.stderr
    assert "rotten.bin: attempt 2 of 3 failed (MD5" in result.stderr
    assert "attempt 3 of 3" not in result.stderr
    assert report["ok"] is False
    assert last_line(result.stderr).startswith("regards-order: order 3 not delivered: 1 of 3")
    assert not (tmp_path / "rotten.bin").exists()
    assert_no_secret_and_no_traceback(result)


def test_second_run_exits_0_and_skips(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    sim = start_simulator(
        scenario([{"id": 4, "owner": USER, "generate": [{"count": 3, "size": 1000}]}])
    )
    args = download_args(sim, 4, tmp_path, "--json")
    env = {"REGARDS_PASSWORD": PASSWORD}
    assert cli(*args, env=env, api=prefect_api).returncode == 0
    sent = sim.stats()["bytes_sent"]
    again = cli(*args, env=env, api=prefect_api)
    assert again.returncode == 0, again.stderr
    assert {f["outcome"] for f in json.loads(again.stdout)["files"]} == {"skipped"}
    assert sim.stats()["bytes_sent"] == sent


def test_token_instead_of_password(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    sim = start_simulator(
        scenario([{"id": 5, "owner": USER, "generate": [{"count": 1, "size": 10}]}])
    )
    result = cli(
        "download",
        "5",
        "--target",
        str(tmp_path),
        "--poll-interval",
        "0.05",
        env={"REGARDS_HOST": sim.url, "REGARDS_PROJECT": "test", "REGARDS_TOKEN": LONG_LIVED_TOKEN},
        api=prefect_api,
    )
    assert result.returncode == 0, result.stderr
    assert sim.stats()["logins"] == 0
    assert (tmp_path / "file-00000.dat").stat().st_size == 10
    assert_no_secret_and_no_traceback(result)


@pytest.mark.parametrize(
    ("order", "status", "end", "expected"),
    [
        (None, "UNKNOWN", "not found", "order 6: HTTP 404"),
        ({"owner": "other@example.org"}, "UNKNOWN", "forbidden", "order 6: HTTP 403"),
        ({"state": "expired"}, "EXPIRED", "gone", "order 6 is EXPIRED"),
        ({"state": "deleted"}, "DELETED", "gone", "order 6 is DELETED"),
    ],
)
def test_undeliverable_order_exits_1_with_its_report(
    start_simulator: Start,
    tmp_path: Path,
    order: dict[str, Any] | None,
    status: str,
    end: str,
    expected: str,
) -> None:
    orders = [] if order is None else [{"id": 6, "owner": USER, "files": [], **order}]
    sim = start_simulator(scenario(orders))
    result = cli(*download_args(sim, 6, tmp_path, "--json"), env={"REGARDS_PASSWORD": PASSWORD})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("regards-order: order 6 not delivered: ")
    assert expected in result.stderr
    report = json.loads(result.stdout)  # a script reading stdout gets its document
    assert (report["order_id"], report["status"], report["end"]) == (6, status, end)
    assert report["ok"] is False and report["files"] == []
    assert [p for p in report["problems"] if expected in p]
    assert list(tmp_path.iterdir()) == []
    assert_no_secret_and_no_traceback(result)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["download", "abc"], {}, "ORDER_ID"),
        (["download", "0"], {}, "ORDER_ID"),
        (["download", "1", "--target", "x"], {}, "missing --host"),
        (
            ["download", "1", "--host", "regards.example.org", "--project", "p", "--target", "x"],
            {"REGARDS_TOKEN": "t"},
            "host must be an http(s) URL",
        ),
        (
            ["download", "1", "--host", "http://127.0.0.1:9", "--project", "p", "--target", "x"],
            {"REGARDS_USERNAME": "u"},
            "no password",
        ),
        (
            [
                "download",
                "1",
                "--host",
                "http://127.0.0.1:9",
                "--project",
                "p",
                "--target",
                "x",
                "--token",
                "t",
                "--concurrency",
                "0",
            ],
            {},
            "concurrency",
        ),
        (["download", "1", "--bogus"], {}, "No such option"),
        (["nonsense"], {}, "No such command"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_password_exits_2_without_echoing_it(start_simulator: Start, tmp_path: Path) -> None:
    sim = start_simulator(scenario([]))
    result = cli(*download_args(sim, 1, tmp_path), env={"REGARDS_PASSWORD": "wrong-" + PASSWORD})
    assert result.returncode == 2
    assert "authentication failed" in result.stderr and result.stderr.count("\n") == 1
    assert_no_secret_and_no_traceback(result)


def test_unreachable_server_exits_1_in_one_line(tmp_path: Path) -> None:
    result = cli(
        "download",
        "1",
        "--host",
        "http://127.0.0.1:9",
        "--project",
        "p",
        "--token",
        "t",
        "--target",
        str(tmp_path),
        "--timeout",
        "1",
        "--poll-interval",
        "0.2",
    )
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in last_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_s3_target_with_storage_options(
    start_simulator: Start, s3_endpoint: str, prefect_api: str
) -> None:
    import boto3

    sim = start_simulator(
        scenario([{"id": 11, "owner": USER, "generate": [{"count": 2, "size": 3000}]}])
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="cli-archive")
    args = download_args(sim, 11, Path("unused"), "--json")
    args[args.index("--target") + 1] = "s3://cli-archive/regards/11"
    result = cli(
        *args,
        "--storage-option",
        f"endpoint_url={s3_endpoint}",
        api=prefect_api,
        env={"REGARDS_PASSWORD": PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [f["target"] for f in report["files"]] == [
        "s3://cli-archive/regards/11/file-00000.dat",
        "s3://cli-archive/regards/11/file-00001.dat",
    ]
    for entry in report["files"]:
        key = entry["target"].removeprefix("s3://cli-archive/")
        body = s3.get_object(Bucket="cli-archive", Key=key)
        assert hashlib.md5(body["Body"].read()).hexdigest() == entry["md5"]
        assert body["Metadata"]["regards-md5"] == entry["md5"]
    assert_no_secret_and_no_traceback(result)


def test_missing_bucket_is_one_clear_line(start_simulator: Start, s3_endpoint: str) -> None:
    sim = start_simulator(scenario([{"id": 12, "owner": USER, "files": []}]))
    args = download_args(sim, 12, Path("unused"))
    args[args.index("--target") + 1] = "s3://no-such-bucket/x"
    result = cli(
        *args,
        "--storage-options",
        json.dumps({"endpoint_url": s3_endpoint}),
        env={"REGARDS_PASSWORD": PASSWORD},
    )
    assert result.returncode == 1
    assert result.stderr == (
        "regards-order: error: bucket 'no-such-bucket' does not exist or is not visible with "
        "these credentials\n"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--storage-option", "key=AKIA"], "storage option key would carry a credential"),
        (["--storage-option", "oops"], "storage option 'oops' is not KEY=VALUE"),
        (["--storage-options", "[]"], "storage options must be a JSON object"),
    ],
)
def test_bad_storage_options_exit_2(tmp_path: Path, option: list[str], message: str) -> None:
    result = cli(
        "download", "1", "--host", "http://127.0.0.1:9", "--project", "p", "--token", "t",
        "--target", str(tmp_path), *option,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_unknown_protocol_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(
        "download", "1", "--host", "http://127.0.0.1:9", "--project", "p", "--token", "t",
        "--target", "nosuchfs://x/y",
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot use target 'nosuchfs://x/y'" in result.stderr


def test_tls_is_verified_and_a_ca_bundle_can_be_given(tmp_path: Path, prefect_api: str) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    sim = Simulator(
        scenario([{"id": 13, "owner": USER, "generate": [{"count": 1, "size": 100}]}]),
        tls=server_context,
    )
    with sim:
        assert sim.url.startswith("https://")
        args = download_args(sim, 13, tmp_path / "out")
        refused = cli(*args, env={"REGARDS_PASSWORD": PASSWORD})
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
        trusted = cli(
            *args, "--ca-bundle", str(bundle), env={"REGARDS_PASSWORD": PASSWORD}, api=prefect_api
        )
        assert trusted.returncode == 0, trusted.stderr
        assert (tmp_path / "out" / "file-00000.dat").stat().st_size == 100


def test_unknown_host_is_one_clear_line(tmp_path: Path) -> None:
    result = cli(
        "download", "1", "--host", "https://regards.nonexistent.invalid", "--project", "p",
        "--token", "t", "--target", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("regards-order: error: order 1: cannot reach ")
    assert result.stderr.count("\n") == 1


def test_a_failed_order_and_a_passed_deadline_still_print_the_report(
    start_simulator: Start, tmp_path: Path, prefect_api: str
) -> None:
    lost = [{"filename": f"lost-{i}.bin", "size": 10, "in_error": True} for i in range(2)]
    paused = {"id": 22, "owner": USER, "state": "paused", "generate": [{"count": 1, "size": 9}]}
    sim = start_simulator(scenario([{"id": 21, "owner": USER, "files": lost}, paused]))
    env = {"REGARDS_PASSWORD": PASSWORD}
    failed = cli(*download_args(sim, 21, tmp_path / "a", "--json"), env=env, api=prefect_api)
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert (report["status"], report["end"], report["ok"]) == ("FAILED", "complete", False)
    assert report["files_in_error"] == 2
    assert report["problems"] == [
        "2 files of order 21 in error on the server, which cannot deliver them"
    ]
    late = cli(
        *download_args(sim, 22, tmp_path / "b", "--json", "--timeout", "1"),
        env=env,
        api=prefect_api,
    )
    assert late.returncode == 1, late.stderr
    report = json.loads(late.stdout)
    assert (report["status"], report["end"], report["ok"]) == ("PAUSED", "deadline", False)
    assert report["warnings"] == ["order 22 is paused on the server"]
    assert_no_secret_and_no_traceback(failed)
    assert_no_secret_and_no_traceback(late)


def test_a_prefect_server_that_cannot_start_is_one_line_with_the_remedy(
    start_simulator: Start, tmp_path: Path
) -> None:
    sim = start_simulator(
        scenario([{"id": 23, "owner": USER, "generate": [{"count": 1, "size": 9}]}])
    )
    result = cli(
        *download_args(sim, 23, tmp_path, "--json"),
        env={"REGARDS_PASSWORD": PASSWORD, "REGARDS_PREFECT_START_TIMEOUT": "0.001"},
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the temporary Prefect server did not answer within 0.001 s" in result.stderr
    assert "prefect server start" in result.stderr and "PREFECT_API_URL" in result.stderr
    report = json.loads(result.stdout)
    assert (report["end"], report["ok"], report["status"]) == ("broken", False, "UNKNOWN")
    assert sim.stats()["files"]["1"]["requests"] == 0  # nothing was downloaded meanwhile
    assert_no_secret_and_no_traceback(result)
