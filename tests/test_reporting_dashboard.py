"""The dashboard in a real browser (slow): headless Chromium renders report.html offline, its scripts
run (plotly draws every panel) and the tables hold every run.

`fake_sweep` writes realistic records (the offline Pareto grid's methods and budgets on the tiny
model, parameter counts from its dry-run plans, three seeds, one diverged run, one truncated file);
docs/report-screenshot.png was made from it:
    python -c "import sys; sys.path.insert(0, 'tests'); from test_reporting_dashboard import fake_sweep; fake_sweep('/tmp/fake')"
    python report.py /tmp/fake --out /tmp/fake-report
    python -m asr_peft.reporting.browser /tmp/fake-report/report.html docs/report-screenshot.png
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from asr_peft.reporting.browser import dump_dom, find_chromium, screenshot
from asr_peft.reporting.report import build_report

BEFORE = {"source": 0.344, "child": 0.985, "dialect": 0.712}  # the tiny pretrained model, before adaptation
# name, method, adapt.p, trainable (dry-run plans, owsm_tiny), capacity (0..1: how far it moves the model),
# mean principal angle input/output side (degrees)
GRID = [
    ("ssvd_p0.1", {"name": "ssvd", "rotation": "approx"}, 0.1, 3_426, 0.45, (3.1, 0.4)),
    ("ssvd_p0.2", {"name": "ssvd", "rotation": "approx"}, 0.2, 14_124, 0.62, (5.4, 0.7)),
    ("ssvd_p0.4", {"name": "ssvd", "rotation": "approx"}, 0.4, 57_468, 0.78, (8.2, 1.1)),
    ("svft_plain", {"name": "svft", "pattern": "plain", "off_diag": 0}, 0.4, 5_618, 0.35, (0.4, 0.4)),
    ("svft_banded2", {"name": "svft", "pattern": "banded", "off_diag": 2}, 0.4, 27_650, 0.50, (1.6, 1.5)),
    ("lora_r4", {"name": "lora", "r": 4, "alpha": 8}, 0.4, 63_024, 0.60, (3.9, 4.3)),
    ("lora_r16", {"name": "lora", "r": 16, "alpha": 32}, 0.4, 252_096, 0.70, (4.8, 5.2)),
    ("dora_r4", {"name": "dora", "r": 4, "alpha": 8}, 0.4, 69_622, 0.63, (4.0, 4.1)),
    ("dora_r16", {"name": "dora", "r": 16, "alpha": 32}, 0.4, 258_694, 0.72, (5.0, 4.9)),
    ("pissa_r4", {"name": "pissa", "r": 4, "alpha": 4}, 0.4, 63_024, 0.64, (6.5, 6.9)),
    ("pissa_r16", {"name": "pissa", "r": 16, "alpha": 16}, 0.4, 252_096, 0.74, (7.3, 7.6)),
    ("vera_r64", {"name": "vera", "r": 64, "d_initial": 0.1}, 0.4, 9_414, 0.40, (1.2, 1.3)),
    ("full", {"name": "full"}, 0.4, 1_461_388, 0.95, (11.0, 10.2)),
    ("frozen", {"name": "frozen"}, 0.4, 0, 0.0, None),
]
TOTAL = 1_461_388
LAYER_TYPES = {
    "encoder.attn.linear_q": [144, 144],
    "encoder.feed_forward.w_1": [576, 144],
    "encoder.feed_forward.w_2": [144, 576],
    "decoder.src_attn.linear_v": [144, 144],
}


def _wers(data: str, capacity: float, rng: np.random.Generator) -> dict[str, float]:
    """Target WER falls with capacity; the source is forgotten more the more a method moves."""
    target, other = ("child", "dialect") if data == "synth_child" else ("dialect", "child")
    floor = {"child": 0.41, "dialect": 0.47}[target]
    wers = {
        target: BEFORE[target] - (BEFORE[target] - floor) * capacity,
        "source": BEFORE["source"] + 0.20 * capacity**3,
        other: BEFORE[other] - 0.12 * capacity + 0.10 * capacity**3,
    }
    return {k: float(np.clip(wers[k] + rng.normal(0, 0.008), 0.02, 1.2)) for k in BEFORE}  # the data config's order


def _record(
    directory: Path,
    name: str,
    method: dict,
    p: float,
    trainable: int,
    capacity: float,
    data: str,
    seed: int,
    rng: np.random.Generator,
) -> dict:
    wers = _wers(data, capacity, rng)
    target = "child" if data == "synth_child" else "dialect"
    steps = [100, 200, 300] if method["name"] != "frozen" else []
    history = [
        {
            "step": s,
            "epoch": 0,
            "val_wer": BEFORE[target] + (wers[target] - BEFORE[target]) * (1 - 0.5 ** (i + 1)) / 0.875,
            "val_cer": 0.4,
            "val_loss": 1.0,
        }
        for i, s in enumerate(steps)
    ]
    return {
        "status": "completed",
        "error": None,
        "run_dir": str(directory),
        "started_at": "2026-11-24T01:00:00+00:00",
        "finished_at": "2026-11-24T01:09:00+00:00",
        "method": method,
        "adapt": {"p": p, "targets": ["attn.linear_q"]},
        "model": {"name": "owsm_tiny_pretrained"},
        "data": {"name": data},
        "seed": seed,
        "metrics": {k: {"wer": v, "cer": v * 0.38, "num_utterances": 300, "num_words": 2010} for k, v in wers.items()},
        "baseline_metrics": {k: {"wer": v, "cer": v * 0.38} for k, v in BEFORE.items()},
        "parameters": {"trainable": trainable, "total": TOTAL + (trainable if method["name"] not in ("full", "frozen") else 0)},
        "train_time_s": 0 if not steps else float(380 + trainable**0.35 * 6 + rng.normal(0, 15)),
        "peak_memory_mb": float(1450 + trainable / 2500),
        "global_step": steps[-1] if steps else 0,
        "validation_history": history,
        "skipped": {},
        "packages": {"torch": "2.14.1"},
        "git_commit": "0000000",
        "config": {"optimizer": {"lr": 1e-4}, "trainer": {"max_steps": 300}},
    }


def _subspace(angles: tuple[float, float], rng: np.random.Generator) -> dict:
    types = {}
    for kind, shape in LAYER_TYPES.items():
        scale = rng.uniform(0.7, 1.3)
        types[kind] = {
            "layers": 6,
            "shape": shape,
            "rank": 7,
            "input_angle_mean_deg": angles[0] * scale,
            "input_angle_max_deg": 2.5 * angles[0] * scale,
            "output_angle_mean_deg": angles[1] * scale,
            "output_angle_max_deg": 2.5 * angles[1] * scale,
            "delta_relative_norm": 0.01 * angles[0],
            "delta_effective_rank": 4 + angles[0],
            "delta_spectrum": [1.0, 0.5, 0.2],
        }
    overall = {
        "layers": 24,
        **{
            key: float(np.mean([t[key] for t in types.values()]))
            for key in ("input_angle_mean_deg", "output_angle_mean_deg", "delta_relative_norm", "delta_effective_rank")
        },
    }
    return {"format": 1, "rank_fraction": 0.05, "spectrum_head": 32, "overall": overall, "layer_types": types, "layers": {}}


def fake_sweep(root: str | Path) -> Path:
    """A Hydra-multirun-like tree of realistic records (see the module docstring)."""
    root, rng = Path(root), np.random.default_rng(0)
    for data in ("synth_child", "synth_dialect"):
        for name, method, p, trainable, capacity, angles in GRID:
            for seed in (0,) if name == "frozen" else (0, 1, 2):
                directory = root / f"data={data},+point={name},seed={seed}"
                directory.mkdir(parents=True)
                record = _record(directory, name, method, p, trainable, capacity, data, seed, rng)
                if (name, data, seed) == ("dora_r16", "synth_dialect", 2):
                    record.update(
                        status="failed",
                        metrics={},
                        train_time_s=None,
                        global_step=140,
                        error="ValueError: DoRALinear: merged weight is not finite; the adapter has diverged",
                    )
                (directory / "results.json").write_text(json.dumps(record, indent=1))
                if angles is not None and record["status"] == "completed":
                    (directory / "subspace.json").write_text(json.dumps(_subspace(angles, rng)))
    killed = root / "data=synth_child,+point=ssvd_cayley_p0.2,seed=0"
    killed.mkdir()
    (killed / "results.json").write_text('{"status": "completed", "metrics": {"child": {"wer": 0.4')  # cut mid-write
    return root


PROBE = """
const th = [...document.querySelectorAll('#runs th')].find(h => h.textContent === 'trainable');
const column = () => [...document.querySelectorAll('#runs tbody tr')].map(r => r.cells[th.cellIndex].dataset.value);
th.click(); const ascending = column();
th.click(); const descending = column();
const filter = document.querySelector('input.filter');
filter.value = 'failed'; filter.dispatchEvent(new Event('input'));
const visible = [...document.querySelectorAll('#runs tbody tr')].filter(r => !r.hidden).length;
const probe = document.createElement('pre'); probe.id = 'probe';
probe.textContent = JSON.stringify({ascending, descending, visible}); document.body.appendChild(probe);
"""
needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")


@pytest.mark.slow
@needs_chromium
def test_dashboard_renders_offline_in_headless_chromium(tmp_path):
    sweep = fake_sweep(tmp_path / "multirun")
    summary = build_report([sweep], tmp_path / "report")
    page = tmp_path / "report" / "report.html"
    assert summary["runs"] == {"completed": 79, "failed": 1} and len(summary["unreadable"]) == 1

    dom = dump_dom(page)
    # plotly drew every Pareto panel (its SVG exists only once the inlined scripts ran, with no network):
    # 2 data sets x 3 test sets.
    assert dom.count('class="main-svg"') >= 6 and len(re.findall(r'class="plot-container plotly"', dom)) == 6
    runs = dom[dom.index('id="runs"') :]
    runs = runs[: runs.index("</table>")]
    assert runs.count("<tr") == 1 + 80 and runs.count('class="failed"') == 1 and "has diverged" in runs
    summary_rows = dom[dom.index('id="summary"') :]
    assert summary_rows[: summary_rows.index("</table>")].count("<tr") == 1 + 2 * len(GRID)

    # The sorting and filtering scripts, driven in the browser: click "trainable" twice, then filter.
    probe = tmp_path / "report" / "probe.html"
    probe.write_text(page.read_text().replace("</body>", f"<script>{PROBE}</script></body>"))
    result = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dump_dom(probe)).group(1))
    numbers = [float(v) for v in result["ascending"] if v != ""]
    assert numbers == sorted(numbers) and len(numbers) == 80 and numbers[0] == 0  # frozen first
    assert [float(v) for v in result["descending"] if v != ""] == sorted(numbers, reverse=True)
    assert result["visible"] == 1  # "failed" leaves the one failed run

    png = screenshot(page, tmp_path / "shot.png", width=1400, height=1600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
