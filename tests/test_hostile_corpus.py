"""Every case of the hostile corpus (``tests/hostile_corpus.py``) through ``info``, ``montage check`` and ``screen``:
never an internal error (exit 1), never a traceback, a refusal is one line naming the file, ``--json`` stdout is one
strict JSON document (no NaN/Infinity) and nothing else, no Python warning reaches stderr. Plus a file-size limit
hit mid-run (``RLIMIT_FSIZE``): exit 8, a clean manifest entry, no orphan files."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from hostile_corpus import DATA, SEIZEIT, Case, Kind, Outcome, all_cases
from lumamba_cli.errors import ExitCode

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} is absent: the corpus is cut from ../shared/data")

CASES = {case.name: case for case in all_cases()} if DATA.is_dir() else {}
DOCUMENTED = {int(code) for code in ExitCode} - {int(ExitCode.INTERNAL)}
# what each command may answer for a recording it cannot use (help texts: info 3, montage 3/4, screen 3/4/5/6)
ALLOWED = {"info": {0, 3}, "montage": {0, 3, 4}, "screen": {0, 3, 4, 6}, "tuab": {0, 3, 4, 5, 6}, "heads": {0, 5}}
WARNING_LINE = re.compile(r"\w+Warning: ")


def _strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    built = {}
    for case in CASES.values():
        where = root / case.name
        where.mkdir()
        built[case.name] = case.build(where)
    yield built
    for path in root.rglob("*"):  # chmod 0 files must be removable by tmp_path's cleanup
        if not path.is_symlink() and path.exists():
            path.chmod(0o700)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.edf"  # monopolar 10-20: tuab's layout can be built
    path.write_bytes((DATA / SEIZEIT).read_bytes())
    return path


@pytest.fixture(scope="module")
def tuab_good(tmp_path_factory) -> Path:
    """A recording tuab's layout can be built from (as in test_screen_cli)."""
    return Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"


@pytest.fixture(scope="module")
def tuab_head(tmp_path_factory) -> Path:
    from lumamba_cli.model.formula import save_formula_head

    return save_formula_head("tuab", tmp_path_factory.mktemp("head") / "tuab_formula.safetensors")


# (command, exit code) of every run; with LUMAMBA_CORPUS_TABLE=FILE the module writes their counts there
TALLY: list[tuple[str, int]] = []


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    yield
    target = os.environ.get("LUMAMBA_CORPUS_TABLE")
    if target:
        counts: dict[str, dict[int, int]] = {}
        for command, code in TALLY:
            counts.setdefault(command, {}).setdefault(code, 0)
            counts[command][code] += 1
        Path(target).write_text(json.dumps(counts, indent=1, sort_keys=True))


def check_run(argv: list[str], capsys, allowed: set[int], *, json_out: bool, names: Path | None) -> int:
    code, out, err = run_cli(argv, capsys)
    words = [str(a) for a in argv if not str(a).startswith("/")]
    TALLY.append((" ".join(w for w in words[:2] if w in ("info", "montage", "check", "screen", "heads", "import",
                                                             "list")) + (" --task tuab" if "tuab" in words else "")
                  + (" --json" if "--json" in words else ""), code))
    where = f"lumamba {' '.join(map(str, argv))} → {code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    assert code != ExitCode.INTERNAL, where
    assert code in DOCUMENTED, where
    assert code in allowed, where
    assert "Traceback" not in err and "Traceback" not in out, where
    assert "this is a bug" not in err, where
    assert not WARNING_LINE.search(err), where
    assert "\x1b" not in err, where  # nothing from a file may drive the terminal
    if json_out and code in (0, 6):
        _strict(out)  # one document, strict JSON, nothing else
    elif json_out:  # a refused single file: the error line is on stderr, stdout holds nothing or one document
        assert out.strip() == "" or _strict(out) is not None, where
    if code not in (0, 6):
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, where
        if names is not None:
            assert str(names) in errors[0] or names.name in errors[0], where
    return code


