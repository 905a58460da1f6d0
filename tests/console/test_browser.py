"""The console in a real headless Chromium: sign in and out, the overview, devices found by
name and by a document field, a device's page, and the policy seen from the browser: a viewer
has no write controls, and a form without its CSRF token is refused."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

import tether
from tests.conftest import Tenant, wait_for
from tests.console.conftest import shot, sign_in, wait, wait_for_heading


def test_sign_in_overview_devices_and_sign_out(browser: WebDriver, tenant: Tenant) -> None:
    with tenant.client() as admin:
        admin.devices.create("player-1", {"subtype": "player"})
        admin.devices.create("sensor-1", {"subtype": "sensor"})
    browser.get(f"{tenant.url}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    shot(browser, "sign-in")
    sign_in(browser, tenant, password="wrong password")
    assert "Wrong organization" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    sign_in(browser, tenant)
    wait_for_heading(browser, "Overview")
    assert "2 devices" in " ".join(browser.find_element(By.CSS_SELECTOR, ".cards").text.split())
    shot(browser, "overview")
    browser.find_element(By.LINK_TEXT, "Devices").click()
    wait_for_heading(browser, "Devices (2)")
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert {r.text.split()[0] for r in rows} == {"player-1", "sensor-1"}
    search = browser.find_element(By.NAME, "q")
    search.send_keys("subtype=sensor")
    search.submit()
    wait_for_heading(browser, "Devices (1)")
    assert [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")] == [
        "sensor-1"
    ]
    shot(browser, "devices")
    browser.find_element(By.LINK_TEXT, "sensor-1").click()
    wait_for_heading(browser, "sensor-1")
    assert '"subtype": "sensor"' in str(
        browser.find_element(By.ID, "document").get_attribute("value")
    )
    shot(browser, "device")
    browser.find_element(By.CSS_SELECTOR, ".signout button").click()
    wait_for_heading(browser, "Sign in")
    browser.get(f"{tenant.url}/devices")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"


def test_a_viewer_sees_no_write_controls(browser: WebDriver, tenant: Tenant) -> None:
    with tenant.client() as admin:
        device = admin.devices.create("kiosk")
        admin.post("users", {"username": "vera", "password": "viewer-pass-1", "role": "viewer"})
    sign_in(browser, tenant, "vera", "viewer-pass-1")
    wait_for_heading(browser, "Overview")
    browser.get(f"{tenant.url}/devices/{device.id}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "kiosk"
    assert browser.find_elements(By.CSS_SELECTOR, "form.danger") == []
    sign_in(browser, tenant)
    wait_for_heading(browser, "Overview")
    browser.get(f"{tenant.url}/devices/{device.id}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "form.danger")) == 1


def test_forms_without_their_csrf_token_are_refused(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.url) as http, tenant.client() as admin:
        device = admin.devices.create("target")
        page = http.get("/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        form = {"organization": tenant.organization, "username": "admin"}
        assert http.post("/sign-in", data=form | {"password": tenant.password}).status_code == 403
        signed = http.post("/sign-in", data=form | {"password": tenant.password, "csrf": csrf[1]})
        assert signed.status_code == 303
        assert http.post(f"/devices/{device.id}/delete", data={}).status_code == 403
        assert http.post(f"/devices/{device.id}/delete", data={"csrf": "x" * 40}).status_code == 403
        assert admin.devices.get(device.id).name == "target"
        page = http.get(f"/devices/{device.id}").text
        session_csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert session_csrf is not None
        done = http.post(f"/devices/{device.id}/delete", data={"csrf": session_csrf[1]})
        assert done.status_code == 303
        try:
            admin.devices.get(device.id)
            raise AssertionError("the device is still there")
        except tether.NotFoundError:
            pass


def test_a_waiting_device_is_approved_from_the_browser(browser: WebDriver, tenant: Tenant) -> None:
    """A real `tether pair` process waits with its code; a person types the code in the
    console; the process receives credentials that work."""
    command = [str(Path(sys.executable).parent / "tether"), "pair", "--url", tenant.url, "--json"]
    command += ["--name", "kiosk", "--organization", tenant.organization]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    device = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert device.stderr is not None
        code = None
        for line in device.stderr:
            found = re.search(r"Pairing code: (\S+)", line)
            if found:
                code = found[1]
                break
        assert code is not None
        sign_in(browser, tenant)
        browser.get(f"{tenant.url}/pairing")
        waiting = browser.find_element(By.CSS_SELECTOR, "table.waiting").text
        assert "kiosk" in waiting
        assert code not in waiting
        browser.find_element(By.NAME, "code").send_keys(code)
        browser.find_element(By.NAME, "name").send_keys("lobby-screen")
        shot(browser, "pairing")
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        status = wait(browser, 10).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "[role=status]")
        )
        assert "lobby-screen" in status[0].text
        assert "No device is waiting." in browser.find_element(By.TAG_NAME, "main").text
        out, _ = device.communicate(timeout=60)
        assert device.returncode == 0
        credentials = json.loads(out)
    finally:
        device.kill()
    with tether.Client(
        tenant.url,
        device_id=credentials["device_id"],
        device_secret=credentials["device_secret"],
    ) as paired:
        assert paired.whoami()["name"] == "lobby-screen"


def test_a_token_is_shown_once_and_revoked(browser: WebDriver, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/tokens")
    browser.find_element(By.NAME, "name").send_keys("ci")
    browser.find_element(By.NAME, "read_only").click()
    browser.find_element(By.CSS_SELECTOR, "form.inline button").click()
    shown = wait(browser, 10).until(lambda b: b.find_elements(By.ID, "new-token"))
    token = shown[0].text
    assert token.startswith("tth_")
    assert browser.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
    shot(browser, "tokens")
    with tether.Client(tenant.url, token=token) as client:
        assert client.whoami()["name"] == "admin"
        with pytest.raises(tether.PermissionDeniedError):
            client.devices.create("read-only cannot")
    browser.get(f"{tenant.url}/tokens")
    assert browser.find_elements(By.ID, "new-token") == []
    row = next(
        r for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr") if r.text.startswith("ci ")
    )
    row.find_element(By.TAG_NAME, "button").click()
    wait_for_heading(browser, "API tokens")
    with tether.Client(tenant.url, token=token) as client:
        wait(browser, 5).until(lambda _: _refused(client))


def _refused(client: tether.Client) -> bool:
    try:
        client.whoami()
    except tether.AuthenticationError:
        return True
    return False


def test_a_rollout_is_paused_and_resumed_from_the_browser(
    browser: WebDriver, tenant: Tenant
) -> None:
    admin = tenant.client()
    admin.updates.publish("fw", "1.0.0", ("fw.bin", io.BytesIO(b"one")))
    deployment = admin.updates.deploy("fw", "1.0.0", name="spring")
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/updates")

    def state() -> str:
        return str(browser.find_element(By.CSS_SELECTOR, "[data-rollout=spring] .state").text)

    assert state() == "active"
    shot(browser, "updates")
    for button, expected in (("Pause", "paused"), ("Resume", "active")):
        row = browser.find_element(By.CSS_SELECTOR, "[data-rollout=spring]")
        row.find_element(By.XPATH, f".//button[text()='{button}']").click()
        wait(browser, 10).until(lambda _b, e=expected: _state_is(state, e))
        assert deployment.refresh().state == expected
    admin.close()


def _state_is(read: Any, expected: str) -> bool:
    try:
        return bool(read() == expected)
    except WebDriverException:
        return False


def test_a_pushed_point_appears_on_the_chart_without_a_reload(
    browser: WebDriver, tenant: Tenant, tmp_path: Path
) -> None:
    with tenant.client() as admin:
        made = admin.post("devices", {"name": "thermo"})
    with tether.Client(tenant.url, device_id=made["id"], device_secret=made["secret"]) as device:
        telemetry = tether.Telemetry(device, outbox=tmp_path / "outbox.db")
        now = time.time()
        for n in range(5):
            telemetry.add_value("temp", 20.0 + n)
            telemetry.add_value("mode", "eco")
            telemetry.add_value("door", False)
            telemetry.commit(now - 60 * (5 - n))
        telemetry.push()
        sign_in(browser, tenant)
        browser.get(f"{tenant.url}/devices/{made['id']}")
        chart = browser.find_element(By.ID, "chart")
        assert Select(browser.find_element(By.NAME, "field")).first_selected_option.text == "temp"
        wait(browser, 10).until(lambda _: chart.get_attribute("data-points") == "5")
        assert browser.find_elements(By.CSS_SELECTOR, "#chart canvas")
        at = browser.find_element(By.CSS_SELECTOR, "[data-field=temp] .at time")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", at.get_attribute("title") or "")
        assert "UTC" not in at.text, "shown in the browser's own zone"
        assert "." not in at.text, "no microseconds"
        shot(browser, "device-chart")
        telemetry.add_value("temp", 30.5)
        telemetry.commit()
        telemetry.push()
        wait(browser, 10).until(lambda _: chart.get_attribute("data-points") == "6")
        assert "(live)" in browser.find_element(By.ID, "chart-status").text
        value = browser.find_element(By.CSS_SELECTOR, "[data-field=temp] .value")
        wait(browser, 10).until(lambda _: value.text == "30.5")
        telemetry.close()


def test_a_file_is_uploaded_with_progress_then_downloaded_moved_and_deleted(
    browser: WebDriver, tenant: Tenant, tmp_path: Path
) -> None:
    local = tmp_path / "report.csv"
    local.write_bytes(b"a,b\n" * 300_000)
    with tenant.client() as admin:
        admin.files.mkdir("/reports")
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/files?path=/reports")
    browser.find_element(By.NAME, "file").send_keys(str(local))
    browser.find_element(By.CSS_SELECTOR, "#upload button").click()
    wait(browser, 20).until(
        lambda b: (
            b.find_elements(By.CSS_SELECTOR, "[data-file='report.csv']")
            and b.execute_script("return document.readyState") == "complete"
        )
    )
    row = browser.find_element(By.CSS_SELECTOR, "[data-file='report.csv']")
    shot(browser, "files")
    link = row.find_element(By.LINK_TEXT, "report.csv").get_attribute("href")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert httpx.get(str(link), cookies=cookies).content == local.read_bytes()
    target = row.find_element(By.NAME, "target")
    target.clear()
    target.send_keys("/reports/renamed.csv")
    row.find_element(By.XPATH, ".//button[text()='Move']").click()
    renamed = wait(browser, 10).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "[data-file='renamed.csv']")
    )[0]
    renamed.find_element(By.XPATH, ".//button[text()='Delete']").click()
    wait(browser, 10).until(
        lambda b: "This folder is empty." in b.find_element(By.TAG_NAME, "tbody").text
    )
    with tenant.client() as admin:
        assert admin.files.ls("/reports") == []


def test_a_device_document_is_edited_and_its_secret_rotated(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        made = admin.post("devices", {"name": "sign-7", "document": {"floor": 1}})
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/devices/{made['id']}")
    editor = browser.find_element(By.ID, "document")
    editor.clear()
    editor.send_keys("not json")
    editor.submit()
    wait(browser).until(
        lambda b: "Not JSON" in b.find_element(By.CSS_SELECTOR, "[role=alert]").text
    )
    editor = browser.find_element(By.ID, "document")
    editor.clear()
    editor.send_keys('{"floor": 2, "subtype": "sign"}')
    editor.submit()
    wait(browser).until(lambda b: not b.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    with tenant.client() as admin:
        assert admin.devices.get(made["id"]).document == {"floor": 2, "subtype": "sign"}
    browser.find_element(By.CSS_SELECTOR, "form.rotate button").click()
    secret = wait(browser).until(lambda b: b.find_element(By.ID, "new-secret").text)
    with (
        pytest.raises(tether.AuthenticationError),
        tether.Client(tenant.url, device_id=made["id"], device_secret=made["secret"]) as old,
    ):
        old.whoami()
    with tether.Client(tenant.url, device_id=made["id"], device_secret=secret) as new:
        assert new.whoami()["name"] == "sign-7"


def test_admins_manage_users_and_others_only_see_them(browser: WebDriver, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/users")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/users/create']")
    form.find_element(By.NAME, "username").send_keys("mona")
    form.find_element(By.NAME, "password").send_keys("mona-pass-1")
    form.find_element(By.NAME, "username").submit()
    row = wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, "[data-user=mona]"))
    assert row.find_element(By.CSS_SELECTOR, ".role").text == "member"
    shot(browser, "users")
    row.find_element(By.TAG_NAME, "select").send_keys("viewer")
    row.find_element(By.XPATH, ".//button[text()='Set role']").click()
    wait(browser).until(
        lambda b: b.find_element(By.CSS_SELECTOR, "[data-user=mona] .role").text == "viewer"
    )
    sign_in(browser, tenant, "mona", "mona-pass-1")
    browser.get(f"{tenant.url}/users")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-user=admin]")
    assert browser.find_elements(By.CSS_SELECTOR, "main form") == []


def test_projects_locations_and_zones_with_their_devices(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        hq = admin.locations.create("HQ")
        admin.devices.create("at-hq", location_id=hq.id)
        admin.devices.create("elsewhere")
        hq.upload_layout(("plan.svg", io.BytesIO(b'<svg xmlns="http://www.w3.org/2000/svg"/>')))
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/groups/locations")
    browser.find_element(By.LINK_TEXT, "HQ").click()
    wait_for_heading(browser, "HQ (location)")
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.text.split()[0] for r in rows] == ["at-hq"]
    assert browser.find_element(By.CSS_SELECTOR, "img.layout").is_displayed()
    shot(browser, "location")
    browser.get(f"{tenant.url}/groups/projects")
    form = browser.find_element(By.CSS_SELECTOR, "main form")
    form.find_element(By.NAME, "name").send_keys("pilot")
    form.find_element(By.NAME, "name").submit()
    wait(browser).until(lambda b: b.find_elements(By.LINK_TEXT, "pilot"))
    with tenant.client() as admin:
        assert [p.name for p in admin.projects.find()] == ["pilot"]


def test_a_broadcast_from_the_browser_collects_a_device_answer(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        made = admin.post("devices", {"name": "answering"})
    with tether.Client(tenant.url, device_id=made["id"], device_secret=made["secret"]) as device:
        listener = device.get_channel("lobby").listen("ping", timeout=10)

        def answer() -> None:
            got = listener.wait(timeout=30)
            if got is not None:
                got.respond({"device": "answering", "got": got.payload})

        worker = threading.Thread(target=answer)
        worker.start()
        sign_in(browser, tenant)
        browser.get(f"{tenant.url}/channels")
        browser.find_element(By.CSS_SELECTOR, "#listen button").click()
        wait(browser).until(lambda b: "listening" in b.find_element(By.ID, "listening").text)
        payload = browser.find_element(By.NAME, "payload")
        payload.clear()
        payload.send_keys('{"n": 7}')
        browser.find_element(By.CSS_SELECTOR, "#broadcast button").click()
        answered = wait(browser, 20).until(lambda b: b.find_element(By.ID, "answers").text or None)
        worker.join(30)
        assert '"device":"answering"' in answered
        assert '"n":7' in browser.find_element(By.ID, "heard").text
        shot(browser, "channels")


def test_devices_filtered_by_location_and_project_then_moved_and_deleted_together(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        hq = admin.locations.create("HQ")
        depot = admin.locations.create("Depot")
        pilot = admin.projects.create("pilot")
        for name in ("a", "b", "c"):
            admin.devices.create(name, location_id=hq.id)
        admin.post(f"projects/{pilot.id}/devices", {"name": "in-pilot"})
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/devices?location={hq.id}")

    def names() -> list[str]:
        return sorted(
            str(r.get_attribute("data-device"))
            for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-device]")
        )

    assert names() == ["a", "b", "c"]
    browser.get(f"{tenant.url}/devices?project={pilot.id}")
    assert names() == ["in-pilot"]
    browser.get(f"{tenant.url}/devices?location={hq.id}")
    for name in ("a", "b"):
        browser.find_element(By.CSS_SELECTOR, f"tr[data-device={name}] input").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("move")
    Select(browser.find_element(By.CSS_SELECTOR, ".bulk select[name=location]")).select_by_value(
        depot.id
    )
    browser.find_element(By.CSS_SELECTOR, ".bulk button").click()
    wait(browser).until(lambda _: names() == ["c"])
    browser.get(f"{tenant.url}/devices?location={depot.id}")
    assert names() == ["a", "b"]
    browser.find_element(By.CSS_SELECTOR, "tr[data-device=a] input").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("delete")
    browser.find_element(By.CSS_SELECTOR, ".bulk button").click()
    wait(browser).until(lambda _: names() == ["b"])


def test_pages_fit_a_phone_and_the_sign_in_form_works_from_the_keyboard(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        device = admin.devices.create("a-device-with-a-rather-long-name-on-a-small-screen")
        app = admin.apps.create("Phone app", {"redirect_uris": ["http://127.0.0.1/cb"]})
    consent = tether.OAuthFlow(tenant.url, app.id, "http://127.0.0.1/cb").authorization_url
    browser.set_window_size(375, 812)
    try:
        browser.get(f"{tenant.url}/sign-in")
        browser.delete_all_cookies()
        browser.get(f"{tenant.url}/sign-in")
        field = browser.find_element(By.NAME, "organization")
        field.clear()
        field.send_keys(
            tenant.organization, Keys.TAB, "admin", Keys.TAB, tenant.password, Keys.ENTER
        )
        wait_for_heading(browser, "Overview")
        pages = ["/", "/devices", f"/devices/{device.id}", "/updates", "/files", "/tokens"]
        pages += ["/users", "/pairing", consent.removeprefix(tenant.url)]
        for path in pages:
            browser.get(f"{tenant.url}{path}")
            width = browser.execute_script("return document.documentElement.scrollWidth")
            wide = browser.execute_script(
                "return [...document.querySelectorAll('body *')]"
                ".filter(e => e.getBoundingClientRect().right > 375)"
                ".slice(0, 5).map(e => e.tagName + '.' + e.className)"
            )
            assert width <= 375, (path, width, wide)
        shot(browser, "phone")
    finally:
        browser.set_window_size(1280, 900)


def test_versions_events_and_a_device_history_from_the_overview(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        made = [admin.post("devices", {"name": name}) for name in ("alpha", "bravo", "charlie")]
        admin.updates.publish("fw", "2.0.0", ("fw.bin", io.BytesIO(b"two")))
        admin.updates.deploy("fw", "2.0.0", name="autumn")
        for device, version in zip(made, ("1.0.0", "2.0.0", "1.0.0"), strict=True):
            with tether.Client(
                tenant.url, device_id=device["id"], device_secret=device["secret"]
            ) as dc:
                dc.updates.check([tether.Package("fw", version)])
        bravo = made[1]
        with tether.Client(tenant.url, device_id=bravo["id"], device_secret=bravo["secret"]) as dc:
            dc.updates.report("fw", "2.0.0", "installed", "flashed")
            dc.files.put(("boot.log", io.BytesIO(b"booted")), f"/devices/{bravo['id']}/boot.log")
    sign_in(browser, tenant)
    wait_for_heading(browser, "Overview")

    def events_shown() -> str:
        browser.refresh()
        return str(browser.find_element(By.CSS_SELECTOR, "table.events").text)

    wait(browser, 10).until(
        lambda _: _state_is(lambda: "installed (flashed)" in events_shown(), True)
    )
    spread = browser.find_element(
        By.XPATH, "//h2[text()='Versions across the fleet']/following-sibling::table[1]"
    )
    assert [
        " ".join(r.text.split()) for r in spread.find_elements(By.CSS_SELECTOR, "tbody tr")
    ] == [
        "fw 1.0.0 2",
        "fw 2.0.0 1",
    ]
    shot(browser, "overview-events", "Versions across the fleet")
    spread.find_element(By.LINK_TEXT, "2").click()
    wait_for_heading(browser, "Devices (2)")
    assert [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")] == [
        "alpha",
        "charlie",
    ]
    Select(browser.find_element(By.NAME, "installed")).select_by_index(0)
    Select(browser.find_element(By.NAME, "sort")).select_by_visible_text("name, Z to A")
    browser.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_for_heading(browser, "Devices (3)")
    assert [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")] == [
        "charlie",
        "bravo",
        "alpha",
    ]
    browser.find_element(By.LINK_TEXT, "bravo").click()
    wait_for_heading(browser, "bravo")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "autumn fw 2.0.0 installed flashed" in " ".join(page.split())
    assert "boot.log" in page
    assert "report created" in page
    shot(browser, "device-history", "Software")


class _Callbacks(http.server.BaseHTTPRequestHandler):
    """An app's redirect URI on loopback, where the browser lands after the consent page."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<h1>Back in the app</h1>")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_person_authorizes_an_app_on_the_consent_page(browser: WebDriver, tenant: Tenant) -> None:
    app_server = http.server.HTTPServer(("127.0.0.1", 0), _Callbacks)
    threading.Thread(target=app_server.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{app_server.server_address[1]}/callback"
    try:
        with tenant.client() as admin:
            admin.devices.create("seen-by-the-app")
        sign_in(browser, tenant)
        browser.get(f"{tenant.url}/apps")
        browser.find_element(By.NAME, "name").send_keys("Fleet dashboard")
        browser.find_element(By.NAME, "redirect_uris").send_keys(callback)
        browser.find_element(By.XPATH, "//button[text()='Register the app']").click()
        registered = wait(browser, 10).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "[role=status] code")
        )
        app_id = registered[0].text
        assert (
            callback in browser.find_element(By.CSS_SELECTOR, "[data-app='Fleet dashboard']").text
        )
        shot(browser, "apps")
        browser.find_element(By.CSS_SELECTOR, ".signout button").click()
        wait_for_heading(browser, "Sign in")
        flow = tether.OAuthFlow(tenant.url, app_id, callback, scope="read")
        browser.get(flow.authorization_url)
        wait_for_heading(browser, "Sign in")
        browser.find_element(By.NAME, "organization").clear()
        browser.find_element(By.NAME, "organization").send_keys(tenant.organization)
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(tenant.password)
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        wait_for_heading(browser, "Authorize Fleet dashboard")
        assert "change nothing" in browser.find_element(By.TAG_NAME, "main").text
        shot(browser, "oauth-consent")
        browser.find_element(By.XPATH, "//button[text()='Allow']").click()
        wait_for_heading(browser, "Back in the app")
        grant = flow.grant(browser.current_url)
        with tether.Client(tenant.url, oauth=grant) as on_behalf:
            assert [d.name for d in on_behalf.devices.find()] == ["seen-by-the-app"]
            assert on_behalf.get("auth/whoami")["read_only"] is True
            browser.get(f"{tenant.url}/apps")
            acting = browser.find_element(By.CSS_SELECTOR, "[data-authorized='Fleet dashboard']")
            assert "read" in acting.text
            acting.find_element(By.XPATH, ".//button[text()='Stop']").click()
            wait(browser, 10).until(lambda b: "No app acts for you." in b.page_source)
            with pytest.raises(tether.AuthenticationError):
                on_behalf.devices.find()

        denied = tether.OAuthFlow(tenant.url, app_id, callback, scope="write")
        browser.get(denied.authorization_url)
        wait_for_heading(browser, "Authorize Fleet dashboard")
        browser.find_element(By.XPATH, "//button[text()='Deny']").click()
        wait_for_heading(browser, "Back in the app")
        with pytest.raises(tether.AuthorizationError) as refused:
            denied.grant(browser.current_url)
        assert refused.value.error == "access_denied"

        evil = quote("https://evil.example/callback", safe="")
        browser.get(flow.authorization_url.replace(quote(callback, safe=""), evil))
        wait_for_heading(browser, "Not done")
        assert "redirect_uri" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    finally:
        app_server.shutdown()
        app_server.server_close()


