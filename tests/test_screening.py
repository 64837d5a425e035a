"""The screen job's producer → consumer protocol, and the names the scorer gives its outputs."""

from __future__ import annotations

import numpy as np
import pytest

from lumamba_cli.inference import output_names
from lumamba_cli.model.formula import save_formula_head
from lumamba_cli.recording import ArrayRecording
from lumamba_cli.screening import (
    Block,
    Header,
    QcReport,
    ScreenOptions,
    TaskEnd,
    TaskQc,
    TaskStart,
    collect,
    plan_run,
    produce,
)

NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8",
         "Fz", "Cz", "Pz", "A1", "A2"]


@pytest.fixture(scope="module")
def run_parts(tmp_path_factory):
    head = save_formula_head("tuab", tmp_path_factory.mktemp("h") / "tuab.safetensors")
    options, plan, models = plan_run(ScreenOptions(tasks=("qc", "tuab"), head=str(head), device="cpu"))
    data = np.random.default_rng(0).standard_normal((len(NAMES), 256 * 30)) * 20.0
    # two segments: 20 s and 10 s of stored data
    recording = ArrayRecording("<test>", data, 256.0, NAMES, segment_lengths=[256 * 20, 256 * 10])
    return plan, models, recording


def test_the_producer_sends_a_header_then_qc_then_each_task(run_parts):
    plan, _, recording = run_parts
    messages = list(produce(plan, recording, "0" * 64))
    kinds = [type(m) for m in messages]
    assert kinds[:3] == [Header, QcReport, TaskStart] and kinds[3] is TaskQc and kinds[-1] is TaskEnd
    blocks = [m for m in messages if isinstance(m, Block)]
    assert kinds[4:-1] == [Block] * len(blocks)
    starts = np.concatenate([b.start_s for b in blocks])
    # segment 1 starts one second after segment 0 ends (arrays mark their pieces apart), no window crosses it
    np.testing.assert_allclose(starts, [0, 5, 10, 15, 21, 26])
    for block in blocks:
        assert block.data.shape[1:] == (22, 1280) and block.positions.shape == (22, 3)
        assert len(block.qc) == len(block.start_s) and block.channel_names[0] == "FP1-F7"
    qc = messages[1]
    assert [row.start_s for row in qc.rows] == [0, 5, 10, 15, 21, 26]
    assert messages[-1].task == "tuab" and messages[-1].mode == "whole"


def test_the_consumer_builds_every_report_from_the_messages(run_parts):
    plan, models, recording = run_parts
    reports = collect(models, 0.5, produce(plan, recording, "0" * 64)).reports
    assert [r.task for r in reports] == ["qc", "tuab"]
    tuab = reports[1]
    assert len(tuab.rows) == 6 and tuab.labels == ["normal", "abnormal"]
    assert all(row.predicted in (["normal"], ["abnormal"]) for row in tuab.rows)
    assert tuab.document["model"]["head"]["sha256"] == models["tuab"].head.sha256


def test_the_consumer_refuses_messages_out_of_order(run_parts):
    plan, models, recording = run_parts
    messages = list(produce(plan, recording, "0" * 64))
    header = messages[0]
    block = next(m for m in messages if isinstance(m, Block))
    with pytest.raises(RuntimeError, match="no header"):
        collect(models, 0.5, iter(messages[1:]))
    with pytest.raises(RuntimeError, match="block before its task"):
        collect(models, 0.5, iter([header, block]))
    with pytest.raises(RuntimeError, match="did not finish"):
        collect(models, 0.5, iter([header, messages[2]]))
    with pytest.raises(RuntimeError, match="out of order"):
        collect(models, 0.5, iter([header, TaskEnd("tuab", "whole")]))


@pytest.mark.parametrize("kind, labels, channels, outputs, expected", [
    ("bc", ["normal", "abnormal"], None, 2, ["normal", "abnormal"]),
    ("mcc", ["a", "b", "c"], ["x"], 3, ["a", "b", "c"]),
    # mc recipes name their outputs; without names the montage's channels, else numbered outputs
    ("mc", ["FP1-F7", "F7-T3"], ["c0", "c1"], 2, ["FP1-F7", "F7-T3"]),
    ("mc", [], ["c0", "c1"], 2, ["c0", "c1"]),
    ("mc", [], ["c0"], 2, ["out0", "out1"]),
    ("mmc", ["none", "chew", "elec", "eyem", "musc", "shiv"], ["A", "B"], 12,
     [f"{c}:{k}" for c in "AB" for k in ("none", "chew", "elec", "eyem", "musc", "shiv")]),
    ("mmc", [], ["A"], 12, [f"ch{c}:{k}" for c in range(2) for k in range(6)]),
])
def test_output_names(kind, labels, channels, outputs, expected):
    assert output_names(kind, labels, channels, outputs) == [str(e) for e in expected]
