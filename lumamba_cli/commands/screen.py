"""`lumamba screen`: per-window QC and task scores for recordings and folders → CSV + JSON reports."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lumamba_cli import DISCLAIMER


# Choices are checked here (not by Typer) so that a bad value is a one-line usage error with exit code 2.
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "mamba-ssm")
MODES = ("auto", "whole", "chunked")


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    from lumamba_cli.errors import UsageError

    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value


def screen(
    paths: List[Path] = typer.Argument(
        ..., help="EDF/EDF+/BDF files, or folders walked recursively for .edf/.bdf (any letter case).",
        show_default=False,
    ),
    task: Optional[List[str]] = typer.Option(
        None, "--task", "-t",
        help="Task recipe to score (repeatable), e.g. tuab, mumtaz. Without --task only the model-free "
             "signal-quality screen (qc) runs: no weights, no network.",
    ),
    head: Optional[str] = typer.Option(
        None, "--head", help="Head file or store id to use for the one --task given (alone: the task its metadata "
                             "names); default: the newest stored head of each task (`lumamba heads list`).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for reports and manifest.jsonl (default: a lumamba/ folder beside each "
                                  "input file, or inside each input folder).",
    ),
    glob: Optional[str] = typer.Option(
        None, "--glob", help="Only recordings whose path (relative to the folder) or name matches this pattern, "
                             "e.g. '*_t000.edf' or 'sub-*/**'.",
    ),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Resume: skip recordings whose reports exist and that manifest.jsonl lists "
                                       "as ok for these tasks with the same threshold, head, encoder, recipe, "
                                       "preprocessing, aliases, device and backend (and that did not change "
                                       "since); anything else is redone.",
    ),
    jobs: int = typer.Option(
        1, "--jobs", "-j", help="Worker processes that decode and preprocess recordings in parallel "
                                       "(1: one background thread overlaps them with the model).",
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda: where the model runs (auto: CUDA "
                                                           "when torch sees a GPU)."),
    backend: str = typer.Option(
        "auto", "--backend", help="auto | torch | mamba-ssm: selective-scan implementation (mamba-ssm needs CUDA "
                                  "and the gpu extra)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per model call (at least 1)."),
    threshold: float = typer.Option(
        0.5, "--threshold", help="Probability (0 to 1) at or above which a window counts as positive in the summary.",
    ),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="auto | whole | chunked preprocessing: whole = each contiguous segment at once "
                             "(upstream parity); chunked = bounded memory for very long recordings (small "
                             "stated deviation); auto = chunked only for segments over an hour. Default: the "
                             "preprocessing the head was trained with (else auto); a different one is warned about.",
    ),
    aliases: Optional[Path] = typer.Option(
        None, "--aliases",
        help="Extra channel-name aliases (TSV: alias, canonical) for unusual labels.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or tables on stderr (errors still show)."),
    json_out: bool = typer.Option(False, "--json", help="Print a one-line JSON summary of the run on stdout."),
) -> None:
    """Score recordings window by window and write <stem>.<task>.windows.csv and <stem>.<task>.json.

    Windows that fail signal-quality checks are flagged, not hidden. Exit code 0 when every file succeeded,
    6 when some failed (see manifest.jsonl), 3/4/5 when a single named file cannot be screened.
    """
    from lumamba_cli.screen import ScreenOptions, run_screen
    from lumamba_cli.errors import UsageError

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    if aliases is not None and not aliases.is_file():
        raise UsageError("aliases file not found", path=aliases)
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, not {threshold}")

    options = ScreenOptions(
        tasks=tuple(dict.fromkeys(task or [])),
        head=head,
        out=out,
        glob=glob,
        skip_existing=skip_existing,
        jobs=jobs,
        device=_choice("--device", device, DEVICES),
        backend=_choice("--backend", backend, BACKENDS),
        batch_size=batch_size,
        threshold=threshold,
        mode=None if mode is None else _choice("--mode", mode, MODES),
        aliases=aliases,
        quiet=quiet,
        json_summary=json_out,
    )
    code = run_screen([Path(p) for p in paths], options)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    import inspect

    app.command("screen", help=f"{inspect.getdoc(screen)}\n\n{DISCLAIMER}")(screen)
