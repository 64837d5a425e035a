"""The HTML report of the absence excerpt (qc + a formula-weight tuab head), opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run_cli

from lumamba_cli import DISCLAIMER
from lumamba_cli.model.formula import save_formula_head

REPO = Path(__file__).resolve().parents[1]
EXCERPT = REPO / "examples" / "absence_excerpt.edf"
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (.ci/run installs Debian's chromium)")

# Run in the page after load: every <img> decoded, and how many; the dumped DOM then carries the verdict.
CHECK = """<script>window.addEventListener('load', function(){var imgs = Array.from(document.images);
var bad = imgs.filter(function(i){return !(i.complete && i.naturalWidth > 0);}).length;
var p = document.createElement('pre'); p.id = 'lumamba-check';
p.textContent = 'images=' + imgs.length + ' broken=' + bad; document.body.appendChild(p);});</script>"""


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    head = save_formula_head("tuab", folder / "tuab_formula.safetensors")
    code, _, _ = run_cli(["screen", str(EXCERPT), "--task", "qc", "--task", "tuab", "--head", str(head),
                          "--out", str(folder / "out"), "--quiet", "--format", "html", "-f", "csv"])
    assert code == 0
    return folder / "out"


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           *args], check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_page_is_self_contained_and_complete(out):
    page = (out / f"{EXCERPT.stem}.report.html").read_text()
    assert DISCLAIMER.split(":")[0] in page
    # nothing is fetched: no http(s) URL in any src/href
    assert not re.search(r"""(src|href)=["']https?:""", page)
    figures = re.findall(r'<img class="figure" src="data:image/png;base64,', page)
    alts = re.findall(r'alt="([^"]+)"', page)
    # per task: a timeline; three QC heat maps (qc task) ; a head sketch for each task with a montage section
    assert any(a.startswith("timeline qc") for a in alts) and any(a.startswith("timeline tuab") for a in alts)
    assert sum(a.startswith("heatmap qc") for a in alts) == 3
    assert any(a.startswith("head ") for a in alts)
    assert len(figures) == len(alts)
    assert "SZ START" in page  # the recording's own annotations are listed
    index = (out / "index.html").read_text()
    assert f'href="{EXCERPT.stem}.report.html"' in index and ">tuab<" in index and ">qc<" in index
    assert (out / f"{EXCERPT.stem}.tuab.json").is_file() and (out / f"{EXCERPT.stem}.tuab.windows.csv").is_file()


