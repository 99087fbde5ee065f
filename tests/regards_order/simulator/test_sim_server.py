"""The simulator over real HTTP: login, tokens, orders, suborders, listings, downloads."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from regards_order.simulator import Scenario, Simulator
from regards_order.simulator.content import content_md5

USER = "demo@example.org"
PASSWORD = "demo"
TOKEN_URL = "/api/v1/rs-authentication/oauth/token"
CREDS = {"username": USER, "password": "demo", "grant_type": "password"}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@contextmanager
def running(**scenario: Any) -> Iterator[tuple[Simulator, httpx.Client]]:
    with (
        Simulator(Scenario.model_validate(scenario)) as sim,
        httpx.Client(base_url=sim.url, timeout=10) as client,
    ):
        yield sim, client


def login(client: httpx.Client, username: str = USER, password: str = PASSWORD) -> dict[str, str]:
    body = {"username": username, "password": password, "grant_type": "password"}
    r = client.post(TOKEN_URL, params={"scope": "demo"}, auth=("client", "secret"), json=body)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def order(client: httpx.Client, headers: dict[str, str], order_id: int = 1) -> dict[str, Any]:
    r = client.get(f"/api/v1/rs-order/user/orders/{order_id}", headers=headers)
    assert r.status_code == 200, r.text
    content: dict[str, Any] = r.json()["content"]
    return content


def listed(client: httpx.Client, headers: dict[str, str], order_id: int = 1) -> list[int]:
    url = f"/api/v1/rs-order/orders/{order_id}/files/available"
    r = client.get(url, params={"size": 2000}, headers=headers)
    assert r.status_code == 200, r.text
    return [item["content"]["id"] for item in r.json()["content"]]


def fetch(client: httpx.Client, headers: dict[str, str], file_id: int) -> httpx.Response:
    return client.get(f"/api/v1/rs-order/orders/files/{file_id}", headers=headers)


def files(n: int, size: int = 1000) -> list[dict[str, Any]]:
    return [{"filename": f"f{i:02d}.dat", "size": size} for i in range(n)]


# ---- authentication -----------------------------------------------------------------------


def test_login_accepts_json_form_and_query_parameters() -> None:
    with running(token_lifetime=600) as (sim, client):
        basic = ("client", "secret")
        answers = [
            client.post(TOKEN_URL, params={"scope": "demo"}, auth=basic, json=CREDS),
            client.post(TOKEN_URL, params={"scope": "demo"}, auth=basic, data=CREDS),
            client.post(TOKEN_URL, params={"scope": "demo", **CREDS}, auth=basic),
        ]
        assert [r.status_code for r in answers] == [200, 200, 200]
        body = answers[0].json()
        assert body["expires_in"] == 600 and body["token_type"] == "bearer"
        assert (body["tenant"], body["scope"], body["sub"], body["email"]) == (
            "demo",
            "demo",
            USER,
            USER,
        )
        assert len({r.json()["access_token"] for r in answers}) == 3
        assert sim.stats()["logins"] == 3


def test_login_rejections() -> None:
    users = [{"username": USER, "password": "demo"}, {"username": "bot", "tokens": ["t0k"]}]
    with running(users=users) as (sim, client):

        def post(auth: Any = ("client", "secret"), scope: str = "demo", **over: str) -> int:
            body = CREDS | over
            return client.post(TOKEN_URL, params={"scope": scope}, auth=auth, json=body).status_code

        assert post(password="wrong") == 400
        assert post(username="nobody@example.org") == 400
        assert post(username="bot", password="None") == 400  # token-only user: no password
        assert post(grant_type="client_credentials") == 400
        assert post(scope="other-project") == 400
        assert post(auth=("client", "bad")) == 401
        assert post(auth=None) == 401
        stats = sim.stats()
        assert stats["logins"] == 0 and stats["unauthorized"] == 2
        assert stats["requests"]["token"] == 7


def test_tokens_expire_and_long_lived_tokens_do_not() -> None:
    with running(orders=[{"id": 1}]) as (sim, client):
        headers = login(client)
        assert client.get("/api/v1/rs-order/user/orders/1", headers=headers).status_code == 200
        sim.state.expire_tokens()
        assert client.get("/api/v1/rs-order/user/orders/1", headers=headers).status_code == 401
        long_lived = {"Authorization": "Bearer a-long-lived-token"}
        assert client.get("/api/v1/rs-order/user/orders/1", headers=long_lived).status_code == 200
        # The gateway also takes the token as a query parameter.
        r = client.get("/api/v1/rs-order/user/orders/1", params={"token": "a-long-lived-token"})
        assert r.status_code == 200
        assert client.get("/api/v1/rs-order/user/orders/1").status_code == 401
        bogus = {"Authorization": "Bearer nope"}
        assert client.get("/api/v1/rs-order/user/orders/1", headers=bogus).status_code == 401
        assert order(client, login(client))["id"] == 1  # logging in again works
        assert sim.stats()["unauthorized"] == 3


def test_token_lifetime_is_enforced() -> None:
    with running(token_lifetime=0.2, orders=[{"id": 1}]) as (_sim, client):
        r = client.post(TOKEN_URL, params={"scope": "demo"}, auth=("client", "secret"), json=CREDS)
        assert r.json()["expires_in"] == 0.2
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert client.get("/api/v1/rs-order/user/orders/1", headers=headers).status_code == 200
        time.sleep(0.25)
        assert client.get("/api/v1/rs-order/user/orders/1", headers=headers).status_code == 401


def test_other_users_order_is_forbidden_and_unknown_is_not_found() -> None:
    users = [{"username": USER, "password": "demo"}, {"username": "eve", "password": "x"}]
    orders = [{"id": 1, "files": files(1)}, {"id": 2, "owner": "eve", "files": files(1)}]
    with running(users=users, orders=orders) as (_sim, client):
        headers = login(client)
        assert client.get("/api/v1/rs-order/user/orders/2", headers=headers).status_code == 403
        assert client.get("/api/v1/rs-order/user/orders/99", headers=headers).status_code == 404
        avail = "/api/v1/rs-order/orders/{}/files/available"
        assert client.get(avail.format(2), headers=headers).status_code == 403
        assert client.get(avail.format(99), headers=headers).status_code == 404
        assert fetch(client, headers, 2).status_code == 403
        missing = fetch(client, headers, 99)
        assert missing.status_code == 404 and missing.json()["status"] == 404
        eve = login(client, "eve", "x")
        assert order(client, eve, 2)["owner"] == "eve"


# ---- suborders ----------------------------------------------------------------------------


def test_suborders_progress_two_at_a_time() -> None:
    scenario = {
        "suborder_max_files": 4,
        "restore_seconds": 0.2,
        "orders": [{"id": 1, "files": files(24)}],
    }
    with running(**scenario) as (sim, client):
        headers = login(client)
        first = order(client, headers)
        assert (first["status"], first["percentCompleted"], first["availableFilesCount"]) == (
            "RUNNING",
            0,
            0,
        )
        assert listed(client, headers) == []
        not_yet = fetch(client, headers, 1)
        assert not_yet.status_code == 202 and not_yet.content == b""

        wait_for(lambda: order(client, headers)["availableFilesCount"] == 8)
        assert listed(client, headers) == list(range(1, 9))
        assert fetch(client, headers, 9).status_code == 202
        time.sleep(0.3)  # longer than a restore: suborders 3-6 still wait for the user
        view = order(client, headers)
        assert (view["status"], view["waitingForUser"], view["percentCompleted"]) == (
            "RUNNING",
            True,
            33,
        )
        assert listed(client, headers) == list(range(1, 9))

        for file_id in range(1, 5):  # draining suborder 1 lets suborder 3 start
            assert fetch(client, headers, file_id).status_code == 200
        assert listed(client, headers) == list(range(5, 9))
        wait_for(lambda: len(listed(client, headers)) == 8)
        assert listed(client, headers) == list(range(5, 13))

        for file_id in range(5, 13):
            assert fetch(client, headers, file_id).status_code == 200
        wait_for(lambda: listed(client, headers) == list(range(13, 21)))
        assert order(client, headers)["status"] == "RUNNING"
        for file_id in range(13, 17):
            assert fetch(client, headers, file_id).status_code == 200
        wait_for(lambda: order(client, headers)["status"] == "DONE")
        done = order(client, headers)
        # DONE means restored, not downloaded: the last 8 files are still waiting.
        assert (done["availableFilesCount"], done["percentCompleted"]) == (8, 100)
        assert done["waitingForUser"] is True
        assert listed(client, headers) == list(range(17, 25))

        for file_id in range(17, 25):
            assert fetch(client, headers, file_id).status_code == 200
        final = order(client, headers)
        assert (final["status"], final["availableFilesCount"], final["waitingForUser"]) == (
            "DONE",
            0,
            False,
        )
        stats = sim.stats()
        assert stats["max_active_suborders"][USER] == 2
        assert stats["downloads_completed"] == 24 and stats["bytes_sent"] == 24_000
        assert {f["state"] for f in stats["files"].values()} == {"DOWNLOADED"}


def test_listing_shrinks_and_pages() -> None:
    scenario = {
        "default_page_size": 3,
        "max_page_size": 5,
        "orders": [{"id": 1, "files": files(7)}],
    }
    with running(**scenario) as (sim, client):
        headers = login(client)
        url = "/api/v1/rs-order/orders/1/files/available"
        page0 = client.get(url, headers=headers).json()
        assert page0["metadata"] == {"number": 0, "size": 3, "totalElements": 7, "totalPages": 3}
        assert [item["content"]["id"] for item in page0["content"]] == [1, 2, 3]
        links = {link["rel"]: link["href"] for link in page0["links"]}
        assert links["next"].startswith(sim.url) and "page=1" in links["next"]
        page1 = client.get(links["next"], headers=headers).json()
        assert [item["content"]["id"] for item in page1["content"]] == [4, 5, 6]
        capped = client.get(url, params={"size": 100, "sort": "id,asc"}, headers=headers).json()
        assert capped["metadata"]["size"] == 5 and len(capped["content"]) == 5
        last = client.get(url, params={"page": 2, "size": 3}, headers=headers).json()
        assert [i["content"]["id"] for i in last["content"]] == [7]
        assert [link["rel"] for link in last["links"]] == ["self"]
        for bad in ({"page": "x"}, {"size": "0"}, {"page": "-1"}, {"size": "ten"}):
            assert client.get(url, params=bad, headers=headers).status_code == 400

        assert fetch(client, headers, 2).status_code == 200
        assert fetch(client, headers, 5).status_code == 200
        assert listed(client, headers) == [1, 3, 4, 6, 7]
        assert sim.state.file_state(2) == "DOWNLOADED"


def test_aborted_download_leaves_the_list_and_can_be_retried() -> None:
    size = 64 * 2**20  # more than the loopback socket buffers can absorb
    orders = [{"id": 1, "files": [{"filename": "big.bin", "size": size}, *files(1)]}]
    with running(orders=orders) as (sim, client):
        headers = login(client)
        with client.stream("GET", "/api/v1/rs-order/orders/files/1", headers=headers) as r:
            assert r.status_code == 200
            next(r.iter_raw(65536))
        wait_for(lambda: sim.stats()["downloads_aborted"] == 1)
        assert sim.state.file_state(1) == "DOWNLOAD_ERROR"
        assert listed(client, headers) == [2]
        assert 0 < sim.stats()["files"]["1"]["bytes_sent"] < size

        for _ in range(2):  # a file can be fetched again by id, even once downloaded
            again = fetch(client, headers, 1)
            assert again.status_code == 200 and len(again.content) == size
            assert md5(again.content) == content_md5(1, 1, size)
            assert sim.state.file_state(1) == "DOWNLOADED"
        assert sim.stats()["files"]["1"]["completed"] == 2


def test_download_headers_and_content() -> None:
    orders = [
        {
            "id": 3,
            "files": [{"filename": "scène.tif", "size": 3_000_001, "mime_type": "image/tiff"}],
        }
    ]
    with running(orders=orders) as (sim, client):
        headers = login(client)
        r = fetch(client, headers, 1)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/tiff"
        assert r.headers["content-length"] == "3000001"
        assert r.headers["content-disposition"] == (
            "attachment; filename=\"sc_ne.tif\"; filename*=UTF-8''sc%C3%A8ne.tif; size=3000001"
        )
        assert md5(r.content) == content_md5(3, 1, 3_000_001)
        assert r.headers.get("accept-ranges") is None
        ranged = client.get(
            "/api/v1/rs-order/orders/files/1", headers=headers | {"Range": "bytes=10-"}
        )
        assert ranged.status_code == 200 and len(ranged.content) == 3_000_001
        listing = client.get("/api/v1/rs-order/orders/3/files/available", headers=headers).json()
        assert listing["content"] == []
        stats = sim.stats()
        assert stats["bytes_sent"] == 6_000_002 and stats["files"]["1"]["requests"] == 2


# ---- dialects -----------------------------------------------------------------------------


def test_current_and_legacy_dialects() -> None:
    orders = [
        {"id": 1, "files": [{"filename": "a.txt", "size": 10, "mime_type": "text/plain"}]},
        {"id": 2, "dialect": "legacy", "files": [{"filename": "b.txt", "size": 20}]},
    ]
    with running(orders=orders, max_active_suborders=5) as (sim, client):
        headers = login(client)
        url = "/api/v1/rs-order/orders/{}/files/available"
        current = client.get(url.format(1), headers=headers).json()
        product = sim.scenario.default_product_id(1)
        assert current["content"] == [
            {
                "content": {
                    "id": 1,
                    "productId": product,
                    "version": 1,
                    "downloadUrl": f"{sim.url}/api/v1/rs-order/orders/files/1",
                    "mimeType": "text/plain",
                    "checksum": content_md5(1, 1, 10),
                    "filesize": 10,
                    "filename": "a.txt",
                },
                "links": [],
            }
        ]
        legacy = client.get(url.format(2), headers=headers).json()
        (item,) = legacy["content"]
        assert set(item["content"]) == {
            "id",
            "productId",
            "uri",
            "mimeType",
            "checksum",
            "filesize",
            "filename",
        }
        assert item["content"]["uri"] == f"{sim.url}/api/v1/rs-order/orders/files/2"
        assert len(client.get(item["content"]["uri"], headers=headers).content) == 20


def test_docs_dialect_shape_and_status_codes() -> None:
    scenario = {
        "suborder_max_files": 1,
        "max_active_suborders": 1,
        "restore_seconds": 0.15,
        "orders": [{"id": 5, "dialect": "docs", "files": files(2, 100)}],
    }
    with running(**scenario) as (sim, client):
        headers = login(client)
        url = "/api/v1/rs-order/orders/5/files/available"
        empty = client.get(url, headers=headers)
        assert empty.status_code == 204 and empty.content == b""
        wait_for(lambda: client.get(url, headers=headers).status_code == 206)
        body = client.get(url, headers=headers).json()
        assert body["metadata"] == {"number": 0, "size:": 10, "totalElements": 1, "totalPages": 1}
        (item,) = body["content"]
        checksum = content_md5(5, 1, 100)
        product = sim.scenario.default_product_id(1)
        assert item == {
            "productId": product,
            "checksum": checksum,
            "fileSize": 100,
            "filename": "f00.dat",
            "mimeType": "application/octet-stream",
            "uri": f"{sim.url}/api/v1/rs-catalog/{product}/files/{checksum}",
        }
        got = client.get(item["uri"], headers=headers)
        assert got.status_code == 200 and md5(got.content) == checksum
        assert sim.state.file_state(1) == "DOWNLOADED"
        wait_for(lambda: client.get(url, headers=headers).status_code == 200)
        final = client.get(url, headers=headers).json()
        assert [i["filename"] for i in final["content"]] == ["f01.dat"]
        assert order(client, headers, 5)["status"] == "DONE"


def test_gone_orders_answer_404_on_files() -> None:
    orders = [
        {"id": 1, "state": "expired", "files": files(1)},
        {"id": 2, "state": "deleted", "files": files(1)},
    ]
    with running(orders=orders) as (_sim, client):
        headers = login(client)
        for order_id, file_id in ((1, 1), (2, 2)):
            url = f"/api/v1/rs-order/orders/{order_id}/files/available"
            assert client.get(url, headers=headers).status_code == 404
            assert fetch(client, headers, file_id).status_code == 404
        assert order(client, headers, 1)["status"] == "EXPIRED"
        assert order(client, headers, 2)["status"] == "DELETED"


# ---- robustness and lifecycle ------------------------------------------------------------


def test_bad_requests_do_not_break_the_server() -> None:
    with running() as (sim, client):
        missing = client.get("/api/v1/nothing/here")
        assert missing.status_code == 404 and missing.json()["status"] == 404
        assert client.head("/api/v1/rs-order/user/orders/1").status_code == 405
        assert client.get(TOKEN_URL).status_code == 405
        with socket.create_connection(("127.0.0.1", sim.port)) as raw:
            raw.sendall(b"GET / / HTTP/1.1\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", sim.port)) as raw:
            raw.sendall(b"GET /sim/stats HTTP/1.1\r\nContent-Length: many\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", sim.port)) as raw:
            raw.sendall(b"GET /api/v1/rs-order/user/orders/1 HTTP/1.1\r\nHost: x\r\n")
        # The truncated request above is still answered (401), and the server lives on.
        wait_for(lambda: client.get("/sim/stats").json()["requests"]["order"] == 1)
        stats = client.get("/sim/stats")
        assert stats.status_code == 200
        assert set(stats.json()) >= {
            "logins",
            "unauthorized",
            "requests",
            "bytes_sent",
            "downloads_completed",
            "downloads_aborted",
            "files",
            "max_concurrent_downloads",
            "max_active_suborders",
        }


def test_keep_alive_and_stop_releases_the_port() -> None:
    sim = Simulator(Scenario.model_validate({"orders": [{"id": 1}]}))
    sim.start()
    try:
        with httpx.Client(base_url=sim.url) as client:
            headers = {"Authorization": "Bearer a-long-lived-token"}
            for _ in range(3):
                r = client.get("/api/v1/rs-order/user/orders/1", headers=headers)
                assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            port = sim.port
    finally:
        sim.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/sim/stats")


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text('{"orders": [{"id": 1}]}')
    code = (
        "import sys; from regards_order.simulator import load_scenario, serve; "
        "serve(load_scenario(sys.argv[1]), '127.0.0.1', 0)"
    )
    root = Path(__file__).resolve().parents[3]
    env = os.environ | {"PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(scenario)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("REGARDS simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(f"{url}/sim/stats").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_file_can_be_given_its_very_bytes() -> None:
    import base64
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inside.txt", "hello")
    data = buffer.getvalue()
    files = [{"filename": "a.zip", "content_base64": base64.b64encode(data).decode()}]
    orders = [{"id": 1, "owner": USER, "files": files}]
    with running(orders=orders) as (_, client):
        token = client.post(
            TOKEN_URL, params={"scope": "demo"}, json=CREDS, auth=("client", "secret")
        )
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        listing = client.get("/api/v1/rs-order/orders/1/files/available", headers=auth)
        (item,) = listing.json()["content"]
        assert item["content"]["filesize"] == len(data)
        assert item["content"]["checksum"] == md5(data)
        body = client.get(item["content"]["downloadUrl"], headers=auth)
    assert body.content == data
    assert zipfile.ZipFile(io.BytesIO(body.content)).read("inside.txt") == b"hello"
