"""Fine-tune a LuMamba classification head on the user's own data (``lumamba train``).

The public LuMamba release holds pre-trained encoders only, and its licence forbids sharing adapted weights,
so heads are trained locally. Defaults follow upstream's fine-tuning recipe (spec §3.0): AdamW (lr 5e-4,
betas 0.9/0.999, weight decay 0.05 on every parameter, norms and biases included, as upstream's AdamW call),
layer-wise lr decay 0.75 over the Mamba blocks, linear warm-up then timm's cosine decay updated every step,
early stopping on validation loss (patience 15), best checkpoint by validation loss. Every knob is an option.
A head trained with a frozen official encoder that can be found again by sha256 is stored head-only.

The run, in order: :func:`check_request` (everything that can fail without data: recipe, encoder file, model
size, names), :func:`prepare_data` (splits and the window cache), :func:`build_optimiser`, :func:`fit` (epochs,
validation, checkpoints, early stopping), :func:`save_trained_head`.

Reproducibility: all randomness is seeded (torch, numpy, python), the batch order of epoch ``e`` is a pure
function of (seed, e), deterministic algorithms are enforced on CPU, and the per-epoch checkpoint holds the
model, optimiser, schedule step, RNG states and early-stopping state, so ``--resume`` after an interruption
ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lumamba_cli import __version__, datasets, metrics
from lumamba_cli.datasets import Dataset, DatasetIndex, Source
from lumamba_cli.encoders import encoder_path, file_sha256
from lumamba_cli.feature_cache import FeatureSplit, build_features
from lumamba_cli.errors import BadInputError, UsageError, WeightsError
from lumamba_cli.fileio import atomic_write, write_json
from lumamba_cli.heads import import_head
from lumamba_cli.headfile import EncoderRef, HeadMetadata
from lumamba_cli.preprocess import PreprocessPolicy
from lumamba_cli.probes import ProbeKind, fit_probe
from lumamba_cli.recipes import Recipe, load_recipe
from lumamba_cli.window_cache import CacheDtype, SplitWindows, build_split, default_cache_dir

if TYPE_CHECKING:
    import torch

    from lumamba_cli.model import LuMamba, LuMambaConfig

WARMUP_START_LR = 1e-6  # timm CosineLRScheduler warmup_lr_init in upstream's scheduler config
MIN_LR = 1e-6
CHECKPOINT_NAME = "checkpoint.pt"
# Test hook: stop (as if interrupted with Ctrl-C) right after the checkpoint of this epoch (1-based) is written.
STOP_AFTER_EPOCH_ENV = "LUMAMBA_TRAIN_STOP_AFTER_EPOCH"
TRAINABLE_TYPES = ("bc", "mcc", "ml", "mc", "mmc")


class HeadOption(StrEnum):
    """The classifier on top of the encoder: LUNA's query head, FEMBA's Mamba head, a linear layer (upstream's
    three), or a linear probe on pooled embeddings fitted in seconds (ridge, logistic; frozen encoder)."""

    luna = "luna"
    mamba = "mamba"
    linear = "linear"
    ridge = "ridge"
    logistic = "logistic"

    @property
    def is_probe(self) -> bool:
        return self in (HeadOption.ridge, HeadOption.logistic)


class ClassWeights(StrEnum):
    none = "none"
    balanced = "balanced"


@dataclass
class TrainOptions:
    task: str
    data: Path
    dataset: Dataset = Dataset.manifest
    encoder: str | None = None  # None = recipe default; "none" = from scratch; else registry name or file
    epochs: int = 50
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: float = 5.0
    patience: int = 15
    freeze_encoder: bool = False
    feature_cache: bool = True  # frozen encoder: compute its outputs once and train every epoch from them
    class_weights: ClassWeights = ClassWeights.none
    seed: int = 0
    head_option: HeadOption | None = None  # None = the recipe's
    config: str = "tiny"
    device: str = "auto"
    resume: bool = False
    out: Path | None = None
    name: str | None = None
    events: Path | None = None
    labels_file: Path | None = None
    cache_dir: Path | None = None
    policy: PreprocessPolicy = field(default_factory=PreprocessPolicy)
    cache_dtype: CacheDtype = CacheDtype.float32
    val_fraction: float = 0.2
    test_fraction: float = 0.15
    import_to_store: bool = True

    def fingerprint(self) -> str:
        """What must be identical for --resume to continue the same run (not device, out or resume itself)."""
        relevant = {k: v for k, v in asdict(self).items()
                    if k not in ("device", "resume", "out", "name", "import_to_store")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    head_path: Path
    head_id: str | None
    out_dir: Path
    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    data_summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- helpers


def seed_everything(seed: int, device: torch.device) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if device.type == "cpu":
        # warn_only: a few CPU kernels have no deterministic variant flag but are deterministic in practice
        torch.use_deterministic_algorithms(True, warn_only=True)


def layer_scale(name: str, num_blocks: int, layer_decay: float) -> float:
    """Upstream's layer-wise decay: parameters of Mamba block i (and its norm) get lr × decay^(num_blocks − i)."""
    match = re.search(r"(?:^|\.)(?:mamba_blocks|norm_layers)\.(\d+)\.", name)
    if match:
        return layer_decay ** (num_blocks - int(match.group(1)))
    return 1.0


