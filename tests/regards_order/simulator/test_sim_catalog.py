"""The catalogue and the legacy search engine over real HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from regards_order.simulator import Scenario
from regards_order.simulator.content import content_md5
from tests.helpers.simulator_client import running

SEARCH = "/api/v1/rs-catalog/engines/legacy/dataobjects/search"
URN = r"URN:AIP:DATA:demo:[0-9a-f-]{36}:V1"


def product(provider_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "provider_id": provider_id,
        "tags": ["optical"] if provider_id.startswith("S2") else ["radar"],
        "properties": properties,
        "files": {
            "RAWDATA": [{"filename": f"{provider_id}.zip", "size": 3000, "mime_type": "app/zip"}],
            "QUICKLOOK_SD": [{"filename": f"{provider_id}_ql.png", "size": 100}],
        },
    }


CATALOG = {
    "datasets": [{"label": "Sentinel-2"}, {"label": "Sentinel-1"}],
    "products": [
        product("S2A_001", cloud=5.0, orbit=12, start="2024-01-10T10:00:00Z", tile="31TCJ"),
        product("S2A_002", cloud=40.0, orbit=13, start="2024-02-10T10:00:00Z", tile="31TCK"),
        product("S2B_003", cloud=75.5, orbit=14, start="2024-03-10T10:00:00Z", tile="31TCJ")
        | {"label": "Toulouse at noon"},
        product("S1A_004", orbit=15, start="2024-04-10T10:00:00Z", tile="31TDJ")
        | {"dataset": "Sentinel-1", "model": "S1_MODEL"},
    ],
}


def search(client: httpx.Client, q: str | None = None, **params: Any) -> httpx.Response:
    return client.get(SEARCH, params={"q": q, **params} if q is not None else params)


def found(client: httpx.Client, q: str, **params: Any) -> list[str]:
    r = search(client, q, **params)
    assert r.status_code == 200, r.text
    return [item["content"]["providerId"] for item in r.json()["content"]]


def test_a_feature_as_the_search_engine_answers_it() -> None:
    with running(catalog=CATALOG) as (sim, client):
        body = search(client, 'providerId:"S2A_001"').json()
        assert body["metadata"] == {"size": 20, "totalElements": 1, "totalPages": 1, "number": 0}
        assert body["facets"] == [] and body["links"][0]["rel"] == "self"
        (item,) = body["content"]
        assert item["links"] == []
        feature = item["content"]
        assert re.fullmatch(URN, feature["id"])
        dataset = sim.state.catalog.datasets[0]
        assert re.fullmatch(r"URN:AIP:DATASET:demo:[0-9a-f-]{36}:V1", dataset.id)
        assert {k: feature[k] for k in ("providerId", "entityType", "label", "model")} == {
            "providerId": "S2A_001",
            "entityType": "DATA",
            "label": "S2A_001",
            "model": "DATA_MODEL",
        }
        assert feature["tags"] == ["optical", dataset.id]
        assert feature["properties"] == {
            "cloud": 5.0,
            "orbit": 12,
            "start": "2024-01-10T10:00:00Z",
            "tile": "31TCJ",
        }
        (raw,) = feature["files"]["RAWDATA"]
        (quicklook,) = feature["files"]["QUICKLOOK_SD"]
        assert raw == {
            "dataType": "RAWDATA",
            "reference": False,
            "uri": raw["uri"],
            "mimeType": "app/zip",
            "online": True,
            "checksum": content_md5(0, 1, 3000),
            "digestAlgorithm": "MD5",
            "filesize": 3000,
            "filename": "S2A_001.zip",
        }
        assert quicklook["checksum"] == content_md5(0, 2, 100)
        # Ids are stable: another simulator of the same scenario gives the same URNs.
        with running(catalog=CATALOG) as (_, other):
            assert (
                search(other, 'providerId:"S2A_001"').json()["content"][0]["content"]["id"]
                == (feature["id"])
            )


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("", ["S2A_001", "S2A_002", "S2B_003", "S1A_004"]),
        ("*:*", ["S2A_001", "S2A_002", "S2B_003", "S1A_004"]),
        ("providerId:S2A", ["S2A_001", "S2A_002"]),
        ('providerId:"S2A"', []),
        ("providerId:S2*", ["S2A_001", "S2A_002", "S2B_003"]),
        ("providerId:/S[12]B_.*/", ["S2B_003"]),
        ("label:Toulouse", ["S2B_003"]),
        ("tile:31TCJ", ["S2A_001", "S2B_003"]),
        ("properties.tile:31TCJ", ["S2A_001", "S2B_003"]),
        ("cloud:[0 TO 40]", ["S2A_001", "S2A_002"]),
        ("cloud:{5 TO 40]", ["S2A_002"]),
        ("orbit:13", ["S2A_002"]),
        ("start:[2024-02-01T00:00:00Z TO 2024-03-31T00:00:00Z]", ["S2A_002", "S2B_003"]),
        ('start:"2024-04-10T10:00:00Z"', ["S1A_004"]),
        ("tags:radar", ["S1A_004"]),
        ("model:S1_MODEL", ["S1A_004"]),
        ("tile:31TCJ AND NOT cloud:[50 TO *]", ["S2A_001"]),
        ("(tile:31TDJ OR cloud:[70 TO *]) AND tags:optical", ["S2B_003"]),
    ],
)
def test_queries_find_what_regards_would(q: str, expected: list[str]) -> None:
    with running(catalog=CATALOG) as (_, client):
        assert found(client, q) == expected


def test_the_dataset_tag_and_the_urn_select_too() -> None:
    with running(catalog=CATALOG) as (sim, client):
        s1 = sim.state.catalog.datasets[1].id
        assert found(client, f'tags:"{s1}"') == ["S1A_004"]
        urn = search(client, "providerId:S2B").json()["content"][0]["content"]["id"]
        assert found(client, f'id:"{urn}"') == ["S2B_003"]


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("tile:31TCJ cloud:5", "Indeterminate relationship between criteria"),
        ("tile:(31TCJ", "expected ')'"),
        ("unknown:1", "Invalid OpenSearch parameter : unknown."),
        ("orbit:twelve", "not a valid integer"),
        ("start:2024-01-10T10:00:00Z", "unexpected ':'"),
    ],
)
def test_a_refused_query_answers_400_with_its_message(q: str, message: str) -> None:
    with running(catalog=CATALOG) as (sim, client):
        r = search(client, q)
        assert r.status_code == 400 and message in r.json()["message"]
        assert message in r.json()["messages"][0]
        assert sim.stats()["catalog"]["searches"][-1]["q"] == q


def test_paging_and_sorting() -> None:
    with running(catalog=CATALOG) as (_, client):
        first = search(client, "", size=3, sort="orbit,DESC").json()
        assert first["metadata"] == {"size": 3, "totalElements": 4, "totalPages": 2, "number": 0}
        assert [i["content"]["providerId"] for i in first["content"]] == [
            "S1A_004",
            "S2B_003",
            "S2A_002",
        ]
        links = {link["rel"]: link["href"] for link in first["links"]}
        second = client.get(links["next"]).json()
        assert [i["content"]["providerId"] for i in second["content"]] == ["S2A_001"]
        # Products without the attribute come last; ties keep the catalogue's order.
        assert found(client, "", sort="cloud,ASC") == ["S2A_001", "S2A_002", "S2B_003", "S1A_004"]
        assert found(client, "", sort=["tile,ASC", "orbit,DESC"]) == [
            "S2B_003",
            "S2A_001",
            "S2A_002",
            "S1A_004",
        ]
        assert search(client, "", sort="nope,ASC").status_code == 400
        assert search(client, "", page="-1").status_code == 400


def test_the_catalogue_is_public_but_a_bad_token_is_refused() -> None:
    with running(catalog=CATALOG) as (sim, _):
        anonymous = httpx.get(f"{sim.url}{SEARCH}", params={"q": "orbit:12"})
        assert anonymous.status_code == 200 and len(anonymous.json()["content"]) == 1
        bad = httpx.get(f"{sim.url}{SEARCH}", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        users = [s["user"] for s in sim.stats()["catalog"]["searches"]]
        assert users == [None]


def test_generated_products_by_the_thousand() -> None:
    catalog = {
        "generate": [
            {
                "count": 3000,
                "provider_id": "GEN_{i:05d}",
                "properties": {"mission": "M{i}", "start": "2024-01-01T00:00:00Z"},
                "files": {"RAWDATA": "{provider_id}.dat", "QUICKLOOK_HD": "{provider_id}.jpg"},
                "size": 10,
            }
        ]
    }
    scenario = Scenario.model_validate({"catalog": catalog})
    with running(**scenario.model_dump()) as (sim, client):
        body = search(client, "index:[1000 TO 1999] AND mission:/M1[0-9]*5/", size=500).json()
        assert body["metadata"]["totalElements"] == 100
        first = body["content"][0]["content"]
        assert first["providerId"] == "GEN_01005" and first["properties"]["index"] == 1005
        assert first["files"]["QUICKLOOK_HD"][0]["filename"] == "GEN_01005.jpg"
        assert len(sim.state.catalog.products) == 3000
