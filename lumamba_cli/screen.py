"""The screen job: one recording → QC and task scores → reports. ``batch.py`` runs it over files and folders.

``produce_screen`` (decode, montage, preprocess, QC; NumPy/MNE) streams items to ``consume_screen`` (the model and
the report writers), so the next recording's decoding overlaps the model on the current one.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from lumamba_cli.batch import (
    BatchResult,
    FileOutcome,
    FileResult,
    FoundRecording,
    Progress,
    find_recordings,
    run_batch,
)
from lumamba_cli.errors import BadInputError


SCORED_TYPES = ("bc", "mcc", "ml", "mc", "mmc")
QC_WINDOW_S = 5.0  # qc-only runs: the 5-s grid of most task recipes, so qc rows line up with model rows


def chunked_deviation() -> str:
    """The statement every chunked-mode report carries: what differs from upstream, and by how much."""
    from lumamba_cli.preprocess import CHUNKED_DEVIATION_NOTE

    return CHUNKED_DEVIATION_NOTE + "; use --mode whole for upstream parity"


@dataclass(frozen=True)
class ScreenOptions:
    """Everything ``lumamba screen`` was asked to do (the CLI's options, typed)."""

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
    mode: str | None = None  # None: the preprocessing each head was trained with (else "auto")
    aliases: Path | None = None
    quiet: bool = False
    json_summary: bool = False


@dataclass(frozen=True)
class ScreenPlan:
    """The picklable part of a run that worker processes need to decode and preprocess a recording."""

    tasks: tuple[str, ...]
    mode: str = "auto"
    aliases: str | None = None
    # per task (task, mode, chunk_s, chunk_threshold_s): the preprocessing policy its head was trained with,
    # unless --mode overrides it; tasks not listed use ``mode`` with the default chunking
    policies: tuple[tuple[str, str, float, float], ...] = ()
    qc_window_s: float = QC_WINDOW_S
    with_qc: bool = True  # also write the model-free <stem>.qc.* report

    @property
    def report_tasks(self) -> list[str]:
        from lumamba_cli.report import QC_TASK

        return ([QC_TASK] if self.with_qc else []) + list(self.tasks)


@dataclass
class _Header:
    input_info: dict[str, Any]
    start_time: Any
    warnings: list[str]


@dataclass
class _QcWindows:
    rows: list[Any]  # report.WindowRow, without probabilities
    details: dict[str, Any]
    montage: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)  # segments too short for one qc window


@dataclass
class _TaskStart:
    task: str
    montage: dict[str, Any]
    channel_names: list[str]
    positions: Any  # (C, 3) float32
    warnings: list[str]


@dataclass
class _Block:
    data: Any  # (N, C, T) float32, not z-scored
    start_s: Any
    segment: Any
    sfreq: float
    mode: str
    qc: list[tuple[bool, list[str], dict[str, list[str]]]]
    channel_names: list[str]
    positions: Any  # (C, 3) float32, paired row by row with data
    eps: float  # the recipe's z-score eps in the data's units (µV)


@dataclass
class _TaskQc:
    details: dict[str, Any]


@dataclass
class _TaskEnd:
    task: str
    mode: str | None
    skipped: list[str] = field(default_factory=list)  # segments too short for one window: the report says so


def expected_outputs(tasks: Sequence[str]) -> Callable[[FoundRecording], list[str]]:
    from lumamba_cli.report import output_names

    def names(found: FoundRecording) -> list[str]:
        result: list[str] = []
        for task in tasks:
            result.extend(output_names(found.stem, task))
        return result

    return names


