"""Real-browser helpers for the dashboard tests: Debian chromium via Playwright, loopback only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Route

CHROMIUM = "/usr/bin/chromium"
# Never `playwright install`: there is no download host; Debian's chromium is the browser.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Generous for a loaded CI machine, short enough that a missing live update fails quickly.
EXPECT_MS = 8000
REPO = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Where screenshots go: $ORC_TEST_ARTIFACTS, else test-artifacts/dashboard in the repo."""
    root = Path(os.environ.get("ORC_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path = root / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot and print its path (pytest -s shows it; -ra logs keep it)."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@dataclass
class LoopbackOnly:
    """Routes every request: loopback ones go through, anything else is aborted and recorded."""

    allowed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def __call__(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK_HOSTS:
            self.allowed.append(url)
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


def open_page(browser: Browser, **viewport: Any) -> tuple[BrowserContext, Page, LoopbackOnly]:
    """A fresh context (own cookies) whose network reaches loopback only."""
    context = browser.new_context(viewport=viewport or DESKTOP)
    context.set_default_timeout(EXPECT_MS)
    guard = LoopbackOnly()
    context.route("**/*", guard)
    page = context.new_page()
    return context, page, guard


def money(value: float) -> str:
    """The page's money format: $1,234.5678."""
    return f"${value:,.4f}"
