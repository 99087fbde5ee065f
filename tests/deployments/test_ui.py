"""The operator's path, in a real browser: open the deployment in the Prefect UI, start a custom
run, fill in the order id and the target, submit, and watch the run complete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from regards_order.simulator import Simulator
from tests.helpers.deployments import ORDER_UI, assert_delivered
from tests.helpers.prefect_server import PrefectServer
from tests.helpers.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.usefixtures("served"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]

#: How long the UI may take to show a state it already has on the server.
UI_SECONDS = 30


def test_an_operator_runs_an_order_from_the_ui(
    prefect_server: PrefectServer, regards: Simulator, tmp_path: Path
) -> None:
    target = tmp_path / "from-the-ui"
    deployment = prefect_server.deployment("download-order")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_SECONDS * 1000)
        expect.set_options(timeout=UI_SECONDS * 1000)  # expect's own default is 5 s
        try:
            page.goto(f"{prefect_server.url}/deployments/deployment/{deployment.id}")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("button", name="Custom run").click()
            expect(page.get_by_role("heading", name="Parameters")).to_be_visible()

            _field(page, r"order[ _]id").get_by_role("spinbutton").fill(str(ORDER_UI))
            _field(page, r"target").get_by_role("textbox").fill(str(target))
            _submit(page, prefect_server)
            [flow_run_id] = wait_until(
                lambda: prefect_server.runs_of("download-order", order_id=ORDER_UI),
                "the run submitted from the UI",
                timeout=UI_SECONDS,
            )
            page.goto(f"{prefect_server.url}/runs/flow-run/{flow_run_id}")
            # The server decides when the run is over; then the page must say Completed.
            run = prefect_server.wait_final(flow_run_id, timeout=120)
            expect(page.get_by_role("banner").get_by_text("Completed", exact=True)).to_be_visible()
            expect(page.get_by_text("Finished in state Completed()").first).to_be_visible()
            _screenshot(page, "deployment-ui-run.png")
            # The report of every file is the run's table artifact.
            page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
            expect(page.get_by_text(f"order-{ORDER_UI}-files").first).to_be_visible()
            _screenshot(page, "deployment-ui-artifacts.png")
        except BaseException:
            _screenshot(page, "deployment-ui-failure.png")
            raise
        finally:
            browser.close()

    assert run.state.is_completed(), run.state.message
    assert run.parameters["order_id"] == ORDER_UI
    assert run.parameters["target"] == str(target)
    assert prefect_server.runs_of("download-order", order_id=ORDER_UI) == [run.id]  # one submit
    assert_delivered(regards, ORDER_UI, target)


def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


def _submit(page: Any, prefect_server: PrefectServer) -> None:
    """Submit the form and wait for the UI's confirmation. Once in a CI run, Prefect's UI
    answered "Something went wrong trying to create a flow run" with no run created and nothing
    in the server's log: then, as an operator would, submit again (at most twice more), only
    while the server holds no run of the order, so that the test still sees one submit."""
    confirmed = page.get_by_text("scheduled to start")
    refused = page.get_by_text("Something went wrong trying to create a flow run")
    for attempt in range(3):
        refusals = refused.count()
        page.get_by_role("button", name="Submit").click()
        wait_until(
            lambda: confirmed.count() or refused.count() > refusals,  # noqa: B023
            "the UI's answer to the submit",
            timeout=UI_SECONDS,
        )
        if confirmed.count():
            return
        assert not prefect_server.runs_of("download-order", order_id=ORDER_UI)
        print(f"the UI could not create the flow run (submit {attempt + 1}): submitting again")
    pytest.fail("the UI could not create the flow run, three submits in a row")


def _field(page: Any, label: str) -> Any:
    """The form field whose label is `label` (a regular expression, whole label)."""
    title = page.get_by_text(re.compile(rf"^{label}$", re.IGNORECASE))
    return title.locator("xpath=ancestor::*[.//input or .//textarea][1]")
