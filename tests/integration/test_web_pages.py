"""The API's browser pages in a real browser: Debian's Chromium driven by Playwright, against `aromatrack api`
running as a subprocess on the local stack (its Kafka producer and InfluxDB client, a store of its own).

Every page is checked for requests to any other origin, and for requests its Content-Security-Policy refused
(Chromium reports those on the console): the namespace the tests run in has no internet, so a page that
reached out would only show as a blank or broken page, which is what a clinic's closed network sees.
Screenshots of each page land in $AROMATRACK_STATE_DIR/screenshots.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import series as S
from aromatrack.schemas.events import Alert, AlertEvidence
from aromatrack.services.auth import Role
from aromatrack.services.notifier import Notifier
from aromatrack.services.store import Store

from .conftest import reader_passwords
from .test_notifier_delivery import SECRET, WebhookReceiver

CHROMIUM = "/usr/bin/chromium"
# What Chromium needs to start quietly here: no sandbox as root, no GPU, and none of its own calls home
# (refused by the closed network, many at a time). Playwright adds --headless and a fresh --user-data-dir.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def alert(alert_id: str, athlete: str, severity: str, rule: str, days_ago: float, summary: str) -> Alert:
    return Alert(
        alert_id=alert_id, athlete_id=athlete, time=NOW - timedelta(days=days_ago), kind="dose_review", rule=rule,
        severity=severity, summary=summary,
        evidence=[AlertEvidence(name="e2_pg_ml", value=14.2, unit="pg/mL", event_ids=["ev-1", "ev-2"]),
                  AlertEvidence(name="body_fat_change_pct", value=-3.1, unit="%", event_ids=["ev-3"])],
        sources=["clinical-seed-e2-fat"],
    )


# Clinician A cares for ath-a1 and ath-a2, clinician B for ath-b1.
ALERTS = {
    "a1-urgent": alert("a1-urgent", "ath-a1", "urgent", "e2_low_with_fat_loss", 2,
                       "Estradiol fell below range while body fat fell on an unchanged anastrozole dose."),
    "a1-info": alert("a1-info", "ath-a1", "info", "recheck_after_dose_change", 1,
                     "Six weeks since the dose change: an estradiol recheck is due."),
    "a2-warning": alert("a2-warning", "ath-a2", "warning", "fat_loss_unchanged_ai", 5,
                        "Body fat fell 3 points in 8 weeks with the AI dose unchanged."),
    "b1-urgent": alert("b1-urgent", "ath-b1", "urgent", "e2_low_with_fat_loss", 1,
                       "Clinician B's patient: estradiol below range."),
}


@dataclass
class Site:
    url: str
    store: Store
    tokens: dict[str, str]
    settings: Settings
    receiver: WebhookReceiver
    screenshots: Path
    stack: Settings  # the shared stack, whose InfluxDB users the site's processes log in as


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _write_evidence(stack: Settings, database: str, athlete: str) -> None:
    influx_access.provision(stack, database)
    async with influx_access.writer_store(replace(stack, influx_database=database)) as influx:
        await influx.write([
            S.LAB.point(NOW - timedelta(days=d), {"athlete_id": athlete, "analyte": "estradiol",
                                                 "method": "lc_msms", "censored": "no"}, {"value": v})
            for d, v in ((80, 31.0), (40, 24.0), (3, 14.2))
        ] + [
            S.BODY_FAT_TREND.point(NOW - timedelta(days=d), {"athlete_id": athlete},
                                   {"smoothed_pct": 20 - (90 - d) * 0.04}) for d in range(90, 2, -3)
        ] + [
            S.TRAINING_LOAD_DAILY.point(NOW - timedelta(days=d), {"athlete_id": athlete},
                                        {"load": 50.0 + (d % 7) * 12}) for d in range(90, 2, -1)
        ] + [
            S.DOSE.point(NOW - timedelta(days=85), {"athlete_id": athlete, "drug": "anastrozole"}, {"weekly_mg": 1.0}),
            S.DOSE.point(NOW - timedelta(days=85), {"athlete_id": athlete, "drug": "testosterone_cypionate"},
                         {"weekly_mg": 140.0}),
        ])


@pytest.fixture(scope="module")
def site(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`aromatrack api` on a free loopback port over its own store and InfluxDB database."""
    state = tmp_path_factory.mktemp("web")
    settings = Settings(stack.kafka_bootstrap, stack.influx_url, f"web_{uuid.uuid4().hex[:8]}", state, stack.app_id)
    receiver = WebhookReceiver()
    store = Store(state / "api.sqlite3")
    tokens = {
        "clin-a": store.add_user("clin-a", Role.CLINICIAN, webhook_url=receiver.url, webhook_secret=SECRET),
        "clin-b": store.add_user("clin-b", Role.CLINICIAN),
        "coach-a": store.add_user("coach-a", Role.COACH),
        "ath-a1": store.add_user("ath-a1", Role.ATHLETE),
    }
    for athlete, member in (("ath-a1", "clin-a"), ("ath-a2", "clin-a"), ("ath-a1", "coach-a"), ("ath-b1", "clin-b")):
        store.assign(athlete, member)
    for item in ALERTS.values():
        store.record_alert(item)
    asyncio.run(_write_evidence(stack, settings.influx_database, "ath-a1"))

    port = _free_port()
    log_path = state / "api.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "aromatrack.services.cli", "api", "--port", str(port)],
        env={**os.environ, **settings.as_env(), **reader_passwords(stack)}, stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/openapi.json").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the API did not start; see {log_path}")
        time.sleep(0.2)
    screenshots = stack.state_dir / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    yield Site(url, store, tokens, settings, receiver, screenshots, stack)
    process.terminate()
    process.wait(30)
    receiver.server.shutdown()
    assert "at_" not in log_path.read_text(), "a token reached the API's log"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@dataclass