def produce_screen(plan: ScreenPlan, found: FoundRecording) -> Iterator[Any]:
    """Decode and preprocess one recording: header, qc windows, then per task its montage and window blocks.

    Runs in the producer thread or a worker process; everything it yields is plain data (picklable).
    """
    from lumamba_cli.recording import open_recording
    from lumamba_cli.report import input_summary, sha256_file

    with open_recording(found.path) as recording:
        yield _Header(input_summary(recording, sha256_file(found.path)), recording.start_time,
                      list(recording.warnings))
        from lumamba_cli.montage import get_layout, load_registry

        registry = load_registry(Path(plan.aliases) if plan.aliases else None)
        if plan.with_qc:
            qc_windows = _qc_only_windows(recording, plan.qc_window_s)
            # No layout: just say how each channel resolved, so a qc report shows what was recognised.
            qc_windows.montage = _montage_block(registry.resolve(recording, None, on_missing="ignore"))
            yield qc_windows
        if not plan.tasks:
            return
        from lumamba_cli.preprocess import iter_windows
        from lumamba_cli.recipes import load_recipe

        for task in plan.tasks:
            recipe = load_recipe(task)
            layout = get_layout(recipe.layout, registry=registry)
            montage = registry.resolve(recording, layout, on_missing="raise")
            if not montage.usable or montage.derivation is None:
                from lumamba_cli.errors import MontageError

                raise MontageError(montage.verdict or f"channels cannot satisfy layout {layout.name}",
                                   path=found.path)
            derivation = montage.derivation
            yield _TaskStart(task, _montage_block(montage), list(derivation.channel_names),
                             np.asarray(derivation.positions, dtype=np.float32), list(montage.warnings))
            # QC of the raw channels runs beside the preprocessing (both mostly outside the GIL): a whole segment
            # must be preprocessed before its first window exists, so QC would otherwise sit on the critical path.
            with ThreadPoolExecutor(1, thread_name_prefix="lumamba-qc") as pool:
                pending_qc = pool.submit(_QcLookup, recording, derivation.file_channels, float(recipe.window_s))
                qc = None
                mode_used = None
                skipped: list[str] = []
                policy = next((p for p in plan.policies if p[0] == task), (task, plan.mode, None, None))
                chunking = {"chunk_s": policy[2], "chunk_threshold_s": policy[3]} if policy[2] is not None else {}
                for block in iter_windows(recording, recipe, derivation, mode=policy[1], on_skip=skipped.append,
                                          **chunking):
                    if qc is None:
                        qc = pending_qc.result()
                        yield _TaskQc(qc.details)
                    mode_used = block.mode
                    names = list(block.channel_names or derivation.channel_names)
                    positions = block.positions if block.positions is not None else derivation.positions
                    yield _Block(block.data, np.asarray(block.start_s, dtype=np.float64),
                                 np.asarray(block.segment), float(block.sfreq), block.mode,
                                 qc.assess(np.asarray(block.start_s, dtype=np.float64), np.asarray(block.segment),
                                           block.data.shape[-1] / float(block.sfreq)), names,
                                 np.asarray(positions, dtype=np.float32), float(block.eps))
                if qc is None:
                    yield _TaskQc(pending_qc.result().details)
            yield _TaskEnd(task, mode_used, skipped)


def _montage_block(montage: Any) -> dict[str, Any]:
    rows = []
    for row in montage.rows:
        described = row.to_dict()
        rows.append({
            "raw": described["label"],
            "canonical": described.get("canonical"),
            "source": str(described.get("source") or "unknown"),
            "used": bool(described.get("used")),
            "reason": described.get("reason") or None,
            "kind": described.get("kind"),
            "feeds": list(described.get("feeds") or []),
        })
    derivation = getattr(montage, "derivation", None)
    return {
        "layout": montage.layout,
        "verdict": montage.verdict or None,
        "used_channels": list(derivation.channel_names) if derivation is not None else [],
        "rows": rows,
        "warnings": list(getattr(montage, "warnings", [])),
    }


