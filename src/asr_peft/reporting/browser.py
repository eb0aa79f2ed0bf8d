"""Headless Chromium for the dashboard: the DOM after its scripts ran, and screenshots.

    python -m asr_peft.reporting.browser <report.html> <screenshot.png> [--width 1400] [--height 2400]

Chromium runs with no network-facing extras (no background networking, component updates or sync),
in a throwaway profile, so a page that needs the network shows it by not rendering.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from asr_peft.errors import AsrPeftError, ConfigError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _chromium(page: Path, arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise ConfigError(
            f"no headless browser found (looked for {', '.join(BROWSERS)}); "
            "install Debian's `chromium` (apt-get install -y chromium)"
        )
    if not page.is_file():
        raise ConfigError(f"{page} does not exist")
    with tempfile.TemporaryDirectory(prefix="asr-peft-chromium-") as profile:
        return subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", *arguments, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


def dump_dom(page: str | Path, *, timeout: float = 180) -> str:
    """The page's DOM after its scripts ran (plotly's figures are drawn by then)."""
    return _chromium(Path(page), ["--dump-dom"], timeout).stdout


def screenshot(page: str | Path, png: str | Path, *, width: int = 1400, height: int = 2400, timeout: float = 180) -> Path:
    """A PNG of the page's first `height` pixels at `width` wide."""
    png = Path(png).resolve()
    _chromium(Path(page), [f"--screenshot={png}", f"--window-size={width},{height}"], timeout)
    if not png.is_file():
        raise ConfigError(f"chromium wrote no screenshot to {png}")
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description="Screenshot a report.html with headless Chromium.")
    parser.add_argument("page")
    parser.add_argument("png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    try:
        print(screenshot(args.page, args.png, width=args.width, height=args.height))
    except (AsrPeftError, subprocess.SubprocessError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