def test_a_rollout_is_created_staged_and_seen_failing_from_the_browser(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        admin.updates.publish("fw", "2.0.0", ("fw.bin", io.BytesIO(b"two" * 700)))
        made = admin.post("devices", {"name": "unlucky"})
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/updates")
    assert "2.1 KB" in browser.find_element(By.TAG_NAME, "main").text
    form = browser.find_element(By.ID, "new-rollout")
    Select(form.find_element(By.NAME, "version")).select_by_visible_text("fw 2.0.0")
    form.find_element(By.NAME, "name").send_keys("canary")
    stage = form.find_element(By.NAME, "percentage")
    stage.clear()
    stage.send_keys("10")
    form.find_element(By.NAME, "failure_threshold").send_keys("30")
    form.find_element(By.NAME, "min_reports").clear()
    form.find_element(By.NAME, "min_reports").send_keys("5")
    form.find_element(By.XPATH, ".//button[text()='Roll out']").click()
    row = "[data-rollout=canary]"
    wait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, row))
    with tenant.client() as admin:
        (created,) = admin.get("deployments")["results"]
    assert (created["percentage"], created["failure_threshold"]) == (10.0, 0.3)
    assert created["min_reports"] == 5
    share = browser.find_element(By.CSS_SELECTOR, f"{row} input[name=percentage]")
    share.clear()
    share.send_keys("50", Keys.ENTER)

    def staged() -> bool:
        with tenant.client() as admin:
            return bool(admin.get(f"deployments/{created['id']}")["percentage"] == 50.0)

    wait(browser, 10).until(lambda _: staged())
    assert "healthy" in browser.find_element(By.CSS_SELECTOR, f"{row} .health").text
    with tenant.client() as admin:
        admin.updates.report("fw", "2.0.0", "failed", "disk full", device_id=made["id"])
    browser.get(f"{tenant.url}/updates")
    health = browser.find_element(By.CSS_SELECTOR, f"{row} .health")
    assert health.text == "failing"
    assert "failing" in (health.get_attribute("class") or "")
    failed = browser.find_element(By.CSS_SELECTOR, f"{row} .bar .failed")
    assert failed.get_attribute("style") == "width: 100%;"
    shot(browser, "updates-rollout")


