"""The screen job: one recording → QC and task scores → reports. ``batch.py`` runs it over files and folders.

``produce`` (decode, montage, preprocess, QC; NumPy/MNE) streams typed messages to ``collect`` (the model), which
builds each task's report; ``consume_screen`` writes them. Producer and consumer may run in different threads or
processes, so the next recording's decoding overlaps the model on the current one. The Python API
(``lumamba_cli.api``) runs the same two halves in one thread on a recording held in memory.

Nothing here prints: ``run_screen`` returns a :class:`ScreenRun` that the command renders.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from lumamba_cli import __version__, writers
from lumamba_cli.batch import (
    BatchResult,
    Cluster,
    Executor,
    FileResult,
    FoundRecording,
    Progress,
    find_recordings,
    run_batch,
    select_shard,
    write_summary,
)
from lumamba_cli.errors import BadInputError, LumambaError, OutputError, UsageError
from lumamba_cli.fileio import sha256_file
from lumamba_cli.heads import TaskHead, head_for_task, show_head
from lumamba_cli.montage import MontageReport, Registry, load_registry
from lumamba_cli.preprocess import CHUNKED_DEVIATION_NOTE, Mode, PreprocessPolicy, prepare, zscore
from lumamba_cli.qc import CHANNEL_METRICS, QCThresholds, QCWindow, eeg_channels, iter_qc
from lumamba_cli.recipes import Recipe, load_recipe
from lumamba_cli.recording import Reader, RecordingLike, open_recording
from lumamba_cli.report import (
    QC_TASK,
    WindowRow,
    build_report,
    input_summary,
    output_names,
    summarise,
    write_csv,
    write_report,
)
from lumamba_cli.writers import DEFAULT_FORMATS, OutputFormat

if TYPE_CHECKING:
    from lumamba_cli.inference import Scorer

SCORED_TYPES = ("bc", "mcc", "ml", "mc", "mmc")
QC_WINDOW_S = 5.0  # qc-only runs: the 5-s grid of most task recipes, so qc rows line up with model rows
QC_COMPUTED_ON = "raw file channels (unfiltered, native rate, µV)"


def chunked_deviation() -> str:
    """The statement every chunked-mode report carries: what differs from upstream, and by how much."""
    return CHUNKED_DEVIATION_NOTE + "; use --mode whole for upstream parity"


@dataclass(frozen=True)
class ScreenOptions:
    """Everything a screen run was asked to do (the CLI's options, typed)."""

    tasks: tuple[str, ...] = ()
    head: str | None = None
    out: Path | None = None
    glob: str | None = None
    skip_existing: bool = False
    jobs: int = 1
    device: str = "auto"
    backend: str = "auto"
    batch_size: int = 64
    threshold: float = 0.5
    mode: Mode | None = None  # None: the preprocessing each head was trained with (else auto)
    aliases: Path | None = None
    reader: Reader = Reader.auto
    files_from: tuple[str, ...] = ()  # more recordings, listed one per line (--files-from)
    shard: tuple[int, int] | None = None  # (K, N): only the recordings of shard K of N (job arrays)
    executor: Executor = Executor.local
    scheduler: str | None = None  # a Dask scheduler's address; None: a LocalCluster (executor dask)
    formats: frozenset[OutputFormat] = frozenset(DEFAULT_FORMATS)  # writers (--format); JSON always included


@dataclass(frozen=True)
class ScreenPlan:
    """The picklable part of a run that worker processes need to decode and preprocess a recording."""

    tasks: tuple[str, ...]  # model tasks, in order
    with_qc: bool  # also write the model-free <stem>.qc.* report
    policies: tuple[tuple[str, PreprocessPolicy], ...] = ()  # per model task
    recipes: tuple[tuple[str, Recipe], ...] = ()  # per model task, as its head needs it (recipe options applied)
    aliases: Path | None = None
    reader: Reader = Reader.auto
    qc_window_s: float = QC_WINDOW_S

    @property
    def report_tasks(self) -> list[str]:
        return ([QC_TASK] if self.with_qc else []) + list(self.tasks)

    def policy(self, task: str) -> PreprocessPolicy:
        return dict(self.policies)[task]

    def recipe(self, task: str) -> Recipe:
        return dict(self.recipes)[task]


# --------------------------------------------------------------------------------------- producer → consumer


@dataclass
class Header:
    input_info: dict[str, Any]
    start_time: datetime | None
    warnings: list[str]


@dataclass
class QcReport:
    """The model-free qc report's windows (no probabilities)."""

    rows: list[WindowRow]
    details: dict[str, Any]
    montage: dict[str, Any]
    skipped: list[str] = field(default_factory=list)  # segments too short for one qc window


@dataclass
class TaskStart:
    task: str
    montage: dict[str, Any]
    warnings: list[str]


@dataclass
class TaskQc:
    details: dict[str, Any]


@dataclass
class Block:
    data: np.ndarray | None  # (N, C, T) float32, not z-scored (None while spilled to disk by a worker)
    start_s: np.ndarray
    segment: np.ndarray
    sfreq: float
    mode: str
    qc: list[QCWindow]
    channel_names: list[str]
    positions: np.ndarray  # (C, 3) float32, paired row by row with data
    eps: float  # the recipe's z-score eps in the data's units (µV)


@dataclass
class TaskEnd:
    task: str
    mode: str | None
    skipped: list[str] = field(default_factory=list)  # segments too short for one window: the report says so


@dataclass
class TaskFailed:
    """One task could not run on this recording (its channels, its rate …); the other tasks go on."""

    task: str
    error: LumambaError  # pickles with its class and line, so it crosses from a worker process intact


Message = Union[Header, QcReport, TaskStart, TaskQc, Block, TaskEnd, TaskFailed]


def produce_screen(plan: ScreenPlan, found: FoundRecording) -> Iterator[Message]:
    """Decode and preprocess one recording file (runs in the producer thread or a worker process)."""
    with open_recording(found.path, reader=plan.reader) as recording:
        yield from produce(plan, recording, sha256_file(found.path))


def produce(plan: ScreenPlan, recording: RecordingLike, sha256: str) -> Iterator[Message]:
    """Header, qc windows, then per task its montage and window blocks; everything yielded is plain data."""
    yield Header(input_summary(recording, sha256), recording.start_time, list(recording.warnings))
    registry = load_registry(plan.aliases)
    if plan.with_qc:
        try:
            yield _qc_report(recording, registry.resolve(recording, None, on_missing="ignore"), plan.qc_window_s)
        except LumambaError as exc:
            yield TaskFailed(QC_TASK, exc)
    for task in plan.tasks:
        try:
            yield from _produce_task(plan, recording, registry, task)
        except LumambaError as exc:
            yield TaskFailed(task, exc)


def _produce_task(plan: ScreenPlan, recording: RecordingLike, registry: Registry, task: str) -> Iterator[Message]:
    """One model task's messages: its montage, the QC beside its preprocessing, its window blocks."""
    recipe = plan.recipe(task)
    task_input = prepare(recording, recipe, registry, plan.policy(task))
    derivation = task_input.require()
    yield TaskStart(task, montage_block(task_input.montage), list(task_input.montage.warnings))
    skipped: list[str] = []
    mode_used = None
    # QC of the raw channels runs beside the preprocessing (both mostly outside the GIL): a whole segment
    # must be preprocessed before its first window exists, so QC would otherwise sit on the critical path.
    with ThreadPoolExecutor(1, thread_name_prefix="lumamba-qc") as pool:
        pending_qc = pool.submit(_QcLookup, recording, derivation.file_channels, recipe.window_s)
        qc: _QcLookup | None = None
        for block in task_input.windows(on_skip=skipped.append):
            if qc is None:
                qc = pending_qc.result()
                yield TaskQc(qc.details)
            mode_used = block.mode
            yield Block(block.data, block.start_s, block.segment, block.sfreq, block.mode,
                        qc.assess(block.start_s, block.segment, block.data.shape[-1] / block.sfreq),
                        block.channel_names, block.positions, block.eps)
        if qc is None:
            yield TaskQc(pending_qc.result().details)
    yield TaskEnd(task, mode_used, skipped)


def montage_block(montage: MontageReport) -> dict[str, Any]:
    """The report's ``montage`` section: how every file channel resolved, and what the layout used."""
    rows = []
    for row in montage.rows:
        described = row.to_dict()
        rows.append({
            "raw": row.label,
            "canonical": described["canonical"],
            "source": described["source"] or "unknown",
            "used": row.used,
            "reason": row.reason or None,
            "kind": row.kind,
            "feeds": list(row.feeds),
            "position_m": described["position_m"],
            "bad": row.bad,
        })
    derivation = montage.derivation
    return {
        "layout": montage.layout,
        "verdict": montage.verdict or None,
        "used_channels": list(derivation.channel_names) if derivation is not None else [],
        "required": [q.to_dict() for q in montage.required],
        "positions_m": ([[round(float(v), 9) for v in p] for p in derivation.positions]
                        if derivation is not None else []),
        "rows": rows,
        "warnings": list(montage.warnings),
    }


def _qc_details(names: list[str], window_s: float, thresholds: QCThresholds, mains: float | None) -> dict[str, Any]:
    return {"window_s": window_s, "channels": names, "mains_hz": mains,
            "thresholds": thresholds.model_dump(mode="json"), "computed_on": QC_COMPUTED_ON}


def qc_reason(flags: list[str]) -> str:
    return "qc failed: " + "; ".join(flags) if flags else "qc failed"


def _qc_report(recording: RecordingLike, montage: MontageReport, window_s: float) -> QcReport:
    """Model-free QC (lumamba_cli.qc) on the file's EEG channels, windows from the start of each segment; the
    montage section says how each channel resolved (no layout), so a qc report shows what was recognised."""
    channels = eeg_channels(recording)
    thresholds = QCThresholds()
    rows: list[WindowRow] = []
    mains = None
    for block in iter_qc(recording, channels, window_s=window_s, thresholds=thresholds):
        mains = block.mains_hz if block.mains_hz is not None else mains
        for window in block.windows():
            rows.append(WindowRow(index=len(rows), start_s=window.start_s, end_s=window.start_s + window_s,
                                  segment=window.segment, qc_pass=window.passed, qc_flags=window.flags,
                                  qc_bad_channels=window.bad_channels, qc=window, excluded=not window.passed,
                                  excluded_reason=None if window.passed else qc_reason(window.flags)))
    details = _qc_details([recording.channels[i].label for i in channels], window_s, thresholds, mains)
    skipped = [f"{recording.path}: segment {index} at {seg.onset_s:.3f} s lasts {seg.duration_s:.3f} s, shorter "
               f"than one {window_s:g}-s qc window: no window from it"
               for index, seg in enumerate(recording.segments) if seg.duration_s + 1e-9 < window_s]
    return QcReport(rows, details, montage_block(montage), skipped)


class _QcLookup:
    """QC of a task's file channels on a raw grid of the task's window length, looked up per model window.

    A model window takes the QC of every raw-grid window it overlaps (in its segment): it passes only if they all
    pass, and carries all their flags. For the 5-s non-overlapping recipes the two grids coincide one to one.
    """

    def __init__(self, recording: RecordingLike, channels: Sequence[int], window_s: float):
        self.window_s = window_s
        thresholds = QCThresholds()
        self.windows: list[QCWindow] = []
        mains = None
        for block in iter_qc(recording, list(channels), window_s=window_s, thresholds=thresholds):
            mains = block.mains_hz if block.mains_hz is not None else mains
            self.windows.extend(block.windows())
        self.starts = np.asarray([w.start_s for w in self.windows], dtype=np.float64)
        self.segments = np.asarray([w.segment for w in self.windows], dtype=np.int64)
        self.details = _qc_details([recording.channels[i].label for i in channels], window_s, thresholds, mains)

    def assess(self, start_s: np.ndarray, segment: np.ndarray, width_s: float) -> list[QCWindow]:
        out = []
        tolerance = 1e-6
        for start, seg in zip(start_s, segment):
            lo = np.searchsorted(self.starts, start - self.window_s + tolerance, side="left")
            hi = np.searchsorted(self.starts, start + width_s - tolerance, side="left")
            hits = [self.windows[k] for k in range(lo, hi) if self.segments[k] == seg]
            if not hits:
                # The raw grid drops a segment's remainder; a model window there has no QC: say so, do not pass it.
                out.append(QCWindow(float(start), int(seg), False, ["qc unavailable"], {}, {}))
                continue
            bad: dict[str, list[str]] = {}
            for hit in hits:
                for name, chans in hit.bad_channels.items():
                    bad[name] = list(dict.fromkeys(bad.get(name, []) + chans))
            # the worst of the raw-grid windows a model window overlaps, channel by channel
            metrics = {name: np.max([h.channel_metrics[name] for h in hits], axis=0) for name in CHANNEL_METRICS}
            out.append(QCWindow(float(start), int(seg), all(h.passed for h in hits),
                                list(dict.fromkeys(f for h in hits for f in h.flags)), bad, metrics))
        return out


# ------------------------------------------------------------------------------------------------- the heads


@dataclass
class TaskModel:
    """A head ready to score one task, with what the report says about it.

    Its weights load in the background (``loading``): the first recording is decoded and preprocessed meanwhile,
    and ``scorer`` waits only when the first window is ready.
    """

    recipe: Recipe
    head: TaskHead
    loading: Future  # -> inference.Scorer
    policy: PreprocessPolicy
    preprocessing: dict[str, Any]  # what the report says about the policy: its source, what training used
    notes: list[str]  # warnings every report of this task carries (e.g. --mode differs from training)

    @property
    def task(self) -> str:
        return self.recipe.id

    @property
    def scorer(self) -> Scorer:
        return self.loading.result()

    @property
    def labels(self) -> list[str]:
        return list(self.recipe.labels)

    @property
    def positive_label(self) -> str | None:
        return self.recipe.labels[1] if self.recipe.classification_type == "bc" and len(self.recipe.labels) == 2 \
            else None

    def recipe_info(self, mode_used: str | None) -> dict[str, Any]:
        mode = mode_used or ("whole" if self.policy.mode is Mode.auto else self.policy.mode.value)
        return {
            "id": self.recipe.id, "hash": self.recipe.hash, "mode": mode, "preprocessing": self.preprocessing,
            "notes": list(self.notes), "window_s": self.recipe.window_s, "step_s": self.recipe.step_s,
            "target_sfreq": self.recipe.target_sfreq,
            "deviation": chunked_deviation() if mode == "chunked" else None,
        }

    def model_info(self) -> dict[str, Any]:
        return {**self.head.provenance(), **self.scorer.describe(),
                "classification_type": self.recipe.classification_type}


_BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="lumamba-load")


