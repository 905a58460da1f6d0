"""A real headless Chromium (Debian's, with its chromedriver), driven by Selenium, for the
console's tests; no browser is downloaded. Without Chromium the tests skip (fail in CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import Tenant, unavailable

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / os.environ.get("CONSOLE_SCREENSHOTS", "build/console-screenshots")
"""Where the tests save a screenshot of each page they visit; `CONSOLE_SCREENSHOTS=docs/console`
refreshes the ones docs/console.md shows."""


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        unavailable("Chromium is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.implicitly_wait(5)
    try:
        yield chrome
    finally:
        chrome.quit()


def sign_in(
    browser: WebDriver, tenant: Tenant, username: str = "admin", password: str | None = None
) -> None:
    """Sign in through the console's form, as a person would."""
    browser.get(f"{tenant.url}/sign-in")
    browser.delete_all_cookies()

    def fill(b: WebDriver) -> bool:
        b.get(f"{tenant.url}/sign-in")
        organization = b.find_element(By.NAME, "organization")
        organization.clear()
        organization.send_keys(tenant.organization)
        b.find_element(By.NAME, "username").send_keys(username)
        b.find_element(By.NAME, "password").send_keys(password or tenant.password)
        b.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        return True

    wait(browser, 20).until(fill)
    wait(browser).until(
        lambda b: heading_of(b) == "Overview" or b.find_elements(By.CSS_SELECTOR, "[role=alert]")
    )


def wait(browser: WebDriver, seconds: float = 10) -> WebDriverWait[WebDriver]:
    """A wait that looks again when the page was replaced under it (a click's navigation):
    Chrome then answers stale elements, missing ones, or "Node ... does not belong to the
    document", all `WebDriverException`s."""
    return WebDriverWait(browser, seconds, ignored_exceptions=(WebDriverException,))


def heading_of(browser: WebDriver) -> str | None:
    """The page's h1, or None while a page is being replaced."""
    try:
        return str(browser.find_element(By.TAG_NAME, "h1").text)
    except WebDriverException:
        return None


def wait_for_heading(browser: WebDriver, text: str) -> None:
    """Wait until the page's h1 reads `text` (a click's navigation is not waited for)."""
    wait(browser).until(lambda b: heading_of(b) == text)


def shot(browser: WebDriver, name: str, heading: str | None = None) -> None:
    """Save a screenshot of the page for the console's documentation (scrolled to the section
    under `heading`, when given)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    if heading is not None:
        section = browser.find_element(By.XPATH, f"//h2[text()='{heading}']")
        browser.execute_script("arguments[0].scrollIntoView()", section)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