def _qc_only_windows(recording: Any, window_s: float) -> _QcWindows:
    """Model-free QC (lumamba_cli.qc) on the file's EEG channels, windows from the start of each segment."""
    from lumamba_cli.qc import QCThresholds, eeg_channels, iter_qc
    from lumamba_cli.report import WindowRow

    channels = eeg_channels(recording)
    thresholds = QCThresholds()
    rows: list[WindowRow] = []
    mains = None
    for block in iter_qc(recording, channels, window_s=window_s, thresholds=thresholds):
        mains = block.mains_hz if block.mains_hz is not None else mains
        for described in block.rows():
            flags = _split_flags(described["qc_flags"])
            start = described["start_s"]
            rows.append(WindowRow(index=len(rows), start_s=start, end_s=start + window_s,
                                  segment=described["segment"], qc_pass=described["qc_pass"], qc_flags=flags,
                                  qc_bad_channels=described["bad_channels"], excluded=not described["qc_pass"],
                                  excluded_reason=_qc_reason(flags) if not described["qc_pass"] else None))
    details = _qc_details(recording, channels, window_s, thresholds, mains)
    skipped = [f"{recording.path}: segment {index} at {seg.onset_s:.3f} s lasts {seg.duration_s:.3f} s, shorter "
               f"than one {window_s:g}-s qc window: no window from it"
               for index, seg in enumerate(recording.segments) if seg.duration_s + 1e-9 < window_s]
    return _QcWindows(rows, details, skipped=skipped)


def _split_flags(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(";") if part.strip()]


def _qc_reason(flags: list[str]) -> str:
    return "qc failed: " + "; ".join(flags) if flags else "qc failed"


def _qc_details(recording: Any, channels: Sequence[int], window_s: float, thresholds: Any,
                mains: float | None) -> dict[str, Any]:
    return {
        "window_s": window_s,
        "channels": [recording.channels[i].label for i in channels],
        "mains_hz": mains,
        "thresholds": thresholds.model_dump(mode="json"),
        "computed_on": "raw file channels (unfiltered, native rate, µV)",
    }


class _QcLookup:
    """QC of a task's file channels on a raw grid of the task's window length, looked up per model window.

    A model window takes the QC of every raw-grid window it overlaps (in its segment): it passes only if they all
    pass, and carries all their flags. For the 5-s non-overlapping recipes the two grids coincide one to one.
    """

    def __init__(self, recording: Any, channels: Sequence[int], window_s: float):
        from lumamba_cli.qc import QCThresholds, iter_qc

        self.window_s = window_s
        thresholds = QCThresholds()
        starts, segments, passes, flags, bad = [], [], [], [], []
        mains = None
        for block in iter_qc(recording, list(channels), window_s=window_s, thresholds=thresholds):
            mains = block.mains_hz if block.mains_hz is not None else mains
            for described in block.rows():
                starts.append(described["start_s"])
                segments.append(described["segment"])
                passes.append(described["qc_pass"])
                flags.append(_split_flags(described["qc_flags"]))
                bad.append(described["bad_channels"])
        self.starts = np.asarray(starts, dtype=np.float64)
        self.segments = np.asarray(segments, dtype=np.int64)
        self.passes, self.flags, self.bad = passes, flags, bad
        self.details = _qc_details(recording, channels, window_s, thresholds, mains)

    def assess(self, start_s: np.ndarray, segment: np.ndarray, width_s: float
               ) -> list[tuple[bool, list[str], dict[str, list[str]]]]:
        out = []
        tolerance = 1e-6
        for start, seg in zip(start_s, segment):
            lo = np.searchsorted(self.starts, start - self.window_s + tolerance, side="left")
            hi = np.searchsorted(self.starts, start + width_s - tolerance, side="left")
            hits = [k for k in range(lo, hi) if self.segments[k] == seg]
            if not hits:
                # The raw grid drops a segment's remainder; a model window there has no QC: say so, do not pass it.
                out.append((False, ["qc unavailable"], {}))
                continue
            passed = all(self.passes[k] for k in hits)
            flags = list(dict.fromkeys(f for k in hits for f in self.flags[k]))
            bad: dict[str, list[str]] = {}
            for k in hits:
                for name, chans in self.bad[k].items():
                    bad[name] = list(dict.fromkeys(bad.get(name, []) + chans))
            out.append((passed, flags, bad))
        return out


