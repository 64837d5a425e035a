"""Options shared by several commands, defined once so their names, choices and help never drift apart.

Choices are Enums (Typer refuses anything else with a usage error, exit 2); each Enum lives beside the code that
gives it meaning (``preprocess.Mode``, ``window_cache.CacheDtype``, ``recording.Reader`` …) and is only named here.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lumamba_cli.batch import Executor
from lumamba_cli.datasets import Dataset
from lumamba_cli.preprocess import Mode
from lumamba_cli.recording import Reader
from lumamba_cli.window_cache import CacheDtype


class Backend(StrEnum):
    """The selective-scan implementation (the names ``lumamba_cli.model.mamba`` accepts)."""

    auto = "auto"
    torch = "torch"
    mamba_ssm = "mamba-ssm"


def _device(value: str) -> str:
    lowered = value.lower()
    if lowered in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", lowered):
        return lowered
    raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``K/N`` → (K, N), 0 ≤ K < N."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise typer.BadParameter(f"{value!r} is not K/N with 0 ≤ K < N (e.g. 3/10)")
    return int(match[1]), int(match[2])


JsonOption = Annotated[bool, typer.Option("--json", help="Write JSON to stdout instead of tables on stderr.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables on stderr (errors still show).")]
DeviceOption = Annotated[str, typer.Option(
    "--device", callback=_device, help="auto | cpu | cuda | cuda:N: where the model runs (auto: CUDA when torch sees "
                                       "a GPU; bf16 autocast on GPU).")]
BackendOption = Annotated[Backend, typer.Option(
    "--backend", help="Selective-scan implementation (mamba-ssm needs CUDA and the gpu extra).")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Windows per model call.")]
ModeOption = Annotated[Optional[Mode], typer.Option(
    "--mode", help="Preprocessing: whole = each contiguous segment at once (upstream parity); chunked = bounded "
                   "memory for very long recordings (small stated deviation); auto = chunked only for segments "
                   "over an hour. Default: the preprocessing the head was trained with (else auto).")]
ReaderOption = Annotated[Reader, typer.Option(
    "--reader", help="Sample reader: auto = native (lumamba's own record reader, behind its header checks; reads "
                     "every valid EDF/BDF, EDF+D and mixed rates included), or pyedflib / mne to cross-check.")]
ExecutorOption = Annotated[Executor, typer.Option(
    "--executor", help="local: this machine (--jobs worker processes decode, this process runs the model); dask: "
                       "each recording done whole on a Dask worker, with its own model (needs the dask extra): "
                       "the workers of --scheduler, else a LocalCluster of --jobs processes (default: one per two "
                       "cores). This process alone writes the manifest.")]
SchedulerOption = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS",
    help="With --executor dask: a running scheduler, e.g. tcp://head-node:8786 (dask-jobqueue, dask-scheduler). "
         "Workers must see the same paths, lumamba version, recipes and heads; a worker that differs is refused.")]
AliasesOption = Annotated[Optional[Path], typer.Option(
    "--aliases", metavar="FILE",
    help="Extra names and positions: a TSV with a header row 'name, canonical' (alias → known electrode) and/or "
         "'name, x, y, z' (metres, head frame), or JSON {\"aliases\": {...}, \"positions\": {...}}.")]

# train and evaluate
TaskOption = Annotated[str, typer.Option("--task", help="Task recipe id (e.g. tuab, tuar_mc); fixes labels and "
                                                       "preprocessing.")]
DataOption = Annotated[Path, typer.Option("--data", help="Dataset folder, or the manifest CSV for --dataset manifest.")]
DatasetOption = Annotated[Dataset, typer.Option(
    "--dataset", help="Layout of --data: tuab (train|eval/normal|abnormal/01_tcp_ar/*.edf), tuar/tusl (EDF + TUH .csv "
                      "annotations; tuar serves the tuar, tuar_mc and tuar_mmc tasks; 01_tcp_ar and 02_tcp_le "
                      "folders), mumtaz ('H S1 EO.edf'…; upstream's fixed subject split), tdbrain (derivatives/ + "
                      "TDBRAIN_participants_V2.tsv), apava (*.mat), manifest (CSV path,label[,subject][,split]).")]
EventsOption = Annotated[Optional[Path], typer.Option(
    "--events", help="manifest only: CSV path,start_s,end_s,label for window-level labels.")]
LabelsOption = Annotated[Optional[Path], typer.Option("--labels", help="apava only: CSV path,label for each .mat.")]
CacheOption = Annotated[Optional[Path], typer.Option("--cache", help="Window cache folder (default in LUMAMBA_HOME).")]
CACHE_DTYPE_HELP = (
    "Storage type of the preprocessed-window cache: float16 halves its disk and page-cache size at ~3 significant "
    "digits (relative error ≤ 5e-4, well below EEG noise); values beyond ±65504 µV are refused. Windows are "
    "z-scored after loading, in float32, either way."
)
CacheDtypeOption = Annotated[CacheDtype, typer.Option("--cache-dtype", help=CACHE_DTYPE_HELP)]
