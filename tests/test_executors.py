"""One folder of real recordings screened four ways gives the same reports: locally, as three shards merged, on a
LocalCluster of two worker processes, and on a Dask cluster whose worker is killed mid-run, then resumed.

The oracle is the local run's bytes (computed by the path the rest of the suite checks against upstream) and the
folder listing made here: every recording appears once in every manifest, with the same status and outputs, and no
temporary or half-written file is left anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest

from cli_helpers import run_cli
from lumamba_cli.model.formula import save_formula_head

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

# (copy name, shared file): the same recording under two names, the 10-20 recordings mumtaz can use, two it cannot
# (qc still runs), and below two files that are not recordings at all.
COPIES = [
    ("site-a/S001R01.edf", "edf-parser_S001R01.edf"),
    ("site-a/again/S001R01-copy.edf", "edf-parser_S001R01.edf"),
    ("site-a/PN00-5.edf", "epilepsy2bids_PN00-5_sample.edf"),
    ("site-b/P_ID10.edf", "epilepsy2bids_P_ID10_r5_sample.edf"),
    ("site-b/aaaaaaac_s001_t000.edf", "epilepsy2bids_aaaaaaac_s001_t000_sample.edf"),
    ("site-b/spkit.edf", "spkit_EEG16SecData.edf"),
    ("site-c/subsecond.edf", "pyedflib_test_subsecond.edf"),
    ("site-c/absence.edf", "eeghdf_absence_epilepsy.edf"),
]


@pytest.fixture(scope="module")
def archive(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    for name, source in COPIES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / source, root / name)
    whole = (shared_data / "spkit_EEG16SecData.edf").read_bytes()
    (root / "site-c/truncated.edf").write_bytes(whole[: len(whole) // 2])
    (root / "site-c/notes.edf").write_text("not a recording\n")
    head = save_formula_head("mumtaz", tmp_path_factory.mktemp("heads") / "mumtaz.safetensors")
    return root, head


def screen(archive, out, capsys, *extra):
    """Every way runs the model on one CPU thread per process: oneDNN and SIMD tails split work by thread, so
    only equal counts promise equal bytes (README, "Deterministic")."""
    root, head = archive
    return run_cli(["--threads", "1", "screen", root, "--task", "qc", "--task", "mumtaz", "--head", head, "--out", out, "--quiet",
                    *extra], capsys)


def csv_reports(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("**/*.windows.csv"))}


def latest(out):
    """Per recording, the last manifest line that did work (a "skipped" line repeats an earlier "ok"): status,
    error code, outputs and each task's status (the parts that must agree)."""
    entries = {}
    for path in sorted(out.glob("manifest*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["status"] != "skipped":
                entries[entry["path"]] = entry
    return {path: (e["status"], e["error_code"], sorted(e["outputs"]),
                   {task: part["status"] for task, part in (e.get("parts") or {}).items()})
            for path, e in entries.items()}


def leftovers(out):
    return [p.name for p in out.rglob("*") if p.name.startswith(".") or "lumamba-tmp" in p.name]


@pytest.fixture(scope="module")
def local_run(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    code, _, err = screen(archive, out, None)
    assert code == 6, err  # the two files that are not recordings fail; the others do not
    return out


def test_local_run_is_the_reference(archive, local_run):
    root, _ = archive
    states = latest(local_run)
    assert sorted(states) == sorted(str(p) for p in root.rglob("*.edf"))
    assert states[str(root / "site-c/notes.edf")][:2] == ("failed", 3)
    assert states[str(root / "site-c/truncated.edf")][:2] == ("failed", 3)
    assert states[str(root / "site-b/spkit.edf")][3] == {"qc": "ok", "mumtaz": "failed"}
    assert states[str(root / "site-c/absence.edf")][3] == {"qc": "ok", "mumtaz": "ok"}
    # the same recording under two names: two reports, the same bytes
    reports = csv_reports(local_run)
    assert reports["S001R01.mumtaz.windows.csv"] == reports["S001R01-copy.mumtaz.windows.csv"]
    assert not leftovers(local_run)


def test_three_shards_merged_equal_the_local_run(archive, local_run, tmp_path, capsys):
    for k in range(3):
        code, _, err = screen(archive, tmp_path, capsys, "--shard", f"{k}/3")
        assert code in (0, 6), err
    assert run_cli(["manifest", "merge", tmp_path], capsys)[0] == 0
    assert csv_reports(tmp_path) == csv_reports(local_run)
    assert latest(tmp_path) == latest(local_run)
    assert not leftovers(tmp_path)


def test_a_local_cluster_of_two_workers_equals_the_local_run(archive, local_run, tmp_path, capsys):
    code, _, err = screen(archive, tmp_path, capsys, "--executor", "dask", "--jobs", "2")
    assert code == 6, err
    assert csv_reports(tmp_path) == csv_reports(local_run)
    assert latest(tmp_path) == latest(local_run)
    assert [p.name for p in tmp_path.glob("manifest*")] == ["manifest.jsonl"]  # the client alone wrote it
    assert not leftovers(tmp_path)


def test_a_killed_worker_loses_nothing_and_a_resume_completes_the_run(archive, local_run, tmp_path, capsys):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"OMP_NUM_THREADS": "1", "LUMAMBA_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        killed = {}

        def kill_the_worker_doing_the_long_recording() -> None:
            # The one-hour absence recording is the slowest task: kill the worker that holds it, while it works.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not killed:
                for address, keys in client.processing().items():
                    if any(key.endswith(f"-{_index_of_absence(archive)}") for key in map(str, keys)):
                        time.sleep(1.0)
                        pid = client.run(os.getpid, workers=[address])[address]
                        os.kill(pid, signal.SIGKILL)
                        killed["pid"] = pid
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_worker_doing_the_long_recording, daemon=True)
        killer.start()
        code, _, err = screen(archive, tmp_path, capsys, "--executor", "dask", "--scheduler",
                              cluster.scheduler_address)
        killer.join(timeout=5)
        assert killed, "the worker doing the long recording was never seen"
        assert code in (0, 6), err
        assert not leftovers(tmp_path)
        for name, data in csv_reports(tmp_path).items():  # whatever was written is whole
            assert data == csv_reports(local_run)[name]

        code, _, err = screen(archive, tmp_path, capsys, "--executor", "dask", "--scheduler",
                              cluster.scheduler_address, "--skip-existing")
        assert code == 6, err
    assert csv_reports(tmp_path) == csv_reports(local_run)
    assert latest(tmp_path) == latest(local_run)
    assert not leftovers(tmp_path)


def _perturbed_copy(head, target):
    """The same head with one weight nudged: valid, loadable, and a different sha256."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(head), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(head))
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_a_worker_with_another_head_is_refused_before_any_work(archive, tmp_path, capsys, monkeypatch):
    """Client and workers each take the newest mumtaz head of their own store; the stores differ, so the run is
    refused before any recording is read (exit 5), naming what differs."""
    root, head = archive
    worker_home = tmp_path / "worker-home"
    monkeypatch.setenv("LUMAMBA_HOME", str(worker_home))
    assert run_cli(["heads", "import", _perturbed_copy(head, tmp_path / "nudged.safetensors")], capsys)[0] == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"LUMAMBA_HOME": str(worker_home)}) as cluster:
        monkeypatch.setenv("LUMAMBA_HOME", str(tmp_path / "client-home"))
        assert run_cli(["heads", "import", head], capsys)[0] == 0
        code, _, err = run_cli(["screen", root / "site-a", "--task", "mumtaz", "--out", tmp_path / "out",
                                "--executor", "dask", "--scheduler", cluster.scheduler_address, "--quiet"], capsys)
    assert code == 5, err
    assert "refused" in err and "mumtaz.head_sha256" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.csv"))


def _index_of_absence(archive) -> int:
    from lumamba_cli.batch import find_recordings

    root, _ = archive
    found = find_recordings([root])
    return next(i for i, item in enumerate(found) if item.path.name == "absence.edf")
