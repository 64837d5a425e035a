"""`lumamba screen`: per-window QC and task scores for recordings and folders → CSV + JSON reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli.batch import Executor, FileOutcome, FoundRecording, Progress
from lumamba_cli.commands.options import (
    AliasesOption,
    Backend,
    BackendOption,
    BatchSizeOption,
    DeviceOption,
    ExecutorOption,
    JsonOption,
    ModeOption,
    QuietOption,
    ReaderOption,
    SchedulerOption,
    parse_shard,
)
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.recording import Reader

# Beyond this many recordings the end-of-run table lists failures only, with counts: 10,000 rows help nobody.
TABLE_ROWS = 40


class RichProgress(Progress):
    """Recordings and windows with an ETA, on a terminal."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as _RichProgress

        self._bar = _RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=err, transient=True)
        self._files = self._windows = None

    def start(self, total_files: int) -> None:
        self._bar.start()
        self._files = self._bar.add_task("recordings", total=total_files)
        self._windows = self._bar.add_task("windows", total=None)

    def expect_windows(self, total: int | None) -> None:
        self._bar.update(self._windows, total=total)

    def file_started(self, found: FoundRecording) -> None:
        self._bar.update(self._files, description=f"recordings ({escape(clean(found.path.name))})")

    def windows_done(self, count: int) -> None:
        self._bar.advance(self._windows, count)

    def file_finished(self, outcome: FileOutcome) -> None:
        self._bar.advance(self._files, 1)

    def stop(self) -> None:
        self._bar.stop()


