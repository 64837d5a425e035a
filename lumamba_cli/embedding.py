"""Encoder outputs per window: what a lab needs to fit its own probe on LuMamba's representation.

Windows come from :func:`lumamba_cli.preprocess.prepare` with the ``embed`` recipe (the pre-training preprocessing,
every EEG channel the registry can place) or any task recipe; the encoder runs deterministically (``mask=None``,
no position jitter). An :class:`Embeddings` is saved as one safetensors file: the values, window times, positions,
and a ``lumamba_embeddings`` metadata entry with the provenance and the research-only disclaimer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.batch import (
    BatchResult,
    Cluster,
    Executor,
    FileResult,
    FoundRecording,
    Progress,
    find_recordings,
    run_batch,
)
from lumamba_cli.encoders import encoder_path, file_sha256
from lumamba_cli.errors import BadInputError, UsageError, WeightsError
from lumamba_cli.fileio import atomic_write_bytes, sha256_file
from lumamba_cli.headfile import read_safetensors_header
from lumamba_cli.montage import Registry, load_registry
from lumamba_cli.preprocess import Mode, PreprocessPolicy, WindowBlock, prepare, zscore
from lumamba_cli.recipes import Recipe, load_recipe
from lumamba_cli.recording import RecordingLike, open_recording
from lumamba_cli.report import input_summary
from lumamba_cli.screening import montage_block

if TYPE_CHECKING:
    import torch

    from lumamba_cli.model import LuMamba

METADATA_KEY = "lumamba_embeddings"


class Pool(StrEnum):
    """``mean``: one vector per window (the mean over patches, as the pre-training LeJEPA loss and t-SNE used);
    ``none``: one vector per patch."""

    mean = "mean"
    none = "none"


@dataclass(frozen=True)
class Encoder:
    """An encoder ready to run: an official (or imported) encoder file, or the encoder part of a head file."""

    model: LuMamba
    name: str
    path: Path
    sha256: str
    device: torch.device

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256, "device": str(self.device),
                "backend": self.model.backend}


def load_encoder(encoder: str | Path, *, device: str = "auto", backend: str = "auto") -> Encoder:
    """``encoder``: a registry name (``lejepa-recon-128`` …, verified local copy), an encoder file in the official
    layout, or a lumamba head file (its fine-tuned encoder)."""
    from lumamba_cli.inference import resolve_device
    from lumamba_cli.model import load_model

    candidate = Path(encoder)
    if candidate.suffix in (".safetensors", ".ckpt") or candidate.exists():
        if not candidate.is_file():
            raise WeightsError("encoder file not found", path=candidate)
        path, name = candidate, candidate.stem
    else:
        path, name = encoder_path(str(encoder)), str(encoder)
    target = resolve_device(device)
    model = load_model(path).to(target).float().eval()
    model.set_backend(backend)
    return Encoder(model, name, path, file_sha256(path), target)


@dataclass
class Embeddings:
    """Encoder outputs of one recording's windows."""

    values: np.ndarray  # (N, D) float32 for pool "mean"; (N, S, D) for pool "none"
    start_s: np.ndarray  # (N,) true seconds from the recording start
    segment: np.ndarray  # (N,)
    window_s: float
    channel_names: list[str]
    positions: np.ndarray  # (C, 3) metres, the positions the encoder saw
    pool: Pool
    provenance: dict[str, Any]  # input, montage, recipe, preprocessing, encoder, versions, disclaimer

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save

        tensors = {"embeddings": np.ascontiguousarray(self.values, dtype=np.float32),
                   "start_s": np.ascontiguousarray(self.start_s, dtype=np.float64),
                   "segment": np.ascontiguousarray(self.segment, dtype=np.int64),
                   "positions": np.ascontiguousarray(self.positions, dtype=np.float64)}
        meta = {"disclaimer": DISCLAIMER, "pool": self.pool.value, "window_s": self.window_s,
                "channel_names": self.channel_names, **self.provenance}
        atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)}))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        from safetensors.numpy import load_file

        path = Path(path)
        header = read_safetensors_header(path, what="embeddings file")
        if METADATA_KEY not in header.metadata:
            raise WeightsError(f"has no '{METADATA_KEY}' metadata: not a lumamba embeddings file", path=path)
        meta = json.loads(header.metadata[METADATA_KEY])
        tensors = load_file(str(path))
        provenance = {k: v for k, v in meta.items() if k not in ("disclaimer", "pool", "window_s", "channel_names")}
        return cls(tensors["embeddings"], tensors["start_s"], tensors["segment"], float(meta["window_s"]),
                   list(meta["channel_names"]), tensors["positions"], Pool(meta["pool"]), provenance)