def test_report_rebuilds_the_pages_from_json(out, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        if not path.name.endswith(".html"):
            shutil.copy(path, copy / path.name)
    code, _, _ = run_cli(["report", str(copy)])
    assert code == 0
    assert (copy / f"{EXCERPT.stem}.report.html").read_text() == (out / f"{EXCERPT.stem}.report.html").read_text()


def test_report_refuses_a_folder_without_reports(tmp_path, capsys):
    code, _, err = run_cli(["report", str(tmp_path)], capsys)
    assert code == 3 and "no lumamba JSON reports" in err


def test_a_broken_report_is_named(tmp_path, capsys):
    (tmp_path / "x.qc.json").write_text("{not json")
    code, _, err = run_cli(["report", str(tmp_path)], capsys)
    assert code == 3 and "x.qc.json" in err


@needs_browser
def test_chromium_decodes_every_figure_and_takes_a_screenshot(out, tmp_path):
    page = (out / f"{EXCERPT.stem}.report.html").read_text()
    expected = page.count('<img class="figure"')
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", checked.as_uri(), cwd=tmp_path).stdout
    found = re.search(r"images=(\d+) broken=(\d+)", dom)
    assert found, "the check script did not run"
    assert int(found.group(1)) == expected > 0 and int(found.group(2)) == 0
    shot = tmp_path / "report.png"
    _chromium("--window-size=1300,1600", f"--screenshot={shot}", checked.as_uri(), cwd=tmp_path)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_browser
def test_the_index_sorts_in_the_browser(out, tmp_path):
    index = (out / "index.html").read_text()
    click = """<script>window.addEventListener('load', function(){document.querySelectorAll('th')[1].click();
var cells = Array.from(document.querySelectorAll('#runs tbody tr')).map(function(r){return r.cells[1].textContent;});
var p = document.createElement('pre'); p.id = 'order'; p.textContent = 'order=' + cells.join(','); document.body.appendChild(p);});
</script>"""
    checked = tmp_path / "index.html"
    checked.write_text(index.replace("</body>", click + "</body>"))
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", checked.as_uri(), cwd=tmp_path).stdout
    assert "order=qc,tuab" in dom


def _synthetic_mc_report(tmp_path: Path) -> Path:
    """A per-channel (mc) report with an EDF+D gap (40–60 s) and an annotation whose text is markup."""
    from lumamba_cli.report import WindowRow, build_report, summarise

    starts = [0, 5, 10, 15, 20, 25, 30, 35, 60, 65]
    labels = ["FP1-F7", "T3-T5"]
    rows = [WindowRow(index=k, start_s=s, end_s=s + 5, segment=int(s >= 60),
                      probabilities={"FP1-F7": 0.9 if k % 2 else 0.1, "T3-T5": 0.5},
                      excluded=k == 3, qc_pass=k != 3) for k, s in enumerate(starts)]
    header = {"format": "EDF+D", "reader": "native", "duration_s": 70.0, "start_time": None, "channels": 2,
              "segments": [{"onset_s": 0, "data_start_s": 0, "duration_s": 40},
                           {"onset_s": 60, "data_start_s": 40, "duration_s": 10}], "warnings": []}
    model = {"encoder": {"file": None, "sha256": None}, "head": {"id": "x", "sha256": "0"}, "backend": "torch",
             "device": "cpu", "precision": "float32", "classification_type": "mc"}
    document = build_report(task="tuar_mc", input_info={
        "path": "/x.edf", "size": 1, "sha256": "0" * 64, "header": header,
        "annotations": [{"onset_s": 12.0, "duration_s": None, "text": "<script>alert(1)</script>"}]},
        rows=rows, labels=labels, summary=summarise(rows, labels), model=model)
    path = tmp_path / "x.tuar_mc.json"
    path.write_text(json.dumps(document))
    return path


def test_per_channel_heads_get_a_probability_heat_map_and_file_text_is_escaped(tmp_path):
    _synthetic_mc_report(tmp_path)
    code, _, _ = run_cli(["report", str(tmp_path)])
    assert code == 0
    page = (tmp_path / "x.report.html").read_text()
    assert 'alt="heatmap tuar_mc p positive"' in page
    assert 'alt="timeline tuar_mc FP1-F7"' in page and 'alt="timeline tuar_mc T3-T5"' in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_format_choices_are_checked_and_json_is_always_written(tmp_path, capsys):
    code, _, err = run_cli(["screen", str(EXCERPT), "--out", str(tmp_path), "--quiet", "-f", "csv,nope"], capsys)
    assert code == 2 and "nope" in err
    code, _, _ = run_cli(["screen", str(EXCERPT), "--out", str(tmp_path), "--quiet", "-f", "tsv", "-f", "edf"])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    stem = EXCERPT.stem
    assert {f"{stem}.qc.json", f"{stem}.qc_events.tsv", f"{stem}.qc_events.json", f"{stem}.qc.annotations.edf"} <= names
    assert f"{stem}.qc.windows.csv" not in names and f"{stem}.report.html" not in names
    code, out, _ = run_cli(["screen", "--help"], capsys)
    assert "JSON is always written" in " ".join(out.split())


def test_the_index_lists_a_failed_recording_with_its_reason(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXCERPT, folder / "good.edf")
    (folder / "broken.edf").write_bytes(b"this is not an EDF file at all")
    code, _, _ = run_cli(["screen", str(folder), "--out", str(tmp_path / "out"), "--quiet", "-f", "html"])
    assert code == 6
    index = (tmp_path / "out" / "index.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", index)
    broken = [r for r in rows if "broken.edf" in r]
    assert broken and ">failed<" in broken[0] and "href" not in broken[0]
    assert re.search(r"<td>[^<]*\S[^<]*</td></tr>$", "<tr>" + broken[0] + "</tr>"), "the reason is shown"
    good = [r for r in rows if "good.edf" in r]
    assert good and 'href="good.report.html"' in good[0] and ">ok<" in good[0]