class Traffic:
    """Every request the browser made, and every load its Content-Security-Policy refused."""

    origin: str
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        return [url for url in self.requests
                if urlsplit(url).scheme in ("http", "https", "ws", "wss") and not url.startswith(self.origin + "/")]

    def assert_own_origin_only(self) -> None:
        assert self.external() == [], f"requests to other origins: {self.external()}"
        assert self.refused == [], f"loads refused by the Content-Security-Policy: {self.refused}"


@dataclass
class Visit:
    context: BrowserContext
    page: Page
    traffic: Traffic


@pytest.fixture
async def visit(browser: Browser, site: Site) -> AsyncIterator[Visit]:
    """A fresh browser context (no cookies) whose pages must only ever talk to the API's origin."""
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    traffic = Traffic(site.url)
    context.on("request", lambda request: traffic.requests.append(request.url))
    page = await context.new_page()
    page.on("console", lambda message: traffic.refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield Visit(context, page, traffic)
    await context.close()
    traffic.assert_own_origin_only()


async def sign_in(visit: Visit, site: Site, user: str) -> None:
    page = visit.page
    await page.goto(site.url + "/inbox")
    await expect(page).to_have_url(site.url + "/inbox/sign-in")
    await page.fill("#token", site.tokens[user])
    await page.click("button:text('Sign in')")


async def test_the_traffic_check_catches_a_page_that_loads_from_elsewhere(browser: Browser) -> None:
    context = await browser.new_context()
    traffic = Traffic("http://127.0.0.1:1")
    context.on("request", lambda request: traffic.requests.append(request.url))
    page = await context.new_page()
    await page.set_content('<img src="https://cdn.example.invalid/logo.png">')
    await context.close()
    with pytest.raises(AssertionError, match="cdn.example.invalid"):
        traffic.assert_own_origin_only()


async def test_swagger_ui_lists_every_operation_offline(visit: Visit, site: Site) -> None:
    spec = httpx.get(site.url + "/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    response = await visit.page.goto(site.url + "/docs")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    await expect(visit.page.locator(".opblock")).to_have_count(operations, timeout=20_000)
    await expect(visit.page.locator(".opblock-summary-path").first).to_be_visible()
    await visit.page.screenshot(path=site.screenshots / "docs-swagger.png")


async def test_redoc_lists_every_operation_offline(visit: Visit, site: Site) -> None:
    spec = httpx.get(site.url + "/openapi.json").json()
    summaries = [op["summary"] for methods in spec["paths"].values() for op in methods.values()]
    response = await visit.page.goto(site.url + "/redoc")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    await expect(visit.page.get_by_text(summaries[0]).first).to_be_attached(timeout=20_000)
    for summary in summaries:
        await expect(visit.page.get_by_text(summary, exact=True).first).to_be_attached()
    await visit.page.screenshot(path=site.screenshots / "docs-redoc.png")


async def test_a_clinician_sees_only_their_athletes_and_acknowledges_one_with_its_chart(
    visit: Visit, site: Site
) -> None:
    page = visit.page
    await sign_in(visit, site, "clin-a")
    await expect(page).to_have_url(site.url + "/inbox")
    rows = page.locator("table.alerts tbody tr")
    # Clinician A's three open alerts, most severe first; nothing of clinician B's patient.
    await expect(rows).to_have_count(3)
    assert [await rows.nth(i).locator("a").get_attribute("href") for i in range(3)] == [
        "/inbox/alerts/a1-urgent", "/inbox/alerts/a2-warning", "/inbox/alerts/a1-info"]
    content = await page.content()
    assert "ath-b1" not in content and "Clinician B" not in content
    await page.screenshot(path=site.screenshots / "inbox-open.png", full_page=True)

    await page.select_option("select[name=athlete]", "ath-a1")
    await page.select_option("select[name=rule]", "e2_low_with_fat_loss")
    await page.click("button:text('Filter')")
    await expect(rows).to_have_count(1)
    await page.screenshot(path=site.screenshots / "inbox-filtered.png", full_page=True)

    # The first notice went out; until the alert is acknowledged, the notifier sends it again when it is due.
    site.store.log_delivery("a1-urgent", "webhook:clin-a", 1, "delivered", 1)
    assert await reminders_sent(site) == 1

    await page.click("a[href='/inbox/alerts/a1-urgent']")
    await expect(page.locator("h1")).to_contain_text("athlete ath-a1")
    await expect(page.locator("table.evidence")).to_contain_text("14.2")
    chart = page.locator("figure img")
    await expect(chart).to_be_visible()
    await expect(chart).to_have_js_property("complete", True)
    assert await chart.evaluate("img => img.naturalWidth") > 400
    await page.screenshot(path=site.screenshots / "inbox-alert.png", full_page=True)

    await page.fill("#note", "Seen; repeat E2 (LC-MS/MS) ordered for next week.")
    await page.click("button:text('Acknowledge')")
    await expect(page.locator(".notice")).to_contain_text("Acknowledged")
    await expect(rows).to_have_count(2)
    await page.screenshot(path=site.screenshots / "inbox-after-acknowledge.png", full_page=True)

    stored = site.store.alert("a1-urgent")
    assert stored.acknowledged_by == "clin-a" and stored.acknowledged_at is not None
    assert stored.acknowledgement_note == "Seen; repeat E2 (LC-MS/MS) ordered for next week."
    assert await reminders_sent(site) == 0

    await page.click("a:text('History')")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("by clin-a")
    await page.click("a[href='/inbox/alerts/a1-urgent']")
    await expect(page.locator("blockquote.note")).to_contain_text("repeat E2")
    await expect(chart).to_have_js_property("complete", True)
    await page.screenshot(path=site.screenshots / "inbox-history-alert.png", full_page=True)

    await page.click("button:text('Sign out')")
    await expect(page).to_have_url(site.url + "/inbox/sign-in")
    await page.goto(site.url + "/inbox")
    await expect(page).to_have_url(site.url + "/inbox/sign-in")


async def reminders_sent(site: Site) -> int:
    """Run the notifier's reminder round (as `aromatrack notifier` does when one is due); webhooks it sent."""
    before = len(site.receiver.requests)
    dead_letters = AIOKafkaProducer(bootstrap_servers=site.settings.kafka_bootstrap, acks="all")
    await dead_letters.start()
    try:
        async with influx_access.reader_store(replace(site.stack, influx_database=site.settings.influx_database),
                                              max_attempts=2) as influx:
            notifier = Notifier(site.store, influx, dead_letters, smtp=None)
            try:
                await notifier.renotify(0)
            finally:
                await notifier.close()
    finally:
        await dead_letters.stop()
    return len(site.receiver.requests) - before


async def test_another_clinicians_alert_is_not_reachable_by_url(visit: Visit, site: Site) -> None:
    page = visit.page
    await sign_in(visit, site, "clin-a")
    await expect(page).to_have_url(site.url + "/inbox")
    response = await page.goto(site.url + "/inbox/alerts/b1-urgent")
    assert response.status == 403
    content = await page.content()
    assert "Clinician B" not in content and "e2_low_with_fat_loss" not in content
    await page.screenshot(path=site.screenshots / "inbox-forbidden.png")
    assert (await page.request.get(site.url + "/inbox/alerts/b1-urgent/chart.png")).status == 403
    assert (await page.goto(site.url + "/inbox/alerts/no-such-alert")).status == 403  # as if someone else's

    await page.goto(site.url + "/inbox?athlete=ath-b1")
    await expect(page.locator("table.alerts")).to_have_count(0)

    # Even with clinician A's own session and form token, acknowledging B's alert is refused.
    await page.goto(site.url + "/inbox/alerts/a2-warning")
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    refused = await page.request.post(site.url + "/inbox/alerts/b1-urgent/acknowledge",
                                      form={"csrf": csrf, "note": "not mine"})
    assert refused.status == 403
    assert site.store.alert("b1-urgent").acknowledged_at is None


async def test_a_coach_gets_no_inbox(visit: Visit, site: Site) -> None:
    await sign_in(visit, site, "coach-a")
    await expect(visit.page.locator(".problem")).to_contain_text("for clinicians")
    await visit.page.screenshot(path=site.screenshots / "inbox-coach-refused.png")
    await visit.page.goto(site.url + "/inbox")
    await expect(visit.page).to_have_url(site.url + "/inbox/sign-in")