def _load_scorer(head: TaskHead, options: ScreenOptions) -> Scorer:
    from lumamba_cli.inference import Scorer

    return Scorer(head.load(), classification_type=head.recipe.classification_type, labels=head.recipe.labels,
                  device=options.device, backend=options.backend, batch_size=options.batch_size)


def screening_policy(head: TaskHead, requested: Mode | None) -> tuple[PreprocessPolicy, dict[str, Any], list[str]]:
    """The preprocessing to screen with: the head's training policy unless ``--mode`` names one. A forced mode
    that differs from training is allowed, but the head never saw such windows: say so."""
    trained = head.trained_policy
    notes: list[str] = []
    if trained is not None and requested is None:
        policy, source = trained, "head"
    else:
        policy = PreprocessPolicy(requested or Mode.auto)
        source = "--mode" if requested is not None else "default (the head records no training policy)"
        if trained is not None and trained.mode != policy.mode:
            notes.append(f"--mode {policy.mode} differs from the preprocessing this head was trained with "
                         f"({trained.mode}); probabilities may shift")
    described = {**policy.to_json(), "source": source, "trained_with": head.metadata.training.preprocessing}
    return policy, described, notes


def load_task_models(options: ScreenOptions) -> dict[str, TaskModel]:
    """Resolve one head per task and check it against its recipe before any recording is read, so a missing or
    mismatched head fails the run at once (exit 5) instead of once per file; the weights load in the background."""
    if options.head is not None and len(options.tasks) != 1:
        raise UsageError("--head picks the head of one task: give exactly one --task with it")
    if options.tasks and options.device not in ("auto", "cpu"):
        from lumamba_cli.inference import resolve_device

        resolve_device(options.device)  # an unusable --device fails now, not once the weights are loading
    models: dict[str, TaskModel] = {}
    for task in options.tasks:
        recipe = load_recipe(task)
        if recipe.classification_type not in SCORED_TYPES:
            raise UsageError(f"task '{task}' is a {recipe.classification_type} task; `lumamba screen` reports "
                             "class probabilities only (use `lumamba evaluate` for regression heads)")
        head = head_for_task(recipe, options.head)
        policy, described, notes = screening_policy(head, options.mode)
        loading = _BACKGROUND.submit(_load_scorer, head, options)
        models[recipe.id] = TaskModel(head.recipe, head, loading, policy, described, notes)
    return models