def lr_factor(step: int, warmup_steps: int, total_steps: int, base_lr: float) -> float:
    """Learning rate at ``step`` for a group whose peak is ``base_lr``: linear warm-up from 1e-6, then cosine to 1e-6.

    As upstream's timm CosineLRScheduler (``t_initial`` = all steps, ``warmup_prefix`` False): the cosine is a
    function of the step counted from 0, not from the end of the warm-up, so when the warm-up ends the rate
    drops straight onto the cosine curve (at 5 of 50 epochs, 97.6 % of the peak) instead of restarting it."""
    if warmup_steps > 0 and step < warmup_steps:
        return WARMUP_START_LR + (base_lr - WARMUP_START_LR) * step / warmup_steps
    progress = min(1.0, step / max(1, total_steps))
    return MIN_LR + 0.5 * (base_lr - MIN_LR) * (1.0 + math.cos(math.pi * progress))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    # a pure function of (seed, epoch): resuming at any epoch reproduces the same batches
    return np.random.default_rng([seed, epoch]).permutation(n)


def class_weight_vector(counts: list[int], mode: ClassWeights) -> list[float] | None:
    if mode == ClassWeights.none:
        return None
    total, k = sum(counts), len(counts)
    return [total / (k * c) if c > 0 else 0.0 for c in counts]


def make_criterion(kind: str, counts: list[int], mode: ClassWeights, device: torch.device):
    """The training loss as upstream (spec §3.0): CE for bc/mcc, BCEWithLogits on float targets for mc, CE over
    the (B·22, 6) flattened channel outputs for mmc. ``balanced`` weighting: inverse class frequency for CE; for
    mc one pos_weight = negatives/positives pooled over every (window, channel) pair of the training split.
    Returns (loss(logits, labels) → tensor, weights-as-a-list or None)."""
    import torch

    weight = class_weight_vector(counts, mode)
    if kind == "mc":
        pos_weight = [counts[0] / counts[1]] if weight is not None else None
        bce = torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=device) if pos_weight else None)
        return (lambda logits, y: bce(logits, y.to(logits.dtype))), pos_weight
    ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32, device=device) if weight else None)
    if kind == "mmc":
        return (lambda logits, y: ce(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))), weight
    return (lambda logits, y: ce(logits, y)), weight


def validation_figures(logits: np.ndarray, y: np.ndarray, kind: str, n_classes: int,
                       criterion_weight: list[float] | None) -> dict[str, float]:
    """Validation loss (the training loss, same weighting) and headline metrics, pooled over (window, channel)
    pairs for mc/mmc."""
    import torch

    weight = torch.tensor(criterion_weight, dtype=torch.float64) if criterion_weight else None
    logits_t, y_t = torch.from_numpy(logits), torch.from_numpy(y)
    if kind == "mc":
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits_t, y_t.double(), pos_weight=weight))
    else:
        if kind == "mmc":
            logits_t, y_t = logits_t.reshape(-1, logits_t.shape[-1]), y_t.reshape(-1)
        loss = float(torch.nn.functional.cross_entropy(logits_t, y_t, weight=weight))
    pooled = metrics.pool_outputs(kind, logits, y)
    score = metrics.ranking_score(pooled.prob, pooled.logits, "probability")
    values = metrics.compute(pooled.y, pooled.pred, score, n_classes)
    return {"val_loss": loss, **{f"val_{k}": v for k, v in values.items()}}