class LogProgress(Progress):
    """Without a terminal (Slurm, nohup, a pipe): one line per finished recording, with an ETA, as it happens."""

    def __init__(self) -> None:
        self._total = 0
        self._done = 0
        self._started = time.monotonic()

    def start(self, total_files: int) -> None:
        self._total, self._started = total_files, time.monotonic()

    def file_finished(self, outcome: FileOutcome) -> None:
        self._done += 1
        elapsed = time.monotonic() - self._started
        left = (self._total - self._done) * elapsed / self._done
        line = (f"[{self._done}/{self._total}] {clean(outcome.found.path.name)} {outcome.status} "
                f"{outcome.duration_s:.0f} s, ETA {_clock(left)}")
        if outcome.error:
            line += f": {clean(outcome.error)}"
        err.print(line, markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def screen(
    paths: Annotated[Optional[List[Path]], typer.Argument(
        help="EDF/EDF+/BDF files, or folders walked recursively for .edf/.bdf (any letter case).",
        show_default=False)] = None,
    task: Annotated[Optional[List[str]], typer.Option(
        "--task", "-t", help="Task recipe to score (repeatable), e.g. tuab, mumtaz. Without --task only the "
                             "model-free signal-quality screen (qc) runs: no weights, no network.")] = None,
    head: Annotated[Optional[str], typer.Option(
        "--head", help="Head file or store id to use for the one --task given (alone: the task its metadata names); "
                       "default: the newest stored head of each task (`lumamba heads list`).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for reports and manifest.jsonl (default: a lumamba/ folder beside each input "
                            "file, or inside each input folder).")] = None,
    glob: Annotated[Optional[str], typer.Option(
        "--glob", help="Only recordings whose path (relative to the folder) or name matches this pattern, e.g. "
                       "'*_t000.edf' or 'sub-*/**'.")] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Resume: skip recordings whose reports exist and that manifest.jsonl lists as ok for "
                                "these tasks with the same threshold, head, encoder, recipe, preprocessing, aliases, "
                                "device and backend (and that did not change since); anything else is redone.")] = False,
    files_from: Annotated[Optional[str], typer.Option(
        "--files-from", metavar="FILE",
        help="Also screen the recordings listed in FILE, one path per line ('-': standard input; blank lines and "
             "# comments skipped), e.g. from `find` or a dataset index.")] = None,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", metavar="K/N", callback=parse_shard,
        help="Screen only shard K of N (K from 0 to N-1): a stable split by report name, so N array jobs "
             "(K = $SLURM_ARRAY_TASK_ID of --array=0-(N-1), or GNU parallel) cover every recording exactly once, "
             "each writing its own "
             "manifest.K-of-N.jsonl; `lumamba manifest merge` joins them.")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, help="Worker processes that decode and preprocess recordings in parallel (1: one "
                                    "background thread overlaps them with the model); with --executor dask, the "
                                    "LocalCluster's worker processes.")] = 1,
    executor: ExecutorOption = Executor.local,
    scheduler: SchedulerOption = None,
    device: DeviceOption = "auto",
    backend: BackendOption = Backend.auto,
    batch_size: BatchSizeOption = 64,
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Probability (0 to 1) at or above which a window counts as positive in the summary.")] = 0.5,
    mode: ModeOption = None,
    reader: ReaderOption = Reader.auto,
    aliases: AliasesOption = None,
    formats: Annotated[Optional[List[str]], typer.Option(
        "--format", "-f", metavar="WRITERS",
        help="Writers, comma-separated or repeated: csv, json, html (<stem>.report.html per recording and index.html "
             "per folder), edf (annotation-only EDF+ per task), tsv (BIDS-style events.tsv + .json per task), all. "
             "Default csv,json. JSON is always written: --skip-existing and the HTML report (and "
             "`lumamba report`) read it.")] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Score recordings window by window and write <stem>.<task>.windows.csv and <stem>.<task>.json.

    Windows that fail signal-quality checks are flagged, not hidden. Exit code 0 when every file succeeded,
    6 when some failed (see manifest.jsonl), 3/4/5 when a single named file cannot be screened.
    """
    from lumamba_cli import threads
    from lumamba_cli.batch import read_file_list
    from lumamba_cli.screening import ScreenOptions, run_screen
    from lumamba_cli.writers import parse_formats

    if scheduler is not None and executor is not Executor.dask:
        raise typer.BadParameter("--scheduler needs --executor dask", param_hint="--scheduler")
    listed = tuple(read_file_list(files_from)) if files_from is not None else ()
    if not paths and files_from is None:
        raise typer.BadParameter("give recordings or folders, or --files-from FILE", param_hint="PATHS")

    if jobs > 1 and executor is Executor.local:
        threads.configure(threads.chosen().threads if threads.chosen() else None, jobs=jobs)

    options = ScreenOptions(
        tasks=tuple(dict.fromkeys(task or [])), head=head, out=out, glob=glob, skip_existing=skip_existing,
        jobs=jobs, device=device, backend=backend.value, batch_size=batch_size, threshold=threshold, mode=mode,
        aliases=aliases, reader=reader, files_from=listed, shard=shard, executor=executor, scheduler=scheduler,
        formats=parse_formats(formats),
    )

    progress: Progress = Progress()
    if not quiet:
        progress = RichProgress() if err.is_terminal else LogProgress()
    run = run_screen(paths or [], options, progress=progress, eta=isinstance(progress, RichProgress))
    if not quiet:
        for note in run.notes():
            err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
        render(run)
    if as_json:
        summary = run.batch.summary()
        print_json({**summary, "disclaimer": DISCLAIMER, "out": sorted({str(f.out_dir) for f in run.found}),
                    "tasks": run.plan.report_tasks})
    raise typer.Exit(run.exit_code)


def render(run) -> None:
    """The end-of-run table (one row per recording for small runs; failures and counts for large ones)."""
    result = run.batch
    colours = {"ok": "green", "failed": "red", "skipped": "cyan"}
    large = len(result.outcomes) > TABLE_ROWS
    shown = [o for o in result.outcomes if o.status == "failed"] if large else result.outcomes
    if shown:
        table = Table(title="lumamba screen" + (" — failures" if large else ""))
        table.add_column("recording")
        table.add_column("status")
        table.add_column("windows\n(all tasks)", justify="right")
        table.add_column("detail")
        for outcome in shown[:TABLE_ROWS] if large else shown:
            detail = outcome.error or "\n".join(outcome.notes) or (
                "reports exist (--skip-existing)" if outcome.status == "skipped" else "")
            table.add_row(escape(clean(outcome.found.path.name)), f"[{colours[outcome.status]}]{outcome.status}[/]",
                          str(outcome.windows), escape(clean(detail)))
        err.print(table)
        if large and len(shown) > TABLE_ROWS:
            err.print(f"… {len(shown) - TABLE_ROWS} more failures: see manifest.jsonl")
    for model in run.models.values() if run.options.executor is Executor.local else ():
        described = model.scorer.describe()
        err.print(f"{model.task}: backend {described['backend']}, device {described['device']}, "
                  f"precision {described['precision']}")
    dirs = sorted({str(o.found.out_dir) for o in result.outcomes})
    err.print(f"{result.count('ok')} ok, {result.count('skipped')} skipped, {result.count('failed')} failed; "
              f"reports and manifest.jsonl in {escape(', '.join(dirs))}")


def register(app: typer.Typer) -> None:
    import inspect

    app.command("screen", help=f"{inspect.getdoc(screen)}\n\n{DISCLAIMER}")(screen)