def _recording(case: Case, path: Path, tmp_path: Path, capsys, tuab_head: Path) -> None:
    info = check_run(["info", path, "--json"], capsys, ALLOWED["info"], json_out=True, names=path)
    if case.outcome is Outcome.REFUSED:
        assert info == case.code, f"{case.name}: info exited {info}, the corpus expects {case.code}"
    elif case.outcome is Outcome.ACCEPTED:
        assert info == 0, f"{case.name}: info refused a file the corpus expects to be read"
    check_run(["info", path], capsys, ALLOWED["info"], json_out=False, names=path)
    check_run(["montage", "check", path, "--json"], capsys, ALLOWED["montage"], json_out=True, names=path)
    check_run(["montage", "check", path], capsys, ALLOWED["montage"], json_out=False, names=path)
    screen = check_run(["screen", path, "--out", tmp_path / "qc", "--json"], capsys, ALLOWED["screen"],
                       json_out=True, names=path)
    if case.outcome is Outcome.REFUSED and path.suffix:  # a named file (a folder answers 6)
        assert screen == case.code, f"{case.name}: screen exited {screen}, the corpus expects {case.code}"
    if "tuab" in case.tags:
        check_run(["screen", path, "--task", "tuab", "--head", tuab_head, "--out", tmp_path / "tuab", "--quiet"],
                  capsys, ALLOWED["tuab"], json_out=False, names=path)


def _aliases(case: Case, path: Path, good: Path, tmp_path: Path, capsys) -> None:
    montage = check_run(["montage", "check", good, "--aliases", path, "--json"], capsys, ALLOWED["montage"],
                        json_out=True, names=path)
    screen = check_run(["screen", good, "--aliases", path, "--out", tmp_path, "--quiet"], capsys, ALLOWED["screen"],
                       json_out=False, names=path)
    if case.outcome is Outcome.REFUSED:
        assert montage == screen == case.code


def _head(case: Case, path: Path, tuab_good: Path, tmp_path: Path, capsys) -> None:
    imported = check_run(["heads", "import", path], capsys, ALLOWED["heads"], json_out=False, names=path)
    check_run(["heads", "list"], capsys, {0}, json_out=False, names=None)
    check_run(["heads", "list", "--json"], capsys, {0}, json_out=True, names=None)
    screen = check_run(["screen", tuab_good, "--task", "tuab", "--head", path, "--out", tmp_path, "--quiet"], capsys,
                       ALLOWED["tuab"], json_out=False, names=path)
    if case.outcome is Outcome.REFUSED:
        assert screen == case.code, f"{case.name}: screen exited {screen}"
        # a recipe mismatch is imported with a warning (the recipe may be updated later) and refused by screen
        assert imported == (0 if "import_warns" in case.tags else case.code), f"{case.name}: import {imported}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_case(name, corpus, good, tuab_good, tuab_head, tmp_path, capsys, recwarn):
    case = CASES[name]
    path = corpus[name]
    if case.name == "unreadable_permissions" and os.geteuid() == 0:
        pytest.skip("root reads a chmod-0 file")
    if case.kind is Kind.RECORDING:
        _recording(case, path, tmp_path, capsys, tuab_head)
    elif case.kind is Kind.ALIASES:
        _aliases(case, path, good, tmp_path, capsys)
    else:
        _head(case, path, tuab_good, tmp_path, capsys)


def test_corpus_is_large_enough():
    assert len(CASES) >= 150


# ------------------------------------------------------------------------------------------------ output side

FSIZE_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
import signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing the process
from lumamba_cli.cli import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no RLIMIT_FSIZE on this platform")
def test_file_size_limit_is_an_output_error(tmp_path, good):
    out = tmp_path / "out"
    script = FSIZE_SCRIPT.format(limit=2000)  # the windows CSV of a 2-s recording is larger than this
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", script, "screen", str(good), "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == ExitCode.OUTPUT, result.stderr
    assert "Traceback" not in result.stderr
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert all(not name.startswith(".") and ".tmp" not in name for name in leftovers), leftovers
    reports = [name for name in leftovers if name.endswith((".csv", ".json")) and name.startswith("good.")]
    assert reports == [], f"orphan reports after a failed write: {reports}"
    manifest = out / "manifest.jsonl"
    if manifest.exists() and manifest.read_text().strip():
        entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        assert entries[-1]["status"] != "ok"
        assert entries[-1]["error_code"] == ExitCode.OUTPUT