def _emit(callback: Callable[[str], None] | None, text: str) -> None:
    if callback is not None:
        callback(text)


# --------------------------------------------------------------------------------------------- the model


def model_config(recipe: Recipe, config_name: str, head_option: HeadOption) -> LuMambaConfig:
    """The LuMamba configuration of a head for ``recipe``: a named size or ``key=value`` overrides of tiny."""
    from lumamba_cli.model import LuMambaConfig

    kwargs: dict[str, Any] = {}
    if config_name == "8block":
        kwargs["num_blocks"] = 8
    elif config_name not in ("tiny", "default"):
        # test/benchmark sizes: "num_blocks=1" etc. as comma-separated overrides of the tiny config
        for part in config_name.split(","):
            if "=" not in part:
                raise UsageError(f"unknown --config {config_name!r} (tiny, 8block, or key=value overrides)")
            key, value = part.split("=", 1)
            kwargs[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    if recipe.classification_type in ("mc", "mmc"):
        # per-channel heads: num_classes is per output (mc 2 → one logit per channel; mmc 6 per channel)
        kwargs["classification_num_channels"] = recipe.classification_num_channels or 22
        num_classes = recipe.num_classes
    else:
        num_classes = recipe.num_outputs
    option = {HeadOption.luna: None, HeadOption.mamba: "mamba", HeadOption.linear: "linear"}.get(head_option, "probe")
    kwargs.update(num_classes=num_classes, classifier_option=option, classification_type=recipe.classification_type)
    known = {f.name for f in dataclasses.fields(LuMambaConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UsageError(f"--config: unknown model settings {unknown}; known: {sorted(known)}")
    try:
        return LuMambaConfig(**kwargs)
    except ValueError as exc:
        raise UsageError(f"--config {config_name}: {exc}") from None


@dataclass(frozen=True)
class EncoderWeights:
    """An official (or imported) encoder, read and checked before any data is decoded."""

    path: Path
    name: str
    sha256: str
    state: dict[str, Any]  # tensors without the reconstruction decoder

    def ref(self) -> EncoderRef:
        return EncoderRef(name=self.name, sha256=self.sha256)


def resolve_encoder(request: str | None, recipe: Recipe, config: LuMambaConfig) -> EncoderWeights | None:
    """The encoder to start from: ``request`` (registry name or file; ``none`` = from scratch), else the
    recipe's. Read and checked against ``config`` now, so a wrong file fails before hours of decoding."""
    from lumamba_cli.model import checkpoint

    request = request if request is not None else recipe.encoder
    if not request or str(request).lower() == "none":
        return None
    candidate = Path(request)
    if candidate.suffix in (".safetensors", ".ckpt") or candidate.exists() or os.sep in request:
        if not candidate.is_file():
            raise WeightsError("encoder file not found", path=candidate)
        path, name = candidate, candidate.name
    else:
        path, name = encoder_path(request), request
    state = checkpoint.load_official_encoder(path, reconstruction=False, config=config)
    return EncoderWeights(path, name, file_sha256(path), state)


def build_model(recipe: Recipe, config: LuMambaConfig, encoder: EncoderWeights | None) -> LuMamba:
    """A classifier for ``recipe``: the encoder's weights (when given) and a fresh head."""
    from lumamba_cli.model import LuMamba

    model = LuMamba(config)
    if encoder is not None:
        missing, unexpected = model.load_state_dict(encoder.state, strict=False)
        missing = [k for k in missing if not k.startswith("classifier.")]
        if missing or unexpected:
            raise WeightsError(
                f"encoder does not fit this model (--config?): {len(missing)} missing, {len(unexpected)} "
                f"unexpected keys (first: {(missing + list(unexpected))[0]})", path=encoder.path)
    return model


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class TrainingData:
    index: DatasetIndex
    by_split: dict[str, list[Source]]
    train: SplitWindows
    val: SplitWindows
    failures: list[str]

    def fingerprint(self) -> str:
        """The exact inputs, split and labels: resuming on changed data would silently mix two different runs (a
        relabelled manifest or an edited annotation CSV leaves every input file, and so its sha256, unchanged)."""
        return hashlib.sha256(json.dumps(
            [[c.sha256 for c in self.train.caches], [c.sha256 for c in self.val.caches],
             [_labels_digest(self.train.labels), _labels_digest(self.val.labels)]]).encode()).hexdigest()[:16]


def check_request(options: TrainOptions) -> tuple[Recipe, Path]:
    """Everything about the request that can fail without reading data; returns the recipe and output folder."""
    recipe = load_recipe(options.task)
    if recipe.classification_type not in TRAINABLE_TYPES:
        raise UsageError(f"task {recipe.id} is '{recipe.classification_type}': training supports bc, mcc, mc and "
                         "mmc tasks")
    datasets.check_request(options.dataset, Path(options.data))
    if recipe.classification_type in ("mc", "mmc") and options.dataset != Dataset.tuar:
        raise UsageError(f"task {recipe.id} needs per-channel labels, which only --dataset tuar provides")
    if options.name is not None and (not options.name or Path(options.name).name != options.name
                                     or options.name in (".", "..")):
        raise UsageError(f"--name {options.name!r} must be a plain file name (no folders): the head is written "
                         "inside --out")
    out_dir = Path(options.out) if options.out else Path.cwd() / f"lumamba-train-{recipe.id}"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError("--out is a file, not a folder", path=out_dir)
    return recipe, out_dir


def prepare_data(options: TrainOptions, recipe: Recipe, out_dir: Path, *, log=None) -> TrainingData:
    """Discover the dataset, split it by subject (``splits.json``) and cache every split's windows."""
    index = datasets.discover(options.dataset, Path(options.data), list(recipe.labels), events_csv=options.events,
                              apava_labels=options.labels_file, classification_type=recipe.classification_type)
    assignment = datasets.assign_splits(index.sources, seed=options.seed, val_fraction=options.val_fraction,
                                        test_fraction=options.test_fraction)
    by_split = {name: [s for s in index.sources if assignment[s.subject] == name] for name in datasets.SPLITS}
    if not by_split["train"] or not by_split["val"]:
        raise BadInputError(
            f"need recordings from at least 2 subjects for train and val (found {len(set(assignment))} subjects)",
            path=options.data,
        )
    splits_doc: dict[str, Any] = {
        "dataset": index.name,
        "seed": options.seed,
        "rule": "by subject; dataset-fixed splits kept",
        "notes": index.notes,
        "splits": {name: [s.to_json() for s in items] for name, items in by_split.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "splits.json", splits_doc, indent=2)

    failures: list[str] = []

    def on_error(source: Source, exc: Exception) -> None:
        failures.append(f"{source.key}: {exc}")
        _emit(log, f"skipped {source.key}: {exc}")

    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    _emit(log, f"preparing windows ({len(index.sources)} recordings; cache {cache_dir})")
    splits = {name: build_split(index, by_split[name], recipe, cache_dir=cache_dir, policy=options.policy,
                                cache_dtype=options.cache_dtype, on_error=on_error) for name in ("train", "val")}
    if failures:
        splits_doc["skipped"] = failures
        write_json(out_dir / "splits.json", splits_doc, indent=2)
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise BadInputError("no usable windows in the train or val split", path=options.data)
    counts = splits["train"].counts(recipe.label_classes)
    if sum(1 for c in counts if c > 0) < 2:
        raise BadInputError(f"the training split holds only one class (counts {counts})", path=options.data)
    return TrainingData(index, by_split, splits["train"], splits["val"], failures)


# ------------------------------------------------------------------------------------------------ training


def build_optimiser(model: LuMamba, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, one group per layer-decay scale (each remembers its peak lr)."""
    import torch

    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        if options.freeze_encoder and not name.startswith("classifier."):
            param.requires_grad_(False)
        if param.requires_grad:
            groups.setdefault(layer_scale(name, model.config.num_blocks, options.layer_decay), []).append(param)
    param_groups = [{"params": params, "lr": options.lr * scale, "base_lr": options.lr * scale}
                    for scale, params in sorted(groups.items())]
    return torch.optim.AdamW(param_groups, lr=options.lr, betas=(0.9, 0.999), weight_decay=options.weight_decay)


@dataclass
class FitState:
    """Everything about a run's progress that a checkpoint must restore (JSON-ready)."""

    epoch: int = 0
    step: int = 0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    stale: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] | None = None  # probes: how the penalty was chosen


@dataclass
class StepInputs:
    """What the epochs feed the model: windows through the whole network, or cached encoder outputs through the
    head alone. ``logits(idx)`` → (training logits, labels) of training windows ``idx``; ``validation()`` → logits
    of every validation window, deterministic."""

    logits: Callable[[np.ndarray], tuple[Any, np.ndarray]]
    validation: Callable[[], np.ndarray]


def window_inputs(model: LuMamba, data: TrainingData, device: torch.device, batch_size: int) -> StepInputs:
    from lumamba_cli.inference import predict, run_model

    def logits(idx: np.ndarray) -> tuple[Any, np.ndarray]:
        x, positions, y = data.train.batch(idx)
        # upstream trains with an all-False mask, which jitters the electrode positions (spec Q2): a mild
        # augmentation kept for training; evaluation runs without it (deterministic)
        return run_model(model, x, positions, device, jitter=True), y

    return StepInputs(logits, lambda: predict(model, data.val.batches(batch_size), device))


def feature_inputs(model: LuMamba, train: FeatureSplit, val: FeatureSplit, device: torch.device,
                   batch_size: int) -> StepInputs:
    import torch

    def head(features: np.ndarray) -> torch.Tensor:
        encoded = torch.from_numpy(features).to(device)
        if train.pooled:
            encoded = encoded[:, None, :]  # a linear head's mean over one "patch" is the pooled vector itself
        return model.classify(encoded).float()

    def logits(idx: np.ndarray) -> tuple[Any, np.ndarray]:
        features, y = train.batch(idx)
        return head(features), y

    def validation() -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            parts = [head(val.batch(np.arange(i, min(i + batch_size, len(val))))[0]).cpu().numpy()
                     for i in range(0, len(val), batch_size)]
        return np.concatenate(parts).astype(np.float64)

    return StepInputs(logits, validation)


def fit(model: LuMamba, optimiser: torch.optim.Optimizer, data: TrainingData, inputs: StepInputs, recipe: Recipe,
        options: TrainOptions, device: torch.device, checkpoint_path: Path, *, log=None,
        progress=None) -> tuple[FitState, dict]:
    """Run the epochs (resuming from ``checkpoint_path`` with ``--resume``); returns the final state and the
    best weights by validation loss."""
    import torch

    kind, n_classes = recipe.classification_type, recipe.label_classes
    batch_size = max(1, options.batch_size)
    drop_last = len(data.train) > batch_size  # upstream drops the last partial batch; not when that is all there is
    steps_per_epoch = len(data.train) // batch_size if drop_last else math.ceil(len(data.train) / batch_size)
    total_steps = steps_per_epoch * options.epochs
    warmup_steps = int(round(options.warmup_epochs * steps_per_epoch))
    criterion, weight = make_criterion(kind, data.train.counts(n_classes), options.class_weights, device)
    data_fingerprint = data.fingerprint()
    state, best_state = FitState(), None
    if options.resume:
        state, best_state = _resume(checkpoint_path, model, optimiser, options, device, data_fingerprint, log=log)
    stop_after = int(os.environ.get(STOP_AFTER_EPOCH_ENV, "0") or 0)

    for epoch in range(state.epoch, options.epochs):
        if state.stopped:
            break
        model.train()
        order = epoch_order(options.seed, epoch, len(data.train))
        running, seen = 0.0, 0
        for batch_number in range(steps_per_epoch):
            idx = order[batch_number * batch_size : (batch_number + 1) * batch_size]
            for group in optimiser.param_groups:
                group["lr"] = lr_factor(state.step, warmup_steps, total_steps, group["base_lr"])
            logits, y = inputs.logits(idx)
            loss = criterion(logits, torch.from_numpy(y).to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            state.step += 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if progress is not None:
                progress(epoch, batch_number + 1, steps_per_epoch, running / max(seen, 1))
        val = validation_figures(inputs.validation(), data.val.labels, kind, n_classes, weight)
        record = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), **val}
        state.history.append(record)
        state.epoch = epoch + 1
        if val["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.stale = val["val_loss"], epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state.stale += 1
        _emit(log, f"epoch {epoch + 1}/{options.epochs}: train loss {record['train_loss']:.4f}, val loss "
                   f"{val['val_loss']:.4f}, val balanced acc {val['val_balanced_accuracy']:.3f}, "
                   f"val AUROC {_fmt(val['val_auroc'])}")
        if state.stale >= options.patience:
            _emit(log, f"early stop: val loss did not improve for {options.patience} epochs")
            state.stopped = True
        _save_checkpoint(checkpoint_path, model, optimiser, best_state, state, options, device, data_fingerprint)
        if stop_after and epoch + 1 == stop_after:
            raise KeyboardInterrupt
        if state.stopped:
            break
    return state, best_state


def fit_probe_head(model: LuMamba, train: FeatureSplit, val: FeatureSplit, recipe: Recipe, options: TrainOptions,
                   kind: HeadOption, *, log=None) -> tuple[FitState, dict]:
    """Fit a ridge or logistic probe on pooled embeddings and put it into the model's ``probe`` classifier."""
    import time

    import torch

    started = time.perf_counter()
    x_train, x_val = train.pooled_matrix(), val.pooled_matrix()
    fitted = fit_probe(ProbeKind(kind.value), x_train, train.labels, x_val, val.labels, recipe.label_classes,
                       balanced=options.class_weights == ClassWeights.balanced)
    with torch.no_grad():
        model.classifier.fc1.weight.copy_(torch.from_numpy(fitted.weight))
        model.classifier.fc1.bias.copy_(torch.from_numpy(fitted.bias))
    weight = class_weight_vector(train.split.counts(recipe.label_classes), options.class_weights)
    val = validation_figures(fitted.logits(x_val), val.labels, recipe.classification_type, recipe.label_classes,
                             weight)
    train_loss = validation_figures(fitted.logits(x_train), train.labels, recipe.classification_type,
                                    recipe.label_classes, weight)["val_loss"]
    seconds = time.perf_counter() - started
    _emit(log, f"{kind} probe on {len(x_train)} pooled embeddings ({x_train.shape[1]} features): penalty "
               f"{fitted.penalty:g}, val loss {val['val_loss']:.4f}, val balanced acc "
               f"{val['val_balanced_accuracy']:.3f}, val AUROC {_fmt(val['val_auroc'])} ({seconds:.1f} s)")
    state = FitState(epoch=1, best_epoch=1, best_val_loss=val["val_loss"],
                     history=[{"epoch": 1, "train_loss": train_loss, **val}],
                     probe={"kind": kind.value, "penalty": fitted.penalty, "temperature": fitted.temperature,
                            "val_loss_per_penalty": fitted.validation, "fit_seconds": round(seconds, 3),
                            "features": "mean of the encoder's output over patches, standardised on the train split"})
    return state, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train(options: TrainOptions, *, log: Callable[[str], None] | None = None, progress=None) -> TrainResult:
    """Run a full fine-tuning; see the module docstring. ``log`` receives one-line status messages."""
    import torch

    # deterministic mode is process-wide: put it back so a library caller's other work is unaffected
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _train(options, log=log, progress=progress)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _train(options: TrainOptions, *, log, progress) -> TrainResult:
    from lumamba_cli.inference import resolve_device

    recipe, out_dir = check_request(options)
    device = resolve_device(options.device)
    head_option = options.head_option or HeadOption(recipe.head_option or "luna")
    if head_option.is_probe:
        if recipe.classification_type not in ("bc", "mcc"):
            raise UsageError(f"--head-option {head_option} fits one label per window; task {recipe.id} is "
                             f"{recipe.classification_type} (per-channel outputs need --head-option mamba)")
        options = dataclasses.replace(options, freeze_encoder=True)
    config = model_config(recipe, options.config, head_option)
    encoder = resolve_encoder(options.encoder, recipe, config)
    warnings: list[str] = []
    if encoder is None:
        if head_option.is_probe:
            raise UsageError(f"--head-option {head_option} probes a pre-trained encoder: give --encoder")
        warnings.append("encoder trained from scratch (--encoder none): not comparable with published numbers")
    seed_everything(options.seed, device)
    model = build_model(recipe, config, encoder).to(device)

    data = prepare_data(options, recipe, out_dir, log=log)
    if data.failures:
        warnings.append(f"{len(data.failures)} recording(s) skipped (unreadable or montage unusable); see splits.json")
    use_features = head_option.is_probe or (options.freeze_encoder and options.feature_cache and encoder is not None)
    if use_features:
        cache_dir = (Path(options.cache_dir) if options.cache_dir else default_cache_dir()) / "features"
        pooled = head_option.is_probe or head_option == HeadOption.linear
        train_features, val_features = (
            build_features(split, model, encoder.sha256, cache_dir=cache_dir, device=device, pooled=pooled,
                           dtype=options.cache_dtype, batch_size=options.batch_size, log=log)
            for split in (data.train, data.val))
    if head_option.is_probe:
        state, best_state = fit_probe_head(model, train_features, val_features, recipe, options, head_option, log=log)
    else:
        inputs = (feature_inputs(model, train_features, val_features, device, options.batch_size) if use_features
                  else window_inputs(model, data, device, options.batch_size))
        optimiser = build_optimiser(model, options)
        state, best_state = fit(model, optimiser, data, inputs, recipe, options, device, out_dir / CHECKPOINT_NAME,
                                log=log, progress=progress)
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    head_path, head_id, summary, more = save_trained_head(model, recipe, options, encoder, data, state, out_dir,
                                                          device, head_option)
    warnings.extend(more)
    write_json(out_dir / "history.json", state.history, indent=2)
    best = next(h for h in state.history if h["epoch"] == state.best_epoch)
    return TrainResult(head_path, head_id, out_dir, state.best_epoch, state.epoch, best, state.history, summary,
                       warnings)


def save_trained_head(model: LuMamba, recipe: Recipe, options: TrainOptions, encoder: EncoderWeights | None,
                      data: TrainingData, state: FitState, out_dir: Path, device: torch.device,
                      head_option: HeadOption) -> tuple[Path, str | None, dict[str, Any], list[str]]:
    """Write the head file (head-only when the frozen encoder can be found again by sha256) and import it into
    the store; returns (path, store id, data summary, warnings)."""
    warnings: list[str] = []
    class_names = recipe.class_names
    n_classes = recipe.label_classes
    train_counts, val_counts = data.train.counts(n_classes), data.val.counts(n_classes)
    data_summary = {
        "dataset": data.index.name,
        "recordings": {name: len(items) for name, items in data.by_split.items()},
        "subjects": {name: len({s.subject for s in items}) for name, items in data.by_split.items()},
        "windows_per_class": {"train": dict(zip(class_names, train_counts)), "val": dict(zip(class_names, val_counts))},
        "counted": "(window, channel) pairs" if recipe.classification_type in ("mc", "mmc") else "windows",
        "input_sha256": sorted({c.sha256 for c in data.train.caches + data.val.caches}),
        "split_seed": options.seed,
        "split_subjects": {name: sorted({s.subject for s in items}) for name, items in data.by_split.items()},
        "skipped": len(data.failures),
    }
    training = {k: (str(v) if isinstance(v, (Path, StrEnum)) else v) for k, v in asdict(options).items()
                if k not in ("data", "out", "cache_dir", "events", "labels_file", "resume", "import_to_store",
                             "policy")}
    training.update(head_option=head_option.value, device=str(device), steps=state.step, epochs_run=state.epoch,
                    best_epoch=state.best_epoch, data=data_summary, probe=state.probe,
                    feature_cache=head_option.is_probe or (options.freeze_encoder and options.feature_cache
                                                           and encoder is not None),
                    # screen and evaluate apply the same preprocessing by default (a head only means something with it)
                    preprocessing={**options.policy.to_json(),
                                   "modes_seen": sorted(set(data.train.modes()) | set(data.val.modes()))})
    head_only = False
    if options.freeze_encoder and encoder is not None:
        # the encoder is the official one, untouched: store the head alone (small, and free of encoder weights the
        # licence keeps from being shared) when screen/evaluate can find that encoder again by its sha256
        try:
            encoder_path(encoder.name, sha256=encoder.sha256)
            head_only = True
        except WeightsError:
            warnings.append("--freeze-encoder: the encoder is neither an official download nor imported "
                            "(`lumamba weights import`), so the head file embeds a copy of it")
    training["head_only"] = head_only
    best = next(h for h in state.history if h["epoch"] == state.best_epoch)
    clean_val = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in best.items()}
    from lumamba_cli.model import checkpoint

    metadata = HeadMetadata(
        task=recipe.id, recipe_id=recipe.id, recipe_hash=recipe.hash, labels=list(recipe.labels),
        classification_type=recipe.classification_type, num_classes=model.config.num_classes,
        head_option=model.config.classifier_option, encoder=encoder.ref() if encoder else None,
        contains_encoder=not head_only, tool_version=__version__, training=training,
        metrics={"validation": clean_val, "level": "window", "split": "val"},
    )
    head_path = out_dir / f"{options.name or recipe.id}.safetensors"
    checkpoint.save_head(head_path, model, metadata)
    head_id = None
    if options.import_to_store:
        record = import_head(head_path, force=True)
        head_id = record.id
        warnings.extend(record.warnings)
    return head_path, head_id, data_summary, warnings


# ----------------------------------------------------------------------------------------------- checkpoints


def _labels_digest(labels: np.ndarray) -> str:
    array = np.ascontiguousarray(labels, dtype=np.int64)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _python_rng_to(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from(saved) -> tuple:
    version, internal, gauss = saved
    return (int(version), tuple(int(v) for v in internal), gauss)


def _numpy_rng_to(state) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_rng_from(saved) -> tuple:
    kind, keys, pos, has_gauss, cached = saved
    return (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def _save_checkpoint(path: Path, model: LuMamba, optimiser, best_state, state: FitState, options: TrainOptions,
                     device: torch.device, data_fingerprint: str) -> None:
    """Tensors and plain types only, so ``torch.load(weights_only=True)`` can read it back safely."""
    import torch

    payload = {
        "format": 1,
        "fingerprint": options.fingerprint(),
        "data_fingerprint": data_fingerprint,
        "model": model.state_dict(),
        "optimizer": optimiser.state_dict(),
        "best_model": best_state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python_rng": _python_rng_to(random.getstate()),
        "numpy_rng": _numpy_rng_to(np.random.get_state()),
        "state_json": json.dumps(asdict(state)),
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _resume(path: Path, model: LuMamba, optimiser, options: TrainOptions, device: torch.device,
            data_fingerprint: str, *, log=None) -> tuple[FitState, dict]:
    import torch

    from lumamba_cli.errors import first_line

    if not path.exists():
        raise UsageError(f"--resume: no {CHECKPOINT_NAME} in {path.parent}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's refusal of a pickled object is paragraphs long
        raise WeightsError(f"--resume: not a lumamba training checkpoint ({type(exc).__name__}: "
                           f"{first_line(exc)[:160]})", path=path) from None
    if not isinstance(saved, dict) or saved.get("fingerprint") != options.fingerprint() \
            or saved.get("data_fingerprint") != data_fingerprint:
        raise UsageError(f"--resume: {path} was written with different options or data; resume with exactly the "
                         "same command line")
    model.load_state_dict(saved["model"])
    optimiser.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    if device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)
    random.setstate(_python_rng_from(saved["python_rng"]))
    np.random.set_state(_numpy_rng_from(saved["numpy_rng"]))
    state = FitState(**json.loads(saved["state_json"]))
    _emit(log, f"resuming after epoch {state.epoch}")
    return state, saved["best_model"]