# -------------------------------------------------------------------------------------------------- consumer


@dataclass
class TaskReport:
    """One task's report for one recording: the rows, and the JSON document the writer stores as is."""

    task: str
    rows: list[WindowRow]
    labels: list[str]
    start_time: datetime | None
    document: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.document["summary"]


@dataclass
class RecordingReports:
    """Everything one recording's screen gave: a report per task that ran, and why the others could not."""

    reports: list[TaskReport]
    failures: dict[str, TaskFailed]


def collect(models: dict[str, TaskModel], threshold: float, items: Iterator[Message],
            windows_done: Callable[[int], None] = lambda n: None) -> RecordingReports:
    """Score the blocks one recording's producer sends and build each task's report (nothing is written)."""
    header = next(items, None)
    if not isinstance(header, Header):
        raise RuntimeError("the producer sent no header")
    reports: list[TaskReport] = []
    failures: dict[str, TaskFailed] = {}

    def add(task: str, rows: list[WindowRow], labels: list[str], positive: str | None, **blocks: Any) -> None:
        summary = summarise(rows, labels, threshold=threshold, positive_label=positive)
        document = build_report(task=task, input_info=header.input_info, rows=rows, labels=labels, summary=summary,
                                start_time=header.start_time, **blocks)
        reports.append(TaskReport(task, rows, labels, header.start_time, document))

    current: TaskStart | None = None
    rows: list[WindowRow] = []
    task_qc: dict[str, Any] | None = None
    for item in items:
        if isinstance(item, TaskFailed):
            failures[item.task] = item
            if current is not None and current.task == item.task:
                current = None  # its partial rows are dropped: a report is whole or absent
        elif isinstance(item, QcReport):
            windows_done(len(item.rows))
            add(QC_TASK, item.rows, [], None, qc=item.details, montage=item.montage,
                warnings=header.warnings + item.skipped)
        elif isinstance(item, TaskStart):
            current, rows, task_qc = item, [], None
        elif isinstance(item, TaskQc):
            task_qc = item.details
        elif isinstance(item, Block):
            if current is None:
                raise RuntimeError("the producer sent a block before its task")
            if len(item.start_s) == 0:
                continue
            scores = models[current.task].scorer.score(zscore(item.data, eps=item.eps), item.positions,
                                                       item.channel_names)
            width = item.data.shape[-1] / item.sfreq
            for k, qc in enumerate(item.qc):
                start = float(item.start_s[k])
                rows.append(WindowRow(
                    index=len(rows), start_s=start, end_s=start + width, segment=int(item.segment[k]),
                    probabilities=scores.probabilities[k], predicted=scores.predicted[k], qc_pass=qc.passed,
                    qc_flags=qc.flags, qc_bad_channels=qc.bad_channels, qc=qc, excluded=not qc.passed,
                    excluded_reason=None if qc.passed else qc_reason(qc.flags),
                ))
            windows_done(len(item.start_s))
        elif isinstance(item, TaskEnd):
            if current is None or current.task != item.task:
                raise RuntimeError(f"the producer ended task {item.task} out of order")
            model = models[item.task]
            output_labels = list(rows[0].probabilities) if rows and rows[0].probabilities else model.labels
            warnings = header.warnings + current.warnings + model.notes + item.skipped
            if not rows:
                warnings.append("the recording is shorter than one window of this task: no window was scored")
            add(item.task, rows, output_labels, model.positive_label, montage=current.montage,
                recipe=model.recipe_info(item.mode), model=model.model_info(), qc=task_qc, warnings=warnings)
            current = None
    if current is not None:
        raise RuntimeError(f"task {current.task} did not finish")
    return RecordingReports(reports, failures)


