"""The live tree page (``GET /tree/{tree}``) in a real browser: headless
Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium)
against the API serving real Redis data (the education tree of test_api.py:
three evaluations, the divergence firing on the lesson abandon rate).

The page must draw the tree (North Star on top, one node per input under its
dimension with its owner, guardrails to the right with a text status, the
KPI), then follow the snapshot stream: a new evaluation changes the North
Star on screen without a reload. With a token it asks for it, keeps it for
the tab and reads the stream with fetch(); without, it uses EventSource.

A missing browser FAILS these tests with what to install; they never skip.

``python -m tests.api.test_tree_page docs/tree-page.png [WIDTH]`` redraws
the screenshot in the docs: four simulated weeks of the education product,
healthy, then Goodhart-style inflation until the divergence fires."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streamer.api import create_app
from streamer.engine import BatchApplier
from streamer.evaluate.evaluator import TreeEvaluator
from streamer.spec.model import Tree
from streamer.state.store import Store
from tests.api.test_api import AUTH, DAY, TOKEN, T, education, events, seed

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1440,1000",
]
INSTALL = "apt-get install -y chromium chromium-driver  (and pip install -e '.[dev]' for selenium)"
V = TypeVar("V")


# --------------------------------------------------------------------------- browser


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if browser is None or driver is None:
        missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None]
        pytest.fail(f"headless Chromium is required for the tree page tests; missing {', '.join(missing)}: "
                    f"{INSTALL}", pytrace=False)
    return browser, driver


@contextlib.contextmanager
def chromium(width: int = 1440, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium under chromedriver (no download, no network of its own)."""
    browser, driver_path = _chromium()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is required for the tree page tests: {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    with tempfile.TemporaryDirectory(prefix="northstar-chromium-") as profile:
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.set_page_load_timeout(30)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def seeded(redis_client: redis.Redis) -> tuple[Store, list[Tree]]:
    return seed(redis_client)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def wait_for(what: str, probe: Callable[[], V | None], timeout: float = 20.0) -> V:
    """Poll ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # the page may be between states
            value, last = None, exc
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last!r})")
        time.sleep(0.1)


# --------------------------------------------------------------------------- serving


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """``app`` on a free port in a thread of its own (the test blocks on the browser)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    thread = threading.Thread(target=loop.run_forever, name="tree-page-api", daemon=True)
    thread.start()

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------------------- reading the page

READ_PAGE = """
const box = (e) => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
const text = (e) => e ? e.textContent.replace(/\\s+/g, " ").trim() : null;
const banner = document.getElementById("banner");
return {
  title: document.title,
  product: text(document.getElementById("product")),
  connection: text(document.getElementById("connection")),
  tokenPanel: !document.getElementById("token-panel").hidden,
  tokenError: document.getElementById("token-error").hidden ? null : text(document.getElementById("token-error")),
  banner: banner.hidden ? null : text(banner),
  bannerState: banner.hidden ? null : banner.dataset.state,
  notice: document.getElementById("notice").hidden ? null : text(document.getElementById("notice")),
  nodes: [...document.querySelectorAll("article.node")].map((a) => ({
    name: a.dataset.metric,
    role: [...a.classList].find((c) => c.startsWith("node-")).slice(5),
    title: text(a.querySelector(".title")),
    value: a.querySelector("data.value").getAttribute("value"),
    reading: text(a.querySelector(".reading")),
    change: text(a.querySelector(".change")),
    tone: a.querySelector(".change").dataset.tone,
    status: text(a.querySelector(".status")),
    owner: text(a.querySelector(".owner strong")),
    dimension: text(a.closest(".branch")?.querySelector(".dimension .name")),
    points: Number(a.querySelector("svg.spark").dataset.points || 0),
    spark: !!a.querySelector("svg.spark path.line"),
    box: box(a),
  })),
};
"""


def page_state(driver: Any) -> dict[str, Any]:
    state: dict[str, Any] = driver.execute_script(READ_PAGE)
    state["by_name"] = {n["name"]: n for n in state["nodes"]}
    return state


def every_sparkline(state: dict[str, Any]) -> dict[str, Any] | None:
    return state if all(n["points"] for n in state["nodes"]) else None


def shown_value(driver: Any, metric: str) -> float | None:
    raw = driver.execute_script(
        "const v = document.querySelector(`article[data-metric='${arguments[0]}'] data.value`);"
        "return v ? v.getAttribute('value') : null;", metric)
    return float(raw) if raw else None


def severe_console_errors(driver: Any, allowed: str | None = None) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not (allowed and allowed in e["message"])]


