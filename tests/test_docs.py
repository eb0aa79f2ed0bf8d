"""The documentation site: `make docs` (mkdocs build --strict) in the fast suite; the built site in headless
Chromium in the slow one. The README stays short, and every topic page is one click from the home page."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asr_peft.reporting.browser import dump_dom, find_chromium

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]  # not --quiet: strict mode counts the warnings it would hide


def build(site: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MKDOCS, "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def nav_pages(config: Path = ROOT / "mkdocs.yml") -> list[str]:
    """Every page the site's navigation lists (mkdocs.yml's !!python tags aside, it is plain YAML)."""

    def walk(entries):
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from (walk(value) if isinstance(value, list) else [value])

    return list(walk(yaml.safe_load(config.read_text(encoding="utf-8"))["nav"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = build(site)
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def test_the_site_builds_in_strict_mode_with_every_page(site):
    for page in nav_pages():
        assert (site / page).with_suffix(".html").is_file(), page
    # the API reference is generated from the docstrings
    adapters = (site / "api" / "adapters.html").read_text(encoding="utf-8")
    assert "asr_peft.adapters.ssvd" in adapters and "SSVD" in adapters


def test_the_results_page_is_the_committed_report(site):
    """Every cell of every table row of results/comparison_v1/report.md is on the results page (included, not copied)."""
    report = (ROOT / "results" / "comparison_v1" / "report.md").read_text(encoding="utf-8")
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "results.html").read_text(encoding="utf-8")))
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    assert len(rows) > 60
    for row in rows:
        for cell in (c.strip().replace("\\|", "|") for c in row.strip("|").split(" | ")):
            assert cell in page, cell


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("paths: [src]", f"paths: [{ROOT / 'src'}]"))
    (tmp_path / "results" / "comparison_v1").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "comparison_v1" / "report.md", tmp_path / "results" / "comparison_v1" / "report.md")
    assert build(tmp_path / "site", config).returncode == 0
    (docs / "usage.md").write_text((docs / "usage.md").read_text(encoding="utf-8") + "\nSee [the missing page](nowhere.md).\n")
    result = build(tmp_path / "site", config)
    assert result.returncode != 0 and "nowhere.md" in result.stderr


def test_every_topic_is_one_click_from_the_home_page():
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", home))
    assert set(nav_pages()) - {"index.md"} - {p for p in nav_pages() if p.startswith("api/") and p != "api/index.md"} <= linked


def test_the_readme_is_short_and_points_at_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert target.startswith("http") or (ROOT / target).exists(), target


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


PROBE = """
window.addEventListener("load", () => {
  const figure = document.querySelector('img[src="comparison-pareto.png"]');
  const probe = document.createElement("pre"); probe.id = "probe";
  probe.textContent = JSON.stringify({found: !!figure, complete: figure && figure.complete,
                                      width: figure && figure.naturalWidth, height: figure && figure.naturalHeight,
                                      title: document.title});
  document.body.appendChild(probe);
});
"""


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_the_home_page_and_its_figure_render_in_headless_chromium(site):
    dom = dump_dom(site / "index.html")
    assert "asr-peft" in dom and 'href="getting-started.html"' in dom and 'href="results.html"' in dom
    probe = site / "probe.html"
    probe.write_text((site / "index.html").read_text(encoding="utf-8").replace("</body>", f"<script>{PROBE}</script></body>"))
    seen = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dump_dom(probe), re.S).group(1))
    # the browser decoded the figure: its natural size is the PNG's own
    assert (
        seen["found"]
        and seen["complete"]
        and (seen["width"], seen["height"]) == png_size(ROOT / "docs" / "comparison-pareto.png")
    )
