"""Headless Chromium for the page tests: load a file, let its scripts run, return the DOM, the console errors
and a screenshot. Debian's `chromium` package; None when it is not installed (the tests skip, saying so)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
          "--enable-logging=stderr", "--v=0"]


def render(page: Path, screenshot: Path | None = None, width: int = 1400, height: int = 2400,
           budget_ms: int = 15000, fragment: str = "eager", timeout: float = 180) -> tuple[str, list[str]]:
    """(DOM after the scripts ran, console errors). `#eager` draws every figure at once (not as it scrolls in)."""
    assert CHROMIUM, "chromium is not installed"
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory() as profile:
        base = [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                f"--window-size={width},{height}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, text=True,
                           timeout=timeout)
    console = [line for line in dom.stderr.splitlines()
               if ":CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)]
    match = re.search(r'<html[^>]*data-errors="([^"]*)"', dom.stdout)
    probe = [match.group(1)] if match and match.group(1) not in ("", "[]") else []
    return dom.stdout, console + probe
