"""Debian's headless Chromium, driven through its chromedriver with Selenium.

scripts/browser.sh installs both (the test command runs it). The driver path is given
explicitly, so Selenium Manager never looks for (or downloads) a driver or a browser.
Selenium blocks, so every call runs in a worker thread: the tests' event loop stays
free. Each test works in windows of its own, each one a separate web session (the chat
page keeps its token per window), and screenshots them under its tmp_path if it fails.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Loading and running GraphiQL's 3.5 MB bundle on a busy two-core machine.
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.05
# Hosts a page may reach: this machine only.
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # Windows that are not in front still run their timers at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--window-size=1280,800",
)

T = TypeVar("T")


class Browser:
    """One Chromium for the whole run; tests open windows in it."""

    def __init__(self) -> None:
        missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} missing: run scripts/browser.sh")
        self._profile = Path(tempfile.mkdtemp(prefix="plop-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        self.blank_window = self.driver.current_window_handle
        # One thread at a time talks to the driver.
        self._lock = asyncio.Lock()

    async def run(self, call: Callable[[], T]) -> T:
        """Runs one blocking Selenium call in a worker thread."""
        async with self._lock:
            return await asyncio.to_thread(call)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    @asynccontextmanager
    async def windows(self, tmp_path: Path) -> AsyncIterator[Windows]:
        """Windows for one test, closed at its end; screenshots of each if it fails."""
        windows = Windows(self)
        try:
            yield windows
        except BaseException:
            await self.run(lambda: windows.save_evidence(tmp_path))
            raise
        finally:
            await self.run(windows.close_all)

    def network_events(self) -> list[tuple[str, dict[str, Any]]]:
        """(method, params) of the DevTools network events since the last call."""
        entries: list[dict[str, Any]] = self.driver.get_log("performance")  # type: ignore[no-untyped-call]
        events = []
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            if str(message.get("method", "")).startswith("Network."):
                events.append((message["method"], message.get("params", {})))
        return events

    def requested_urls(self) -> list[str]:
        """Every URL the browser requested (or opened a WebSocket to) since the last call."""
        return requested_urls(self.network_events())

    def console_errors(self) -> list[str]:
        """The pages' console errors since the last call (a refused load is one)."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


class Windows:
    """The windows one test opened."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[Window] = []

    async def open(self, url: str) -> Window:
        """A new window (a session of its own for the chat page) showing url."""

        def open_window() -> str:
            driver = self.browser.driver
            driver.switch_to.new_window("window")
            driver.get(url)
            return driver.current_window_handle

        window = Window(self.browser, await self.browser.run(open_window))
        self.opened.append(window)
        return window

    def close_all(self) -> None:
        driver = self.browser.driver
        for window in self.opened:
            try:
                driver.switch_to.window(window.handle)
                # sessionStorage is per window; nothing else of a test outlives it.
                driver.close()
            except WebDriverException:
                pass
        driver.switch_to.window(self.browser.blank_window)
        self.opened.clear()

    def save_evidence(self, directory: Path) -> None:
        """A screenshot and the console log of every window, for a failed test."""
        driver = self.browser.driver
        for index, window in enumerate(self.opened):
            try:
                driver.switch_to.window(window.handle)
                driver.save_screenshot(str(directory / f"window-{index}.png"))
            except WebDriverException:
                continue
        try:
            entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
            console = "\n".join(str(entry) for entry in entries)
        except WebDriverException:
            console = "(no console log)"
        (directory / "console.log").write_text(console)


class Window:
    """One browser window; each call switches to it first."""

    def __init__(self, browser: Browser, handle: str) -> None:
        self.browser = browser
        self.handle = handle

    async def do(self, call: Callable[[webdriver.Chrome], T]) -> T:
        """Runs call(driver) with this window in front."""

        def in_window() -> T:
            self.browser.driver.switch_to.window(self.handle)
            return call(self.browser.driver)

        return await self.browser.run(in_window)

    async def wait_for(
        self,
        condition: Callable[[webdriver.Chrome], T | None],
        what: str,
        within: float = WAIT_SECONDS,
    ) -> T:
        """Polls condition(driver) until it is truthy; fails naming what was awaited."""

        def waited(driver: webdriver.Chrome) -> T:
            waiting = WebDriverWait(
                driver,
                within,
                poll_frequency=POLL_SECONDS,
                ignored_exceptions=(WebDriverException,),
            )
            try:
                result = waiting.until(condition)
            except TimeoutException as exc:
                raise AssertionError(f"not within {within} s: {what}") from exc
            return cast(T, result)  # until() returns only a truthy result

        return await self.do(waited)

    async def wait_value(
        self,
        script: str,
        expected: Callable[[Any], bool],
        what: str,
        within: float = WAIT_SECONDS,
    ) -> Any:
        """Polls a script's value in the page until expected(value); fails with the last."""
        last: list[Any] = []

        def probe(driver: webdriver.Chrome) -> tuple[Any] | None:
            value = driver.execute_script(script)
            last[:] = [value]
            return (value,) if expected(value) else None

        try:
            (value,) = await self.wait_for(probe, what, within)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {last[0] if last else None!r}") from None
        return value

    async def element(self, css: str, within: float = WAIT_SECONDS) -> WebElement:
        """The first element matching css, once it is displayed."""

        def shown(driver: webdriver.Chrome) -> WebElement | None:
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else None

        return await self.wait_for(shown, f"{css} shown", within)

    async def click(self, css: str) -> None:
        element = await self.element(css)
        await self.do(lambda _: element.click())

    async def type(self, css: str, text: str, clear: bool = True) -> None:
        element = await self.element(css)

        def typing(_: webdriver.Chrome) -> None:
            if clear:
                element.clear()
            element.send_keys(text)

        await self.do(typing)

    async def texts(self, css: str) -> list[str]:
        """The text of every element matching css (shown or not, as the DOM has it)."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
        found: list[str] = await self.do(lambda driver: driver.execute_script(script, css))
        return found

    async def script(self, source: str, *args: Any) -> Any:
        return await self.do(lambda driver: driver.execute_script(source, *args))

    async def screenshot(self, path: Path) -> None:
        await self.do(lambda driver: driver.save_screenshot(str(path)))

    async def reload(self) -> None:
        await self.do(lambda driver: driver.refresh())


def non_loopback(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine (data: and blob: URLs stay in the page)."""
    leaving = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob", "about", "chrome"}:
            continue
        if parts.hostname not in LOOPBACK_HOSTS:
            leaving.append(url)
    return leaving


def requested_urls(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The URLs of requests and WebSockets among network events."""
    urls = []
    for method, params in events:
        if method == "Network.requestWillBeSent":
            urls.append(str(params["request"]["url"]))
        elif method == "Network.webSocketCreated":
            urls.append(str(params["url"]))
    return urls


def websocket_subprotocols(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The subprotocol each WebSocket handshake among network events agreed on."""
    agreed = []
    for method, params in events:
        if method == "Network.webSocketHandshakeResponseReceived":
            headers = {k.lower(): v for k, v in params["response"]["headers"].items()}
            agreed.append(str(headers.get("sec-websocket-protocol", "")))
    return agreed
