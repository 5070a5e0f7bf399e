"""Headless Chromium for report tests: screenshots and the DOM after the page's scripts ran.

Skips the calling test when Chromium is missing, except under ``CI=true`` (the set-up
installs it), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        message = "chromium not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser


def _run(profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 3000) -> np.ndarray:
    """Render ``page`` (a local HTML file) and return the screenshot as (height, width, 3)."""
    from PIL import Image

    _run(out.parent / "chromium-profile", f"--screenshot={out}", f"--window-size={width},{height}",
         page.resolve().as_uri())  # fmt: skip
    return np.asarray(Image.open(out).convert("RGB"))


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, as HTML text."""
    return _run(profile, "--dump-dom", page.resolve().as_uri()).stdout