def summary_line(report: TaskReport) -> str:
    """One task's figures for the terminal, with the denominators a reader needs to weigh them."""
    summary = report.summary
    line = f"{report.task}: {summary['windows_used']} of {summary['windows_total']} windows used"
    positive = summary["positive"]
    if positive is not None and positive["mean_probability"] is not None:
        line += (f"; p({positive['label']}) mean {positive['mean_probability']:.2f}, "
                 f"≥ {summary['threshold']:g} in {100 * positive['fraction_above_threshold']:.0f}% of them, "
                 f"longest run {positive['longest_run_s']:g} s")
    return line


def write_task_report(found: FoundRecording, report: TaskReport,
                      formats: frozenset[OutputFormat] = frozenset(DEFAULT_FORMATS)) -> list[Path]:
    csv_name, json_name = output_names(found.stem, report.task)
    written = [write_csv(found.out_dir / csv_name, report.rows, report.labels, report.start_time)
               ] if OutputFormat.csv in formats else []
    written += writers.write_task(formats, found.out_dir, found.stem, report.document)
    # JSON last: its presence (with the manifest) marks the recording's task as finished.
    try:
        return [*written, write_report(found.out_dir / json_name, report.document)]
    except OutputError:  # the caller only knows the paths this returns: nothing may outlive its report
        for path in written:
            path.unlink(missing_ok=True)
        raise


