"""Time and size of the HTML report for synthetic 1-hour and 24-hour recordings (5-s windows, 21 channels).

    python benchmarks/html_report.py          # 1 h and 24 h
    python benchmarks/html_report.py --smoke  # 10 minutes, for tests/test_benchmarks.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from lumamba_cli.html_report import LoadedReport, write_recording_html
from lumamba_cli.qc import CHANNEL_METRICS
from lumamba_cli.report import WindowRow, build_report, summarise

CHANNELS = [f"C{k:02d}" for k in range(21)]


def synthetic(hours: float) -> dict:
    rng = np.random.default_rng(0)
    n = int(hours * 3600 / 5)
    p = np.clip(rng.normal(0.3, 0.2, n), 0, 1)
    rows = [WindowRow(index=k, start_s=5.0 * k, end_s=5.0 * k + 5, probabilities={"abnormal": float(p[k])},
                      excluded=bool(k % 97 == 0), qc_pass=bool(k % 97)) for k in range(n)]
    header = {"format": "EDF+C", "reader": "native", "duration_s": 5.0 * n, "start_time": "2020-01-01T00:00:00",
              "channels": len(CHANNELS), "segments": [], "warnings": []}
    document = build_report(task="tuab", input_info={"path": "/synthetic.edf", "size": 0, "sha256": "0" * 64,
                                                     "header": header, "annotations": []},
                            rows=rows, labels=["abnormal"], summary=summarise(rows, ["abnormal"]),
                            start_time=dt.datetime(2020, 1, 1))
    values = rng.random((n, len(CHANNELS)))
    document["qc"] = {"channels": CHANNELS, "channel_metrics": {
        "channels": CHANNELS, **{name: values.round(4).tolist() for name in CHANNEL_METRICS}}}
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10 minutes only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for hours in ([10 / 60] if args.smoke else [1, 24]):
            document = synthetic(hours)
            started = time.perf_counter()
            path = write_recording_html(Path(folder), f"h{hours:g}", [LoadedReport(Path("x.tuab.json"), document)])
            took = time.perf_counter() - started
            print(f"{hours:g} h ({len(document['windows'])} windows): HTML in {took:.2f} s, "
                  f"{path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
