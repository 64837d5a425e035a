"""The Python API for notebooks: :func:`screen` and :func:`encode` on a file, an ``mne.io.BaseRaw`` or an array.

The CLI is a thin layer over the same calls: ``screen`` runs the screen job's two halves
(``screening.produce`` → ``screening.collect``) in this thread and writes nothing; ``encode`` prepares windows with
``preprocess.prepare`` and runs the encoder as ``lumamba embed`` does. Research use only: not a medical device.

    import lumamba_cli as lm
    result = lm.screen(raw, tasks=["qc", "tuab"], head="tuab.safetensors")
    result["tuab"].windows            # a DataFrame: times, probabilities, predicted, QC
    emb = lm.encode("rec.edf")        # Embeddings: (windows, 384) mean-pooled encoder outputs
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from lumamba_cli import DISCLAIMER
from lumamba_cli.errors import LumambaError
from lumamba_cli import embedding
from lumamba_cli.embedding import Embeddings, Pool, load_encoder
from lumamba_cli.fileio import sha256_file
from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import Mode, PreprocessPolicy
from lumamba_cli.recipes import load_recipe
from lumamba_cli.recording import ArrayRecording, Reader, RecordingLike, open_recording
from lumamba_cli.report import WindowRow, probability_column
from lumamba_cli.screening import ScreenOptions, collect, plan_run, produce

if TYPE_CHECKING:
    import pandas as pd

Source = Any  # str | os.PathLike | mne.io.BaseRaw | np.ndarray (with ch_names and sfreq)


@dataclass
class TaskResult:
    """One task's result for one recording."""

    task: str
    report: dict[str, Any]  # exactly the JSON document `lumamba screen` writes
    rows: list[WindowRow]
    labels: list[str]

    @property
    def summary(self) -> dict[str, Any]:
        return self.report["summary"]

    @property
    def montage(self) -> dict[str, Any]:
        return self.report["montage"]

    @property
    def windows(self) -> pd.DataFrame:
        """One row per window: start/end seconds, clock time, ``p_<label>`` per output, predicted, QC."""
        import pandas as pd

        start_time = self.report["input"]["header"]["start_time"]
        start = _dt.datetime.fromisoformat(start_time) if start_time else None
        records = []
        for row in self.rows:
            record: dict[str, Any] = {"start_s": row.start_s, "end_s": row.end_s, "start_time": row.clock(start),
                                      "segment": row.segment}
            for label in self.labels:
                record[probability_column(label)] = (row.probabilities or {}).get(label)
            if self.labels:
                record["predicted"] = row.label
            record.update(qc_pass=row.qc_pass, qc_flags=list(row.qc_flags),
                          qc_bad_channels=len({c for chans in row.qc_bad_channels.values() for c in chans}),
                          excluded=row.excluded, excluded_reason=row.excluded_reason)
            records.append(record)
        return pd.DataFrame.from_records(records)


class ScreenResult(Mapping[str, TaskResult]):
    """Every task's result for one recording, by task id (``result["tuab"]``), in the order they ran. A task that
    could not run on this recording is in ``failures``; asking for its result raises its error."""

    def __init__(self, tasks: list[TaskResult], failures: dict[str, LumambaError]):
        self._tasks = {t.task: t for t in tasks}
        self.failures = failures
        self.disclaimer = DISCLAIMER

    def __getitem__(self, task: str) -> TaskResult:
        if task in self.failures:
            raise self.failures[task]
        return self._tasks[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"ScreenResult({', '.join(self._tasks)}) — {DISCLAIMER}"


def as_recording(source: Source, *, ch_names: Sequence[str] | None = None, sfreq: float | None = None,
                 reader: Reader = Reader.auto) -> tuple[RecordingLike, str]:
    """(recording, its sha256) for a path, an ``mne.io.BaseRaw`` (as it is in memory: cropped, renamed,
    re-referenced; ``info['bads']`` are never used) or a (channels, samples) array in µV with ``ch_names`` and
    ``sfreq``."""
    if isinstance(source, (str, Path)):
        return open_recording(source, reader=reader), sha256_file(source)
    if isinstance(source, np.ndarray):
        if ch_names is None or sfreq is None:
            raise TypeError("an array needs ch_names and sfreq (and is taken to be in µV)")
        recording = ArrayRecording("<array>", source, float(sfreq), list(ch_names))
        return recording, recording.content_sha256()
    import mne

    if isinstance(source, mne.io.BaseRaw):
        recording = ArrayRecording.from_mne(source)
        return recording, recording.content_sha256()
    raise TypeError(f"cannot screen a {type(source).__name__}: give a path, an mne.io.Raw or an array")


def screen(source: Source, tasks: Sequence[str] = ("qc",), head: str | Path | None = None, *,
           ch_names: Sequence[str] | None = None, sfreq: float | None = None, device: str = "auto",
           backend: str = "auto", batch_size: int = 64, threshold: float = 0.5, mode: Mode | None = None,
           aliases: Path | None = None, reader: Reader = Reader.auto) -> ScreenResult:
    """Screen one recording as ``lumamba screen`` does, without writing files.

    ``tasks`` are recipe ids (``qc`` is the model-free quality screen); ``head`` picks the head of the one model
    task given. Every other option means what the CLI option of the same name means.
    """
    options = ScreenOptions(tasks=tuple(tasks), head=str(head) if head is not None else None, device=device,
                            backend=backend, batch_size=batch_size, threshold=threshold, mode=mode, aliases=aliases)
    options, plan, models = plan_run(options)
    recording, sha256 = as_recording(source, ch_names=ch_names, sfreq=sfreq, reader=reader)
    try:
        result = collect(models, options.threshold, produce(plan, recording, sha256))
    finally:
        recording.close()
    failures = {task: failed.error for task, failed in result.failures.items()}
    if failures and not result.reports:
        raise next(iter(failures.values()))
    return ScreenResult([TaskResult(r.task, r.document, r.rows, r.labels) for r in result.reports], failures)


def encode(source: Source, encoder: str | Path | None = None, pool: Pool | None = Pool.mean, *, task: str = "embed",
           ch_names: Sequence[str] | None = None, sfreq: float | None = None, device: str = "auto",
           backend: str = "auto", batch_size: int = 64, mode: Mode = Mode.auto, aliases: Path | None = None,
           reader: Reader = Reader.auto) -> Embeddings:
    """Encoder outputs per window of one recording (deterministic). ``encoder``: a registry name, an encoder file
    or a head file (default: the recipe's encoder); ``pool`` ``"mean"`` (one vector per window) or None (one per
    patch); ``task``: the recipe whose preprocessing and layout prepare the windows (``embed``: the pre-training
    preprocessing on every channel the registry can place)."""
    recipe = load_recipe(task)
    loaded = load_encoder(encoder or recipe.encoder, device=device, backend=backend)
    recording, sha256 = as_recording(source, ch_names=ch_names, sfreq=sfreq, reader=reader)
    try:
        items = embedding.produce(recording, recipe, load_registry(aliases), PreprocessPolicy(mode), sha256)
        return embedding.collect(loaded, items, pool=Pool(pool or Pool.none), batch_size=batch_size)
    finally:
        recording.close()