def consume_screen(models: dict[str, TaskModel], threshold: float, progress: Progress, found: FoundRecording,
                   items: Iterator[Message], formats: frozenset[OutputFormat] = frozenset(DEFAULT_FORMATS)) -> FileResult:
    """Score one recording and write the reports of every task that ran (main thread)."""
    result = collect(models, threshold, items, progress.windows_done)
    outputs: list[Path] = []
    parts: dict[str, dict[str, Any]] = {}
    try:
        for report in result.reports:
            outputs.extend(write_task_report(found, report, formats))
            parts[report.task] = {"status": "ok", **manifest_figures(report)}
        documents = [(found.out_dir / output_names(found.stem, r.task)[1], r.document) for r in result.reports]
        outputs.extend(writers.write_recording(formats, found.out_dir, found.stem, documents))
    except OutputError:
        # a disk that fills up half-way must not leave this recording half reported: nothing of it stays
        for path in outputs:
            path.unlink(missing_ok=True)
        raise
    for task, failed in result.failures.items():
        parts[task] = {"status": "failed", "error": failed.error.line(), "error_code": int(failed.error.code)}
    failure = next((f.error for f in result.failures.values()), None)
    notes = [summary_line(r) for r in result.reports] + [f"{t}: failed: {f.error.line()}"
                                                         for t, f in result.failures.items()]
    return FileResult(outputs, sum(len(r.rows) for r in result.reports), notes, parts, failure)


