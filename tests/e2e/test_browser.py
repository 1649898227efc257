"""What a person sees in a browser: the Prefect UI on a training's attempt run, and the inference docs.

Headless Chromium from Debian (``/usr/bin/chromium``, installed by ``make chromium``), driven by
Playwright, which downloads no browser of its own here. The test logs into the Prefect UI as the UI
itself does (the auth string, base64, in local storage under ``prefect-password``), opens the run
of the training's attempt, its Artifacts tab and the attempts table, and finds the ``outcome``
column; then it opens the inference service's ``/docs``, authorizes with the tenant's key through
Swagger's "Authorize" button (the Bearer scheme), and runs the documented example with "Try it
out" (on from the start): the example's model is trained here on the example's features, so the answer is a 200 with
predictions, which a missing or wrong Authorization header would turn into a 401.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tenantml.inference.openapi import DOCS_PATH, EXAMPLE_MODEL, EXAMPLE_SCHEMA
from tests.support.platform import TENANTML, Up
from tests.support.prefect_api import auth_string

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
playwright_sync = pytest.importorskip("playwright.sync_api")


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([TENANTML, *args], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"tenantml {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout


def _example_frame(rows: int = 600) -> pd.DataFrame:
    """Rows with the inference docs' example features (age, income, member, score), so its example is answered."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"age": rng.integers(18, 90, rows), "income": rng.normal(50.0, 10.0, rows),
                          "member": rng.random(rows) < 0.5, "score": rng.random(rows)})
    assert list(frame.columns) == [feature.name for feature in EXAMPLE_SCHEMA.features]
    return frame.assign(label=np.where(frame["score"] + 0.3 * frame["member"] > 0.6, "yes", "no"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `make chromium` installs Debian's package (as root)")
    with playwright_sync.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                          args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_attempts_table_in_the_prefect_ui_and_authorized_try_it_out_in_the_docs(
        browser: object, platform_up: Up, tmp_path: Path) -> None:
    tenant = f"web-{uuid.uuid4().hex[:8]}"
    key = json.loads(run(platform_up.env, "tenant", "create", tenant, "--json"))["api_key"]
    _example_frame().to_csv(tmp_path / "members.csv", index=False)
    run(platform_up.env, "dataset", "add", "--tenant", tenant, str(tmp_path / "members.csv"))
    trained = json.loads(run(platform_up.env, "train", "--tenant", tenant, "--model", EXAMPLE_MODEL,
                             "--dataset", "members.csv", "--target", "label", "--algorithm", "sgd_classifier",
                             "--wait", "--json"))
    assert trained["status"] == "completed", trained
    request_id = trained["request_id"]
    store = Store(create_database(f"sqlite:///{platform_up.home.resolve() / 'tenantml.db'}"))
    flow_run_id = store.get_request(request_id).attempts[-1].flow_run_id

    context = browser.new_context()  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)

        # Prefect: log in as its UI does, open the attempt's run, its Artifacts tab, the attempts table.
        ui = platform_up.status["prefect_ui_url"].rstrip("/")
        page.goto(ui)
        password = base64.b64encode(auth_string(platform_up).encode()).decode()
        page.evaluate("password => localStorage.setItem('prefect-password', password)", password)
        page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text(f"attempts-{request_id}").first.click()
        outcome = page.get_by_role("columnheader", name="outcome")
        outcome.wait_for()
        assert outcome.is_visible()
        # The key's page lists its versions, newest first; the newest has the attempt's final outcome in its row.
        page.goto(f"{ui}/artifacts/key/attempts-{request_id}")
        playwright_sync.expect(page.get_by_text("completed (version 1, 1 attempt)")).to_be_visible()
        page.locator("a[href^='/artifacts/artifact/']").first.click()
        table = page.locator("table").filter(has=page.get_by_role("columnheader", name="outcome")).first
        playwright_sync.expect(table).to_contain_text("completed", timeout=60_000)

        # Inference: /docs, the Bearer scheme's Authorize, then the example through "Try it out".
        docs = platform_up.status["inference_url"].rstrip("/") + DOCS_PATH
        page.goto(docs)
        page.get_by_role("button", name="Authorize").first.click()
        page.locator("#auth-bearer-value").fill(key)  # the Bearer scheme's value field
        page.get_by_role("button", name="Apply credentials").click()  # Swagger's "Authorize" in the dialog
        page.locator(".auth-container").get_by_role("button", name="Close").click()
        page.locator(".opblock-post").first.locator(".opblock-summary").first.click()  # "Try it out" is on
        with page.expect_response(lambda response: response.request.method == "POST") as answered:
            page.get_by_role("button", name="Execute").first.click()
        response = answered.value
        assert response.request.headers.get("authorization") == f"Bearer {key}"
        assert response.status == 200, response.text()
        assert len(response.json()["predictions"]) == 1
    finally:
        context.close()