def resources(driver: Any) -> list[str]:
    return list(driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);"))


# --------------------------------------------------------------------------- new data


def new_snapshot(store: Store, tree: Tree) -> dict[str, Any]:
    """Apply more (and longer) lessons and evaluate a day later: a snapshot
    whose North Star differs from the seeded ones."""
    ids = itertools.count()
    lines = [
        orjson.dumps({"event_type": "lesson_completed", "user_id": f"usr_late_{i}", "insert_id": f"late{next(ids)}",
                      "time": T + 2 * DAY + 43_200_000 + i * 1000,
                      "event_properties": {"lesson_id": "l2", "course_id": "c1", "minutes": 45}})
        for i in range(30)
    ]
    BatchApplier(store, [tree]).apply("0", list(enumerate(lines, start=1_000_000)), T + 3 * DAY)
    result = TreeEvaluator(store, tree).evaluate(T + 3 * DAY)
    assert result is not None
    snapshot: dict[str, Any] = dict(result[0])
    return snapshot


def north_star_value(snapshot: dict[str, Any]) -> float:
    return float(next(m["value"] for m in snapshot["metrics"] if m["role"] == "north_star"))


# --------------------------------------------------------------------------- the page in a browser


def test_the_page_draws_the_tree_and_follows_new_snapshots(
    seeded: tuple[Store, list[Tree]], browser: Any
) -> None:
    store, tree_list = seeded
    with serving(create_app(store, tree_list, poll_interval=0.1)) as url:
        browser.get(f"{url}/tree/education")
        wait_for("the North Star value", lambda: shown_value(browser, "weekly_learning_minutes"))
        wait_for("the stream", lambda: page_state(browser)["connection"] == "Live")
        page = wait_for("every sparkline", lambda: every_sparkline(page_state(browser)))
        nodes = page["by_name"]

        assert page["product"] == "Lingo Academy"
        assert page["title"] == "Lingo Academy · North Star tree"
        north = nodes["weekly_learning_minutes"]
        assert north["role"] == "north_star"
        assert north["title"] == "Weekly learning minutes"
        assert float(north["value"]) == 3500.0
        assert north["reading"] == "3,500 min"
        assert north["change"].startswith("▲ +55.6%") and north["change"].endswith("better")
        assert north["tone"] == "good"
        assert north["points"] == 3 and north["spark"]  # T, T+1d, T+2d

        inputs = [n for n in page["nodes"] if n["role"] == "input"]
        assert [(n["name"], n["dimension"], n["owner"]) for n in inputs] == [
            ("weekly_active_learners", "Breadth", "growth-squad"),
            ("minutes_per_learner", "Depth", "content-squad"),
            ("learning_days_per_learner", "Frequency", "habits-squad"),
            ("time_to_first_lesson_p50_seconds", "Efficiency", "onboarding-squad"),
        ]
        assert nodes["minutes_per_learner"]["reading"] == "58.3 min"
        assert nodes["time_to_first_lesson_p50_seconds"]["reading"] == "—"  # nobody signed up

        guardrails = {n["name"]: n for n in page["nodes"] if n["role"] == "guardrail"}
        assert {name: n["status"] for name, n in guardrails.items()} == {
            "weekly_learner_retention": "? Insufficient data",
            "lesson_abandon_rate": "✗ Degraded",
            "refund_rate": "? Insufficient data",
        }
        abandon = guardrails["lesson_abandon_rate"]
        assert abandon["reading"] == "50.0%"
        # a rise of a lower-is-better metric is worse
        assert abandon["change"].startswith("▲ +95.8%") and abandon["change"].endswith("worse")
        assert abandon["tone"] == "bad"
        assert nodes["paid_conversions"]["role"] == "kpi"
        assert nodes["paid_conversions"]["owner"] == "payments-squad"

        # drawn as a tree: North Star above its inputs, inputs side by side,
        # guardrails to the right of everything in the tree
        assert all(north["box"]["bottom"] < n["box"]["top"] for n in inputs)
        assert len({round(n["box"]["left"]) for n in inputs}) == 4
        tree_right = max(n["box"]["right"] for n in [north, *inputs])
        assert all(g["box"]["left"] > tree_right for g in guardrails.values())
        assert nodes["paid_conversions"]["box"]["top"] > max(n["box"]["bottom"] for n in inputs)

        assert page["bannerState"] == "firing"
        assert "Divergence firing" in page["banner"]
        assert "Lesson abandon rate (content-squad)" in page["banner"]
        assert "Refund rate" not in page["banner"]

        # live: a new snapshot changes the page without a reload
        browser.execute_script("window.__sameDocument = true;")
        snapshot = new_snapshot(store, tree_list[0])
        expected = north_star_value(snapshot)
        assert expected != 3500.0
        wait_for("the new North Star value", lambda: shown_value(browser, "weekly_learning_minutes") == expected)
        assert browser.execute_script("return window.__sameDocument === true;")
        after = page_state(browser)["by_name"]["weekly_learning_minutes"]
        assert after["reading"] != north["reading"]
        assert after["points"] == 4

        assert all(r.startswith(url + "/") for r in resources(browser)), resources(browser)
        assert severe_console_errors(browser) == []
        browser.get("about:blank")  # close the stream before the server stops