def manifest_figures(report: TaskReport) -> dict[str, Any]:
    """A task's summary figures as the manifest line and summary.csv carry them."""
    summary = report.summary
    positive = summary["positive"]
    return {
        "windows_total": summary["windows_total"], "windows_used": summary["windows_used"],
        "qc_failed": summary["qc_failed"],
        "positive_label": summary["positive_label"],
        "mean_probability": positive["mean_probability"] if positive else None,
        "fraction_above_threshold": positive["fraction_above_threshold"] if positive else None,
        "longest_run_s": positive["longest_run_s"] if positive else None,
    }


# ------------------------------------------------------------------------------------------------------ a run


def expected_outputs(tasks: Sequence[str], with_csv: bool = True) -> Callable[[FoundRecording], list[str]]:
    def names(found: FoundRecording) -> list[str]:
        return [name for task in tasks for name in output_names(found.stem, task)[0 if with_csv else 1:]]

    return names


def estimate_windows(plan: ScreenPlan, found: FoundRecording) -> int:
    """Windows a recording will give, from the stored duration in its fixed header (256 bytes, no parsing of
    signals): enough for a progress bar's ETA; gaps and remainders make the real count slightly smaller."""
    grid = [(plan.qc_window_s, plan.qc_window_s)] if plan.with_qc else []
    grid += [(plan.recipe(t).window_s, plan.recipe(t).step_s) for t in plan.tasks]
    try:
        if not stat.S_ISREG(os.stat(found.path).st_mode):
            return 0  # a FIFO or a device: opening it could block, and the reader refuses it anyway
        with open(found.path, "rb") as handle:
            fixed = handle.read(256)
        duration = int(fixed[236:244].decode("ascii").strip()) * float(fixed[244:252].decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
    if not (math.isfinite(duration) and 0 <= duration < 1e9):
        return 0
    return sum(max(0, int((duration - window) // step) + 1) for window, step in grid if duration >= window)


def run_parameters(plan: ScreenPlan, models: dict[str, TaskModel], options: ScreenOptions) -> dict[str, Any]:
    """Per report task, everything besides the input that changes its reports: the manifest keeps it, so that
    --skip-existing redoes a recording whose threshold, head, encoder, recipe or preprocessing changed."""
    aliases = sha256_file(plan.aliases) if plan.aliases else None
    params: dict[str, Any] = {}
    if plan.with_qc:
        params[QC_TASK] = {"threshold": options.threshold, "aliases_sha256": aliases, "window_s": plan.qc_window_s}
    for task, model in models.items():
        policy = model.policy
        params[task] = {
            "threshold": options.threshold,
            "aliases_sha256": aliases,
            "recipe_hash": model.recipe.hash,
            "head_sha256": model.head.sha256,
            "encoder_sha256": model.head.metadata.encoder.sha256 if model.head.metadata.encoder else None,
            "preprocessing": [policy.mode.value, policy.chunk_s, policy.chunk_threshold_s],
            "device": options.device,
            "backend": str(options.backend),
        }
    return params


def identity(plan: ScreenPlan, models: dict[str, TaskModel], options: ScreenOptions) -> dict[str, Any]:
    """What must be the same wherever recordings of this run are screened: lumamba's version and, per task, the
    parameters that make its reports (recipe hash, head and encoder sha256 as read on that machine …)."""
    flat: dict[str, Any] = {"lumamba": __version__}
    for task, values in run_parameters(plan, models, options).items():
        flat.update({f"{task}.{key}": value for key, value in values.items()})
    return flat


@dataclass(frozen=True)
class ScreenJob:
    """A screen run as a Dask worker does it: loads its own heads once, then screens whole recordings."""

    options: ScreenOptions
    plan: ScreenPlan

    def load(self) -> "LoadedScreen":
        return LoadedScreen(self, load_task_models(self.options))


class LoadedScreen:
    def __init__(self, job: ScreenJob, models: dict[str, TaskModel]):
        self.job, self.models = job, models
        self.identity = identity(job.plan, models, job.options)

    def __call__(self, found: FoundRecording) -> FileResult:
        # The local path's two halves, one after the other: the same reports wherever this runs.
        return consume_screen(self.models, self.job.options.threshold, Progress(), found,
                              produce_screen(self.job.plan, found), self.job.options.formats)


@dataclass
class ScreenRun:
    """What a screen run did: the batch outcome and the models it used (for the command to render)."""

    batch: BatchResult
    models: dict[str, TaskModel]
    plan: ScreenPlan
    found: list[FoundRecording]

    @property
    def exit_code(self) -> int:
        return self.batch.exit_code

    options: ScreenOptions

    def notes(self) -> list[str]:
        """Warnings that hold for the whole run (each head's policy notes; an empty shard)."""
        notes = [f"{model.task}: {note}" for model in self.models.values() for note in model.notes]
        shard = self.options.shard
        if shard is not None and not self.found:
            notes.append(f"shard {shard[0]} of {shard[1]} holds none of the recordings found")
        return notes


def plan_run(options: ScreenOptions) -> tuple[ScreenOptions, ScreenPlan, dict[str, TaskModel]]:
    """The tasks, heads and per-task preprocessing of a run; everything that can fail before a file is read."""
    # `--task qc` asks for the model-free report, which every run without a model task writes anyway.
    recipes = [load_recipe(t) for t in options.tasks]
    embedding = [r.id for r in recipes if r.purpose == "embed"]
    if embedding:
        raise UsageError(f"task '{embedding[0]}' has no scores to screen: use `lumamba embed`")
    model_tasks = tuple(dict.fromkeys(r.id for r in recipes if r.purpose == "model"))
    qc_requested = len(model_tasks) < len(recipes)
    if options.head is not None and not model_tasks:
        model_tasks = (show_head(options.head).task,)  # --head alone: the task its metadata names
    options = dataclasses.replace(options, tasks=model_tasks)
    if options.aliases is not None:
        load_registry(options.aliases)  # a missing or malformed --aliases file fails now, once
    models = load_task_models(options)
    plan = ScreenPlan(tasks=model_tasks, with_qc=qc_requested or not model_tasks,
                      policies=tuple((task, m.policy) for task, m in models.items()),
                      recipes=tuple((task, m.recipe) for task, m in models.items()), aliases=options.aliases,
                      reader=options.reader)
    return options, plan, models


def run_screen(paths: Sequence[Path], options: ScreenOptions, *, progress: Progress | None = None,
               eta: bool = False) -> ScreenRun:
    """``lumamba screen``: every recording under ``paths``, each task, reports and manifest. A single named file
    that fails raises its own error (exit 3/4/5 say more than "6: some failed")."""
    everything = find_recordings(paths, options.glob, options.out, files_from=options.files_from)
    if not everything:
        where = ", ".join(str(p) for p in [*paths, *options.files_from][:3])
        raise BadInputError("no .edf/.bdf recordings found" + (f" matching {options.glob!r}" if options.glob else ""),
                            path=where)
    # A shard may be empty (more array jobs than recordings): that job succeeds with nothing to do.
    found = select_shard(everything, options.shard)
    options, plan, models = plan_run(options)
    progress = progress or Progress()
    result = run_batch(
        found,
        functools.partial(produce_screen, plan),
        functools.partial(consume_screen, models, options.threshold, progress, formats=options.formats),
        tasks=plan.report_tasks,
        expected_outputs=expected_outputs(plan.report_tasks, OutputFormat.csv in options.formats),
        skip_existing=options.skip_existing,
        jobs=options.jobs,
        progress=progress,
        estimate_windows=functools.partial(estimate_windows, plan) if eta else None,
        params=run_parameters(plan, models, options),
        shard=options.shard,
        cluster=Cluster(ScreenJob(options, plan), identity(plan, models, options), options.scheduler,
                        options.jobs if options.jobs > 1 else None)
        if options.executor is Executor.dask else None,
    )
    for out_dir in sorted({item.out_dir for item in found}):
        write_summary(out_dir)
        writers.write_folder(options.formats, out_dir)
    if len(found) == 1 and found[0].explicit and result.outcomes[0].status == "failed":
        failure = result.outcomes[0].exception
        if failure is not None:
            raise failure
    return ScreenRun(result, models, plan, found, options)