@dataclass
class EmbedStart:
    """What the consumer needs before the first window: provenance of the input and of its preparation."""

    input_info: dict[str, Any]
    montage: dict[str, Any]
    recipe: dict[str, Any]
    policy: dict[str, Any]
    warnings: list[str]


@dataclass
class EmbedEnd:
    skipped: list[str]  # segments too short for one window


def produce(recording: RecordingLike, recipe: Recipe, registry: Registry, policy: PreprocessPolicy,
            sha256: str) -> Iterator[EmbedStart | WindowBlock | EmbedEnd]:
    """Prepare one recording's windows (refuses, exit 4, when no channel can be placed); plain data only."""
    task_input = prepare(recording, recipe, registry, policy)
    task_input.require()
    yield EmbedStart(input_summary(recording, sha256), montage_block(task_input.montage),
                     {"id": recipe.id, "hash": recipe.hash, "window_s": recipe.window_s, "step_s": recipe.step_s,
                      "target_sfreq": recipe.target_sfreq}, policy.to_json(),
                     list(recording.warnings) + list(task_input.montage.warnings))
    skipped: list[str] = []
    yield from task_input.windows(on_skip=skipped.append)
    yield EmbedEnd(skipped)


def produce_file(recipe: Recipe, policy: PreprocessPolicy, aliases: Path | None, found: FoundRecording
                 ) -> Iterator[EmbedStart | WindowBlock | EmbedEnd]:
    with open_recording(found.path) as recording:
        yield from produce(recording, recipe, load_registry(aliases), policy, sha256_file(found.path))


def collect(encoder: Encoder, items: Iterator[EmbedStart | WindowBlock | EmbedEnd], *, pool: Pool = Pool.mean,
            batch_size: int = 64, windows_done: Callable[[int], None] = lambda n: None) -> Embeddings:
    """Run ``encoder`` over every window the producer sends (deterministic: no mask, no jitter)."""
    import torch

    from lumamba_cli.inference import batches_of, predict

    start = next(items, None)
    if not isinstance(start, EmbedStart):
        raise RuntimeError("the producer sent no EmbedStart")
    reduce = (lambda out: out.mean(dim=1)) if pool == Pool.mean else None
    values, starts, segments, modes = [], [], [], set()
    names: list[str] = []
    positions = np.zeros((0, 3))
    skipped: list[str] = []
    window_s = float(start.recipe["window_s"])
    for item in items:
        if isinstance(item, EmbedEnd):
            skipped = item.skipped
            continue
        if not len(item):
            continue
        x = zscore(item.data, eps=item.eps)
        values.append(predict(encoder.model, batches_of(x, item.positions, batch_size), encoder.device,
                              encode=True, reduce=reduce).astype(np.float32))
        starts.append(item.start_s)
        segments.append(item.segment)
        names, positions = list(item.channel_names), item.positions
        modes.add(item.mode)
        windows_done(len(item))
    width = encoder.model.config.d_model
    patches = int(round(window_s * float(start.recipe["target_sfreq"]))) // encoder.model.config.patch_size
    empty = np.zeros((0, width) if pool == Pool.mean else (0, patches, width), dtype=np.float32)
    provenance = {
        "input": start.input_info,
        "montage": start.montage,
        "recipe": start.recipe,
        "preprocessing": {**start.policy, "modes_used": sorted(modes)},
        "encoder": encoder.describe(),
        "deterministic": "mask=None, no electrode-position jitter",
        "versions": {"lumamba": __version__, "torch": torch.__version__},
        "warnings": start.warnings + skipped,
    }
    return Embeddings(np.concatenate(values) if values else empty,
                      np.concatenate(starts) if starts else np.zeros(0),
                      np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64),
                      window_s, names, np.asarray(positions, dtype=np.float64), pool, provenance)


def output_name(stem: str, recipe_id: str) -> str:
    return f"{stem}.{recipe_id}.embeddings.safetensors"