@dataclass
class TaskModel:
    """A head ready to score one task, with what the report says about it.

    Its weights load in the background (``loading``): the first recording is decoded and preprocessed meanwhile,
    and ``scorer`` waits only when the first window is ready.
    """

    task: str
    loading: Future  # -> inference.Scorer
    labels: list[str]
    classification_type: str
    positive_label: str | None
    recipe_info: dict[str, Any]
    model_info: dict[str, Any]
    policy: tuple[str, str, float, float] | None = None  # (task, mode, chunk_s, chunk_threshold_s)

    @property
    def scorer(self) -> Any:
        return self.loading.result()


def _summary_line(task: str, summary: dict[str, Any]) -> str:
    """One task's figures for the terminal table, with the denominators a reader needs to weigh them."""
    line = f"{task}: {summary['windows_used']} of {summary['windows_total']} windows used"
    positive = summary.get("positive")
    if positive is not None and positive.get("mean_probability") is not None:
        line += (f"; p({positive['label']}) mean {positive['mean_probability']:.2f}, "
                 f"≥ {summary['threshold']:g} in {100 * positive['fraction_above_threshold']:.0f}% of them, "
                 f"longest run {positive['longest_run_s']:g} s")
    return line


def consume_screen(models: dict[str, TaskModel], threshold: float, progress: Progress,
                   found: FoundRecording, items: Iterator[Any]) -> FileResult:
    """Score the blocks one recording's producer sends, and write its reports (main thread)."""
    from lumamba_cli.preprocess import zscore
    from lumamba_cli.report import (QC_TASK, WindowRow, build_report, output_names, summarise, write_csv,
                                    write_json)

    header = next(items, None)
    if not isinstance(header, _Header):
        raise RuntimeError(f"{found.path}: the producer sent no header")
    outputs: list[Path] = []
    windows = 0
    notes: list[str] = []

    def write(task: str, rows: list[WindowRow], labels: list[str], positive: str | None, **blocks: Any) -> None:
        csv_name, json_name = output_names(found.stem, task)
        summary = summarise(rows, labels, threshold=threshold, positive_label=positive)
        report = build_report(task=task, input_info=header.input_info, rows=rows, labels=labels, summary=summary,
                              start_time=header.start_time, **blocks)
        notes.append(_summary_line(task, summary))
        # JSON last: its presence (with the manifest) marks the recording's task as finished.
        outputs.append(write_csv(found.out_dir / csv_name, rows, labels, header.start_time))
        outputs.append(write_json(found.out_dir / json_name, report))

    current: _TaskStart | None = None
    rows: list[WindowRow] = []
    task_qc: dict[str, Any] | None = None
    for item in items:
        if isinstance(item, _QcWindows):
            windows += len(item.rows)
            progress.windows_done(len(item.rows))
            write(QC_TASK, item.rows, [], None, qc=item.details, montage=item.montage,
                  warnings=header.warnings + item.skipped)
        elif isinstance(item, _TaskStart):
            current, rows, task_qc = item, [], None
        elif isinstance(item, _TaskQc):
            task_qc = item.details
        elif isinstance(item, _Block):
            assert current is not None, "block before task start"
            model = models[current.task]
            if len(item.start_s) == 0:
                continue
            scores = model.scorer.score(zscore(item.data, eps=item.eps), item.positions, item.channel_names)
            width = item.data.shape[-1] / item.sfreq
            for k in range(len(item.start_s)):
                passed, flags, bad = item.qc[k]
                start = float(item.start_s[k])
                rows.append(WindowRow(
                    index=len(rows), start_s=start, end_s=start + width, segment=int(item.segment[k]),
                    probabilities=scores.probabilities[k], label=scores.labels[k], qc_pass=passed,
                    qc_flags=list(flags), qc_bad_channels=bad, excluded=not passed,
                    excluded_reason=_qc_reason(flags) if not passed else None,
                ))
            windows += len(item.start_s)
            progress.windows_done(len(item.start_s))
        elif isinstance(item, _TaskEnd):
            assert current is not None and current.task == item.task
            model = models[item.task]
            recipe_info = dict(model.recipe_info)
            recipe_info["mode"] = item.mode or ("whole" if model.recipe_info.get("mode") == "auto" else
                                                model.recipe_info.get("mode", "whole"))
            recipe_info["deviation"] = chunked_deviation() if recipe_info["mode"] == "chunked" else None
            output_labels = list(rows[0].probabilities) if rows and rows[0].probabilities else list(model.labels)
            warnings = header.warnings + current.warnings + list(recipe_info.get("notes") or []) + item.skipped
            if not rows:
                warnings.append("the recording is shorter than one window of this task: no window was scored")
            write(item.task, rows, output_labels, model.positive_label, montage=current.montage,
                  recipe=recipe_info, model=dict(model.model_info, **model.scorer.describe(),
                                                 classification_type=model.classification_type),
                  qc=task_qc, warnings=warnings)
            current = None
    if current is not None:
        raise RuntimeError(f"{found.path}: task {current.task} did not finish")
    return FileResult(outputs, windows, notes)


_BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="lumamba-load")


def _load_scorer(head_path: Path, encoder_file: Path | None, kind: str, labels: list[str], options: ScreenOptions):
    from lumamba_cli.inference import Scorer
    from lumamba_cli.model.checkpoint import load_head

    model, _ = load_head(head_path, encoder_path=encoder_file)
    return Scorer(model, classification_type=kind, labels=labels, device=options.device, backend=options.backend,
                  batch_size=options.batch_size)


def load_task_models(options: ScreenOptions) -> dict[str, TaskModel]:
    """Resolve one head per task and check it against its recipe before any recording is read, so a missing or
    mismatched head fails the run at once (exit 5) instead of once per file; the weights load in the background."""
    from lumamba_cli.errors import UsageError
    from lumamba_cli.model.checkpoint import read_head_metadata
    from lumamba_cli.recipes import load_recipe
    from lumamba_cli.weights import check_head_matches, encoder_path, resolve_head, sha256_file

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
        head_path = resolve_head(task, options.head, recipe=recipe)
        header_meta = read_head_metadata(head_path)
        check_head_matches(header_meta, recipe, path=head_path)
        encoder_file = None
        if not header_meta.contains_encoder and header_meta.encoder is not None:
            # A head-only file: the official encoder it was fine-tuned from must be present and verified (found
            # by content, so an encoder imported under another name still counts).
            encoder_file = encoder_path(header_meta.encoder.name, sha256=header_meta.encoder.sha256)
        labels = [str(label) for label in (_get(header_meta, "labels") or _get(recipe, "labels") or [])]
        kind = str(_get(header_meta, "classification_type") or _get(recipe, "classification_type") or "bc")
        loading = _BACKGROUND.submit(_load_scorer, head_path, encoder_file, kind, labels, options)
        encoder = _get(header_meta, "encoder") or {}
        if hasattr(encoder, "model_dump"):
            encoder = encoder.model_dump(mode="json")
        policy, preprocessing, notes = _preprocessing_policy(task, options.mode, _get(header_meta, "training") or {})
        models[task] = TaskModel(
            task=task,
            loading=loading,
            labels=labels,
            classification_type=kind,
            positive_label=labels[1] if kind == "bc" and len(labels) == 2 else None,
            recipe_info={
                "id": str(_get(recipe, "id") or task),
                "hash": str(_get(recipe, "hash")),
                "mode": policy[1],
                "preprocessing": preprocessing,
                "notes": notes,
                "window_s": _get(recipe, "window_s"),
                "step_s": _get(recipe, "step_s"),
                "target_sfreq": _get(recipe, "target_sfreq"),
            },
            model_info={
                "encoder": {
                    "name": _str_or_none(_get(encoder, "name")),
                    # None: the head file carries its own encoder weights (fine-tuned end to end).
                    "file": str(encoder_file) if encoder_file is not None else None,
                    "sha256": _str_or_none(_get(encoder, "sha256")),
                    "embedded_in_head": bool(header_meta.contains_encoder),
                },
                "head": {"id": Path(head_path).stem, "sha256": sha256_file(head_path), "file": str(head_path)},
            },
            policy=policy,
        )
    return models