def test_fifty_devices_fit_a_phone_with_their_actions_in_reach(
    browser: WebDriver, tenant: Tenant
) -> None:
    with tenant.client() as admin:
        for n in range(50):
            admin.devices.create(f"kiosk-{n:02d}-in-the-long-hall")
    sign_in(browser, tenant)
    browser.set_window_size(375, 812)
    try:
        browser.get(f"{tenant.url}/devices")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-device]")
        assert len(rows) == 50
        sizes = browser.execute_script(
            "return [...document.querySelectorAll('tr[data-device]')].map(r => {"
            " const box = r.querySelector('input[type=checkbox]').getBoundingClientRect();"
            " const link = r.querySelector('a').getBoundingClientRect();"
            " return [r.getBoundingClientRect().height, box.right, link.right]; })"
        )
        shot(browser, "phone-devices")
        for height, box_right, link_right in sizes:
            assert height <= 80, sizes
            assert box_right <= 375, sizes
            assert link_right <= 375, sizes
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 375
        links = browser.find_element(By.ID, "nav-links")
        assert not links.is_displayed()
        menu = browser.find_element(By.CSS_SELECTOR, ".menu-toggle")
        menu.click()
        wait(browser, 5).until(lambda _: links.is_displayed())
        assert menu.get_attribute("aria-expanded") == "true"
        shot(browser, "phone-menu")
        links.find_element(By.LINK_TEXT, "Updates").click()
        wait_for_heading(browser, "Software updates")
    finally:
        browser.set_window_size(1280, 900)