def consume_file(encoder: Encoder, recipe: Recipe, pool: Pool, batch_size: int, progress: Progress,
                 found: FoundRecording, items: Iterator[EmbedStart | WindowBlock | EmbedEnd]) -> FileResult:
    embeddings = collect(encoder, items, pool=pool, batch_size=batch_size, windows_done=progress.windows_done)
    path = embeddings.save(found.out_dir / output_name(found.stem, recipe.id))
    return FileResult([path], len(embeddings), [f"{len(embeddings)} windows × {embeddings.values.shape[-1]} "
                                                f"({pool.value} pooled) from {len(embeddings.channel_names)} channels"])


# ------------------------------------------------------------------------------------------------------ a run


@dataclass(frozen=True)
class EmbedOptions:
    """Everything an embed run was asked to do (the CLI's options, typed)."""

    encoder: str | None = None  # None: the recipe's encoder
    task: str = "embed"
    pool: Pool = Pool.mean
    out: Path | None = None
    glob: str | None = None
    skip_existing: bool = False
    jobs: int = 1
    device: str = "auto"
    backend: str = "auto"
    batch_size: int = 64
    mode: Mode = Mode.auto
    aliases: Path | None = None
    executor: Executor = Executor.local
    scheduler: str | None = None


@dataclass
class EmbedRun:
    batch: BatchResult
    encoder: Encoder
    recipe: Recipe
    found: list[FoundRecording]


class LoadedEmbed:
    """The recipe and encoder of a run, loaded once (here, and on each Dask worker)."""

    def __init__(self, options: EmbedOptions):
        self.options = options
        self.recipe = load_recipe(options.task)
        self.encoder = load_encoder(options.encoder or self.recipe.encoder, device=options.device,
                                    backend=options.backend)
        self.policy = PreprocessPolicy(options.mode)
        self.params = {self.recipe.id: {"encoder_sha256": self.encoder.sha256, "recipe_hash": self.recipe.hash,
                                        "pool": options.pool.value, "preprocessing": self.policy.to_json()}}
        self.identity = {"lumamba": __version__, **{f"{self.recipe.id}.{k}": v
                                                   for k, v in self.params[self.recipe.id].items()}}

    def produce(self, found: FoundRecording) -> Iterator[EmbedStart | WindowBlock | EmbedEnd]:
        return produce_file(self.recipe, self.policy, self.options.aliases, found)

    def consume(self, progress: Progress, found: FoundRecording, items: Iterator[Any]) -> FileResult:
        return consume_file(self.encoder, self.recipe, self.options.pool, self.options.batch_size, progress, found,
                            items)

    def __call__(self, found: FoundRecording) -> FileResult:
        return self.consume(Progress(), found, self.produce(found))


@dataclass(frozen=True)
class EmbedJob:
    options: EmbedOptions

    def load(self) -> LoadedEmbed:
        return LoadedEmbed(self.options)


def run_embed(paths: Sequence[Path], options: EmbedOptions, *, progress: Progress | None = None) -> EmbedRun:
    """``lumamba embed``: embeddings of every recording under ``paths``, with a manifest; a single named file
    that fails raises its own error."""
    recipe = load_recipe(options.task)
    if recipe.target_sfreq is None:
        raise UsageError(f"--task {recipe.id} has no model input (it is the {recipe.purpose} recipe)")
    if options.aliases is not None:
        load_registry(options.aliases)  # a missing or malformed --aliases file fails now, once
    found = find_recordings(paths, options.glob, options.out)
    if not found:
        raise BadInputError("no .edf/.bdf recordings found", path=", ".join(str(p) for p in paths))
    loaded = LoadedEmbed(options)
    progress = progress or Progress()
    result = run_batch(
        found, loaded.produce, functools.partial(loaded.consume, progress), tasks=[loaded.recipe.id],
        expected_outputs=lambda f: [output_name(f.stem, loaded.recipe.id)], skip_existing=options.skip_existing,
        jobs=options.jobs, progress=progress, params=loaded.params,
        cluster=Cluster(EmbedJob(options), loaded.identity, options.scheduler,
                        options.jobs if options.jobs > 1 else None)
        if options.executor is Executor.dask else None,
    )
    if len(found) == 1 and found[0].explicit and result.outcomes[0].exception is not None:
        raise result.outcomes[0].exception
    return EmbedRun(result, loaded.encoder, loaded.recipe, found)
