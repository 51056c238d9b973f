"""The explainer page in a real browser: Debian's chromium + chromedriver driven by Selenium against a live service
(uvicorn on a free port, a small real artifact, MovieLens-100K user "1" ingested as the demo does — or, without the
recbole wheel, a generated history of the same size).

The test ranks from the page, opens an explanation and checks what the page shows against /v1/rank and
/v1/explain; it saves a screenshot under its tmp dir. Without chromium, chromedriver or selenium it is skipped with
the reason (`make test` installs the browser when it is missing and the user is root: scripts/ensure-browser.sh).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from serving.app import create_app
from serving.settings import Settings

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1500")  # fmt: skip
DEMO_USER = "1"
# the page's default candidates: MovieLens movies (and first genres) that user 1 has not rated
CANDIDATES = [(302, 6), (318, 8), (313, 1), (300, 1), (288, 11), (294, 5), (474, 15), (423, 4)]


@pytest.fixture(scope="module")
def binaries() -> tuple[str, str]:
    """chromium and chromedriver, or skip (checked before the service starts)."""
    pytest.importorskip("selenium.webdriver", reason="browser test skipped: selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("browser test skipped: chromium and chromedriver are not installed "
                    "(as root: apt-get install -y chromium chromium-driver; `make test` does it)")  # fmt: skip
    return chromium, driver


def _demo_events() -> list[dict[str, Any]]:
    """MovieLens-100K user "1" (272 ratings, actions = ratings 1-5), as `longrank demo` ingests it; a generated
    history of the same shape when the dataset is not installed."""
    try:
        from models.data.movielens import MovieLensMissing, load_ml100k

        frame = load_ml100k()
        rows = frame[frame["user_id"] == DEMO_USER]
        return [{"user_id": DEMO_USER, "item_id": int(r.item_id), "category_id": int(r.category_id), "ts": int(r.ts),
                 "action": int(r.action), "event_id": str(r.event_id)} for r in rows.itertuples()]  # fmt: skip
    except MovieLensMissing:
        rng = np.random.default_rng(1)
        now = int(time.time())
        ts = np.sort(rng.integers(now - 400 * 86_400, now - 3600, 272))
        return [{"user_id": DEMO_USER, "item_id": int(rng.integers(1, 1700)), "category_id": int(rng.integers(0, 19)),
                 "ts": int(t), "action": int(rng.integers(1, 6))} for t in ts]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_url(binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory, artifact_dir: Path) -> Iterator[str]:
    """A live service in a thread of this process (uvicorn, real sockets, an sqlite store) holding the demo user."""
    port = _free_port()
    store = tmp_path_factory.mktemp("ui") / "behaviors.db"
    settings = Settings(store_url=f"sqlite:///{store}", artifact=artifact_dir, port=port, actions=(0, 1, 2, 3, 4, 5),
                        access_log=False, explore_enabled=False)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ui-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the service did not start")
        time.sleep(0.05)
    try:
        r = httpx.post(f"{url}/v1/events", json={"events": _demo_events()}, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] > 0, r.text
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def browser(binaries: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # the driver is named explicitly, so Selenium Manager never tries to download one
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_ranks_and_explains(live_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(f"{live_url}/ui")
    assert browser.title.startswith("longrank")
    assert browser.find_element(By.ID, "user").get_attribute("value") == DEMO_USER

    browser.find_element(By.ID, "rank").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ranked tbody tr")) == len(CANDIDATES))
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranked tbody tr")
    shown = [(int(r.get_attribute("data-item-id")), float(r.get_attribute("data-pctr"))) for r in rows]
    body = {"user_id": DEMO_USER, "candidates": [{"item_id": i, "category_id": c} for i, c in CANDIDATES]}
    ranked = httpx.post(f"{live_url}/v1/rank", json=body, timeout=30).json()["items"]
    assert [i for i, _ in shown] == [r["item_id"] for r in ranked]  # the page shows /v1/rank's order and scores
    assert [p for _, p in shown] == pytest.approx([r["pctr"] for r in ranked], abs=1e-6)

    top_item = shown[0][0]
    rows[0].click()
    wait.until(ec.visibility_of_element_located((By.ID, "explanation")))
    wait.until(ec.text_to_be_present_in_element((By.ID, "ex-title"), f"Item {top_item}"))
    category = dict(CANDIDATES)[top_item]
    explained = httpx.post(f"{live_url}/v1/explain", timeout=30, json={
        "user_id": DEMO_USER, "candidates": [{"item_id": top_item, "category_id": category}]}).json()  # fmt: skip
    item = explained["items"][0]
    assert explained["history"]["length"] >= 200
    assert item["retrieved"], "the GSU retrieved nothing for the demo user's top candidate"

    # the summary: the score, the short-only score and the long history's contribution
    assert float(browser.find_element(By.ID, "ex-pctr").text) == pytest.approx(shown[0][1], abs=1e-4)
    assert float(browser.find_element(By.ID, "ex-short-only").text) == pytest.approx(item["score_short_only"], abs=1e-4)
    long_text = browser.find_element(By.ID, "ex-long").text.replace("−", "-")
    assert float(long_text) == pytest.approx(item["long_contribution"], abs=1e-4)
    # the timeline: one dot per retrieved behaviour, at its position, sized by attention
    dots = browser.execute_script(  # [slot, radius] of each dot, read in one call
        "return [...document.querySelectorAll('#timeline circle.retrieved-dot')]"
        ".map(d => [Number(d.dataset.slot), Number(d.getAttribute('r'))])")  # fmt: skip
    assert sorted(slot for slot, _ in dots) == [b["slot"] for b in item["retrieved"]]
    radius = dict(dots)
    by_attention = sorted(item["retrieved"], key=lambda b: b["attention"])
    assert radius[by_attention[-1]["slot"]] > radius[by_attention[0]["slot"]] or \
        by_attention[-1]["attention"] == pytest.approx(by_attention[0]["attention"])  # fmt: skip
    short_dots = browser.execute_script("return document.querySelectorAll('#timeline circle.short-dot').length")
    assert short_dots == len(explained["history"]["short"])
    # the tables: retrieved behaviours by attention, the statistics by name
    slots = browser.execute_script("return [...document.querySelectorAll('#retrieved tbody tr')]"
                                   ".map(r => Number(r.dataset.slot))")  # fmt: skip
    assert sorted(slots) == sorted(radius) and slots[0] == by_attention[-1]["slot"]
    names = browser.execute_script("return [...document.querySelectorAll('#stats tbody tr')].map(r => r.dataset.name)")
    assert names == list(item["stats"])
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error"

    shot = tmp_path / "ui.png"
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