def _preprocessing_policy(task: str, requested: str | None, training: dict) -> tuple[tuple, dict, list[str]]:
    """The preprocessing to screen ``task`` with: the head's training policy unless ``--mode`` names one.
    A forced mode that differs from training is allowed, but the head never saw such windows: say so."""
    from lumamba_cli.preprocess import DEFAULT_CHUNK_S, DEFAULT_CHUNK_THRESHOLD_S

    trained = training.get("preprocessing") if isinstance(training, dict) else None
    notes: list[str] = []
    if trained and requested is None:
        policy = (task, str(trained["mode"]), float(trained.get("chunk_s", DEFAULT_CHUNK_S)),
                  float(trained.get("chunk_threshold_s", DEFAULT_CHUNK_THRESHOLD_S)))
        source = "head"
    else:
        policy = (task, requested or "auto", float(DEFAULT_CHUNK_S), float(DEFAULT_CHUNK_THRESHOLD_S))
        source = "--mode" if requested is not None else "default (the head records no training policy)"
        if trained and requested is not None and str(trained.get("mode")) != requested:
            notes.append(f"--mode {requested} differs from the preprocessing this head was trained with "
                         f"({trained.get('mode')}); probabilities may shift")
    preprocessing = {"mode": policy[1], "chunk_s": policy[2], "chunk_threshold_s": policy[3], "source": source,
                     "trained_with": dict(trained) if trained else None}
    return policy, preprocessing, notes


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _estimate_windows(window_plan: Sequence[tuple[float, float]], found: FoundRecording) -> int:
    """Windows a recording will give, from the stored duration in its fixed header (256 bytes, no parsing of
    signals): enough for a progress bar's ETA; gaps and remainders make the real count slightly smaller."""
    try:
        with open(found.path, "rb") as handle:
            fixed = handle.read(256)
        duration = int(fixed[236:244].decode("ascii").strip()) * float(fixed[244:252].decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return 0
    return sum(max(0, int((duration - window) // step) + 1) for window, step in window_plan if duration >= window)


class RichProgress(Progress):
    """Files and windows with an ETA, on stderr (only used when stderr is a terminal)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as _RichProgress

        from lumamba_cli.console import err

        self._bar = _RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=err, transient=True)
        self._files = None
        self._windows = None

    def start(self, total_files: int) -> None:
        self._bar.start()
        self._files = self._bar.add_task("recordings", total=total_files)
        self._windows = self._bar.add_task("windows", total=None)

    def expect_windows(self, total: int | None) -> None:
        self._bar.update(self._windows, total=total)

    def file_started(self, found: FoundRecording) -> None:
        self._bar.update(self._files, description=f"recordings ({found.path.name})")

    def windows_done(self, count: int) -> None:
        self._bar.advance(self._windows, count)

    def file_finished(self, outcome: FileOutcome) -> None:
        self._bar.advance(self._files, 1)

    def stop(self) -> None:
        self._bar.stop()


def run_parameters(plan: ScreenPlan, models: dict[str, TaskModel], options: ScreenOptions) -> dict[str, Any]:
    """Per report task, everything besides the input that changes its reports: the manifest keeps it, so that
    --skip-existing redoes a recording whose threshold, head, encoder, recipe or preprocessing changed."""
    from lumamba_cli.fileio import sha256_file
    from lumamba_cli.report import QC_TASK

    aliases = sha256_file(Path(plan.aliases)) if plan.aliases else None
    params: dict[str, Any] = {}
    if plan.with_qc:
        params[QC_TASK] = {"threshold": options.threshold, "aliases_sha256": aliases, "window_s": plan.qc_window_s}
    for task, model in models.items():
        params[task] = {
            "threshold": options.threshold,
            "aliases_sha256": aliases,
            "recipe_hash": model.recipe_info.get("hash"),
            "head_sha256": model.model_info["head"]["sha256"],
            "encoder_sha256": model.model_info["encoder"].get("sha256"),
            "preprocessing": list(model.policy[1:]) if model.policy is not None else None,
            "device": options.device,
            "backend": options.backend,
        }
    return params


def run_screen(paths: Sequence[Path], options: ScreenOptions) -> int:
    """``lumamba screen``: returns the exit code (or raises the error of a single named file)."""
    import dataclasses
    import functools

    from lumamba_cli import DISCLAIMER, console
    from lumamba_cli.recipes import load_recipe

    console.show_disclaimer(options.quiet)
    found = find_recordings(paths, options.glob, options.out)
    if not found:
        raise BadInputError("no .edf/.bdf recordings found" + (f" matching {options.glob!r}" if options.glob else ""),
                            path=", ".join(str(p) for p in paths))
    # `--task qc` asks for the model-free report, which every run without a model task writes anyway.
    model_tasks = tuple(dict.fromkeys(load_recipe(t).id for t in options.tasks if load_recipe(t).purpose != "qc"))
    qc_requested = len(model_tasks) < len(options.tasks)
    if options.head is not None and not model_tasks:
        from lumamba_cli.weights import show_head

        model_tasks = (show_head(options.head).task,)  # --head alone: the task its metadata names
    options = dataclasses.replace(options, tasks=model_tasks)
    models = load_task_models(options)
    for model in models.values():
        for note in model.recipe_info.get("notes") or []:
            if not options.quiet:
                console.err.print(f"[yellow]warning:[/] {model.task}: {note}", highlight=False)
    plan = ScreenPlan(tasks=model_tasks, mode=options.mode or "auto", with_qc=qc_requested or not model_tasks,
                      policies=tuple(m.policy for m in models.values() if m.policy is not None),
                      aliases=str(options.aliases) if options.aliases else None)
    show_progress = not options.quiet and console.err.is_terminal
    progress: Progress = RichProgress() if show_progress else Progress()
    window_plan = [(QC_WINDOW_S, QC_WINDOW_S)] if plan.with_qc else []
    window_plan += [(float(load_recipe(t).window_s), float(load_recipe(t).step_s)) for t in plan.tasks]
    result = run_batch(
        found,
        functools.partial(produce_screen, plan),
        functools.partial(consume_screen, models, options.threshold, progress),
        tasks=plan.report_tasks,
        expected_outputs=expected_outputs(plan.report_tasks),
        skip_existing=options.skip_existing,
        jobs=options.jobs,
        progress=progress,
        estimate_windows=functools.partial(_estimate_windows, window_plan) if show_progress else None,
        params=run_parameters(plan, models, options),
    )
    if len(found) == 1 and found[0].explicit and result.outcomes[0].status == "failed":
        # One named file: its own exit code (3 bad input, 4 montage, 5 weights) says more than "6: some failed".
        failure = result.outcomes[0].exception
        if failure is not None:
            raise failure
    if not options.quiet:
        _print_outcomes(result, models)
    if options.json_summary:
        import sys

        summary = result.summary()
        summary["disclaimer"] = DISCLAIMER
        summary["out"] = sorted({str(item.out_dir) for item in found})
        summary["tasks"] = plan.report_tasks
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return result.exit_code


def _print_outcomes(result: BatchResult, models: dict[str, TaskModel]) -> None:
    from rich.table import Table

    from lumamba_cli.console import err

    table = Table(title="lumamba screen")
    table.add_column("recording")
    table.add_column("status")
    table.add_column("windows\n(all tasks)", justify="right")
    table.add_column("detail")
    colours = {"ok": "green", "failed": "red", "skipped": "cyan"}
    for outcome in result.outcomes:
        detail = outcome.error or "\n".join(outcome.notes) or (
            "reports exist (--skip-existing)" if outcome.status == "skipped" else "")
        table.add_row(str(outcome.found.path.name), f"[{colours[outcome.status]}]{outcome.status}[/]",
                      str(outcome.windows), detail)
    err.print(table)
    for model in models.values():
        described = model.scorer.describe()
        err.print(f"{model.task}: backend {described['backend']}, device {described['device']}, "
                  f"precision {described['precision']}")
    dirs = sorted({str(o.found.out_dir) for o in result.outcomes})
    err.print(f"{result.count('ok')} ok, {result.count('skipped')} skipped, {result.count('failed')} failed; "
              f"reports and manifest.jsonl in {', '.join(dirs)}")