def test_a_twin_is_edited_at_its_version_and_a_command_sent_from_the_device_page(
    browser: WebDriver, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tenant.client() as admin:
        device = admin.devices.create("valve-3")
        admin.twins.desire(device, {"open": False})
    sign_in(browser, tenant)
    browser.get(f"{tenant.url}/devices/{device.id}")
    assert "open" in browser.find_element(By.CSS_SELECTOR, "p.pending").text
    with tenant.client() as admin:
        admin.twins.desire(device, {"open": True})
    editor = browser.find_element(By.ID, "desired")
    editor.clear()
    editor.send_keys('{"open": false, "limit": 40}')
    editor.submit()
    wait(browser).until(
        lambda b: (
            "changed since you read it" in b.find_element(By.CSS_SELECTOR, "[role=alert]").text
        )
    )
    editor = browser.find_element(By.ID, "desired")
    editor.clear()
    editor.send_keys('{"open": true, "limit": 40}')
    editor.submit()
    wait(browser).until(lambda b: not b.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    with tenant.client() as admin:
        assert admin.twins.get(device)["desired"] == {"open": True, "limit": 40}
    monkeypatch.setenv("TETHER_OUTBOX", str(tmp_path / "valve.db"))
    with tether.Client(tenant.url, device_id=device.id, device_secret=str(device.secret)) as dc:
        dc.commands.on("close", lambda command: {"closed": command.payload["slowly"]})
        dc.commands.start()
        browser.find_element(By.NAME, "name").send_keys("close")
        browser.find_element(By.NAME, "payload").send_keys('{"slowly": true}')
        browser.find_element(By.CSS_SELECTOR, "#commands + form button").click()
        with tenant.client() as admin:
            wait_for(
                lambda: [c.state for c in admin.commands.list(device=device)] == ["succeeded"],
                20,
                "the command to be answered",
            )
    browser.get(f"{tenant.url}/commands")
    wait_for_heading(browser, "Commands")
    row = browser.find_element(By.CSS_SELECTOR, "main table tbody tr")
    assert row.text.split()[:1] == ["close"]
    assert "succeeded" in row.text
    shot(browser, "commands")