def test_with_a_token_the_page_asks_once_and_streams_with_the_header(
    seeded: tuple[Store, list[Tree]], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    store, tree_list = seeded
    with serving(create_app(store, tree_list, token=TOKEN, poll_interval=0.1)) as url:
        browser.get(f"{url}/tree/education")
        wait_for("the token form", lambda: page_state(browser)["tokenPanel"])
        assert page_state(browser)["connection"] == "Token needed"

        field = browser.find_element(By.ID, "token-input")
        field.send_keys("not-the-token")
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        error = wait_for("the rejection", lambda: page_state(browser)["tokenError"])
        assert "not accepted" in error
        assert page_state(browser)["tokenPanel"]

        browser.find_element(By.ID, "token-input").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
        assert wait_for("the North Star value", lambda: shown_value(browser, "weekly_learning_minutes")) == 3500.0
        wait_for("the stream", lambda: page_state(browser)["connection"] == "Live")
        assert not page_state(browser)["tokenPanel"]
        assert browser.execute_script("return sessionStorage.getItem('northstar.api.token');") == TOKEN
        assert not [r for r in resources(browser) if TOKEN in r]  # never in a URL

        # the stream is read with fetch() and the header
        browser.execute_script("window.__sameDocument = true;")
        expected = north_star_value(new_snapshot(store, tree_list[0]))
        wait_for("the new North Star value", lambda: shown_value(browser, "weekly_learning_minutes") == expected)
        assert browser.execute_script("return window.__sameDocument === true;")

        # asked once: a reload in the same tab uses the kept token
        browser.refresh()
        assert wait_for("the value after a reload",
                        lambda: shown_value(browser, "weekly_learning_minutes")) == expected
        assert not page_state(browser)["tokenPanel"]
        assert severe_console_errors(browser, allowed="401") == []
        browser.get("about:blank")


def test_before_the_first_evaluation_the_page_says_so(redis_client: redis.Redis, browser: Any) -> None:
    store = Store(redis_client, namespace="pagetest")
    tree = education()
    BatchApplier(store, [tree]).apply("0", list(enumerate(events())), T + 3 * DAY)
    with serving(create_app(store, [tree], poll_interval=0.1)) as url:
        browser.get(f"{url}/tree/education")
        notice = wait_for("the notice", lambda: page_state(browser)["notice"])
        assert "No snapshot yet" in notice
        assert page_state(browser)["by_name"]["weekly_learning_minutes"]["reading"] == "—"
        TreeEvaluator(store, tree).evaluate(T)
        wait_for("the first snapshot", lambda: shown_value(browser, "weekly_learning_minutes"))
        wait_for("the notice to go", lambda: page_state(browser)["notice"] is None)
        browser.get("about:blank")


# --------------------------------------------------------------------------- the route


def test_the_route_serves_the_self_contained_page(seeded: tuple[Store, list[Tree]]) -> None:
    async def main() -> None:
        app = create_app(*seeded, token=TOKEN)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/tree/education")  # public: a browser cannot send the header
            body = await response.text()
            assert response.status == 200, body
            assert response.content_type == "text/html"
            assert response.charset == "utf-8"
            assert '<body data-tree="education">' in body
            assert "{{" not in body
            # self-contained: no external script, style, image or font
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", body)
            assert "@import" not in body and "url(" not in body
            # no values in the page itself: they come from /api/* with the token
            assert "Lingo Academy" not in body
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "connect-src 'self'" in policy
            for kind in ("script", "style"):
                (source,) = re.findall(rf"<{kind}>(.*?)</{kind}>", body, re.DOTALL)
                digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
                assert f"{kind}-src 'sha256-{digest}'" in policy

            missing = await client.get("/tree/nope")
            assert missing.status == 404
            error = await missing.json()
            assert error["error"] == "not_found" and "unknown tree 'nope'" in error["detail"]
            assert (await client.get("/api/v1/trees/education", headers=AUTH)).status == 200

    asyncio.run(main())


# --------------------------------------------------------------------------- the screenshot


def _screenshot(path: Path, width: int = 1440) -> None:
    """Simulate the education product (healthy, then inflated), evaluate it
    every 6 hours into the divergence, serve it and photograph the page."""
    from streamer.sim.models import simulate
    from streamer.sim.scenarios import SCENARIOS
    from streamer.testing.services import redis_service
    from tests.trees import example

    start = 20_000 * DAY
    drift_from = start + 28 * DAY
    tree = example("education")
    with redis_service() as service:
        client = redis.Redis.from_url(service.url)
        store = Store(client, namespace="screenshot")
        client.flushall()
        lines = [orjson.dumps(e) for e in simulate("education", start, 40, SCENARIOS["goodhart"],
                                                   drift_from_ms=drift_from, seed=3)]
        applier = BatchApplier(store, [tree])
        for offset in range(0, len(lines), 5000):
            batch = list(enumerate(lines[offset:offset + 5000], start=offset))
            applier.apply("0", batch, start + 41 * DAY)
        evaluator = TreeEvaluator(store, tree)
        state = "inactive"
        for hour in range(14 * 24, 40 * 24, 6):
            result = evaluator.evaluate(start + hour * 3_600_000)
            assert result is not None
            state = result[0]["divergence"]["state"]
            if state == "firing":
                break
        assert state == "firing", state
        with serving(create_app(store, [tree])) as url, chromium(width, 1000) as driver:
            driver.get(f"{url}/tree/education")
            wait_for("the sparklines", lambda: all(n["points"] > 1 for n in page_state(driver)["nodes"]))
            wait_for("the stream", lambda: page_state(driver)["connection"] == "Live")
            height = driver.execute_script("return document.documentElement.scrollHeight;")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the whole page, no scrollbar
                                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            time.sleep(0.5)  # sparklines redraw on resize
            driver.save_screenshot(str(path))
            driver.get("about:blank")
        client.close()


if __name__ == "__main__":
    _screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/tree-page.png"),
                int(sys.argv[2]) if len(sys.argv) > 2 else 1440)
