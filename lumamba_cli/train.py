"""Fine-tune a LuMamba classification head on the user's own data (``lumamba train``).

The public LuMamba release holds pre-trained encoders only, and its licence forbids sharing adapted weights,
so heads are trained locally. Defaults follow upstream's fine-tuning recipe (spec §3.0): AdamW (lr 5e-4,
betas 0.9/0.999, weight decay 0.05 on every parameter, norms and biases included, as upstream's AdamW call),
layer-wise lr decay 0.75 over the Mamba blocks, linear warm-up then timm's cosine decay updated every step,
early stopping on validation loss (patience 15), best checkpoint by validation loss. Every knob is an option.
A head trained with a frozen official encoder that can be found again by sha256 is stored head-only.

Reproducibility: all randomness is seeded (torch, numpy, python), the batch order of epoch ``e`` is a pure
function of (seed, e), deterministic algorithms are enforced on CPU, and the per-epoch checkpoint holds the
model, optimiser, schedule step, RNG states and early-stopping state, so ``--resume`` after an interruption
ends with the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lumamba_cli import __version__
from lumamba_cli.errors import BadInputError, UsageError, WeightsError

WARMUP_START_LR = 1e-6  # timm CosineLRScheduler warmup_lr_init in upstream's scheduler config
MIN_LR = 1e-6
CHECKPOINT_NAME = "checkpoint.pt"
# Test hook: stop (as if interrupted with Ctrl-C) right after the checkpoint of this epoch (1-based) is written.
STOP_AFTER_EPOCH_ENV = "LUMAMBA_TRAIN_STOP_AFTER_EPOCH"


@dataclass
class TrainOptions:
    task: str
    data: Path
    dataset: str = "manifest"
    encoder: str | None = None  # None = recipe default; "none" = from scratch; else registry name or file
    epochs: int = 50
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: float = 5.0
    patience: int = 15
    freeze_encoder: bool = False
    class_weights: str = "none"  # "none" | "balanced"
    seed: int = 0
    head_option: str | None = None  # None = recipe default; "luna" | "mamba" | "linear"
    config: str = "tiny"
    device: str = "auto"
    resume: bool = False
    out: Path | None = None
    name: str | None = None
    events: Path | None = None
    labels_file: Path | None = None
    cache_dir: Path | None = None
    preprocess_mode: str = "auto"
    chunk_s: float = 300.0
    chunk_threshold_s: float = 3600.0
    cache_dtype: str = "float32"
    val_fraction: float = 0.2
    test_fraction: float = 0.15
    max_windows_per_recording: int | None = None
    import_to_store: bool = True

    def fingerprint(self) -> str:
        """What must be identical for --resume to continue the same run (not device, out or resume itself)."""
        relevant = {k: v for k, v in asdict(self).items() if k not in ("device", "resume", "out", "name", "import_to_store")}
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


def seed_everything(seed: int, device) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if device.type == "cpu":
        # warn_only: a few CPU kernels have no deterministic variant flag but are deterministic in practice
        torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA GPU is available")
    return device


def layer_scale(name: str, num_blocks: int, layer_decay: float) -> float:
    """Upstream's layer-wise decay: parameters of Mamba block i (and its norm) get lr × decay^(num_blocks − i)."""
    match = re.search(r"(?:^|\.)(?:mamba_blocks|norm_layers|blocks)\.(\d+)\.", name)
    if match and ("blocks." in name or "norm_layers" in name):
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


def class_weight_vector(counts: list[int], mode: str) -> list[float] | None:
    if mode == "none":
        return None
    if mode != "balanced":
        raise UsageError(f"--class-weights must be 'none' or 'balanced', not {mode!r}")
    total, k = sum(counts), len(counts)
    return [total / (k * c) if c > 0 else 0.0 for c in counts]


def label_classes(recipe) -> int:
    """Classes a single label takes: the label count for bc/mcc, 2 for mc, the per-channel codes for mmc."""
    kind = getattr(recipe, "classification_type", "bc")
    if kind == "mc":
        return 2
    if kind == "mmc":
        return int(recipe.num_classes)
    return len(recipe.labels)


def make_criterion(kind: str, counts: list[int], mode: str, device):
    """The training loss as upstream (spec §3.0): CE for bc/mcc, BCEWithLogits on float targets for mc, CE over
    the (B·22, 6) flattened channel outputs for mmc. ``balanced`` weighting: inverse class frequency for CE; for
    mc one pos_weight = negatives/positives pooled over every (window, channel) pair of the training split.
    Returns (loss(logits, labels) → tensor, weights-as-a-list or None)."""
    import torch

    weight = class_weight_vector(counts, mode)
    if kind == "mc":
        pos_weight = None
        if weight is not None:
            negatives, positives = counts[0], counts[1]
            pos_weight = [negatives / positives]
        bce = torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=device) if pos_weight else None)
        return (lambda logits, y: bce(logits, y.to(logits.dtype))), pos_weight
    ce = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32, device=device) if weight else None)
    if kind == "mmc":
        return (lambda logits, y: ce(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))), weight
    return (lambda logits, y: ce(logits, y)), weight


def _emit(callback: Callable[[str], None] | None, text: str) -> None:
    if callback is not None:
        callback(text)


# --------------------------------------------------------------------------------------------- model I/O


def build_model(recipe, *, config_name: str, head_option: str | None):
    """A LuMamba classifier for ``recipe`` (random initialisation)."""
    from lumamba_cli.model import LuMamba, LuMambaConfig

    option = (head_option or getattr(recipe, "head_option", None) or "luna").lower()
    if option == "luma":  # accepted spelling of the LUNA query head
        option = "luna"
    if option not in ("luna", "mamba", "linear"):
        raise UsageError(f"--head-option must be luna, mamba or linear (got {head_option!r})")
    config = _config_for(LuMambaConfig, config_name, recipe, option)
    return LuMamba(config), config, option


def _config_for(config_cls, config_name: str, recipe, head_option: str):
    kwargs: dict[str, Any] = {}
    if config_name in ("tiny", "default"):
        pass
    elif config_name == "8block":
        kwargs["num_blocks"] = 8
    else:
        # test/benchmark sizes: "blocks=1" etc. as comma-separated overrides of the tiny config
        for part in config_name.split(","):
            if "=" not in part:
                raise UsageError(f"unknown --config {config_name!r} (tiny, 8block, or key=value overrides)")
            key, value = part.split("=", 1)
            kwargs[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    kind = getattr(recipe, "classification_type", "bc")
    if kind in ("mc", "mmc"):
        # per-channel heads: num_classes is per output (mc 2 → one logit per channel; mmc 6 per channel)
        kwargs["classification_num_channels"] = int(getattr(recipe, "classification_num_channels", None) or 22)
        num_classes = int(recipe.num_classes)
    else:
        num_classes = int(recipe.num_outputs if getattr(recipe, "num_outputs", None) else len(recipe.labels))
    kwargs.update(
        num_classes=num_classes,
        classifier_option=None if head_option == "luna" else head_option,
        classification_type=getattr(recipe, "classification_type", "bc"),
    )
    fields = getattr(config_cls, "model_fields", None) or getattr(config_cls, "__dataclass_fields__", {})
    unknown = [k for k in kwargs if fields and k not in fields]
    if unknown:
        raise UsageError(f"--config: unknown model settings {unknown}; known: {sorted(fields)}")
    return config_cls(**kwargs)


def resolve_encoder_file(encoder: str) -> tuple[Path, str]:
    """(file, name) of an official encoder given by registry name or path; fails before any data is decoded."""
    from lumamba_cli import weights

    candidate = Path(encoder)
    if candidate.suffix in (".safetensors", ".ckpt") or candidate.exists():
        if not candidate.is_file():
            raise WeightsError("encoder file not found", path=candidate)
        return candidate, candidate.name
    return weights.encoder_path(encoder), encoder


def load_encoder_into(model, path: Path, name: str) -> dict[str, str]:
    """Load the official encoder at ``path`` into ``model`` (every non-head key must be covered)."""
    from lumamba_cli import weights
    from lumamba_cli.model import checkpoint

    state = checkpoint.load_official_encoder(path, reconstruction=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise WeightsError(
            f"encoder does not fit this model (--config?): {len(missing)} missing, {len(unexpected)} unexpected "
            f"keys (first: {(missing + list(unexpected))[0]})",
            path=path,
        )
    return {"name": name, "sha256": weights.sha256_file(path)}


# ------------------------------------------------------------------------------------------------ training


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
    import torch

    from lumamba_cli import datasets
    from lumamba_cli.recipes import load_recipe

    recipe = load_recipe(options.task)
    device = pick_device(options.device)
    seed_everything(options.seed, device)
    warnings: list[str] = []
    labels = list(recipe.labels)
    kind = getattr(recipe, "classification_type", "bc")
    n_classes = label_classes(recipe)
    if kind not in ("bc", "mcc", "ml", "mc", "mmc"):
        raise UsageError(f"task {recipe.id} is '{kind}': training supports bc, mcc, mc and mmc tasks")
    class_names = labels if kind not in ("mc", "mmc") else (["no artifact", "artifact"] if kind == "mc" else labels)
    policy = datasets.PreprocessPolicy(
        options.preprocess_mode, float(options.chunk_s), float(options.chunk_threshold_s)
    )
    if policy.mode not in ("auto", "whole", "chunked"):
        raise UsageError(f"--mode must be auto, whole or chunked (got {policy.mode!r})")

    out_dir = Path(options.out) if options.out else Path.cwd() / f"lumamba-train-{recipe.id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(options.cache_dir) if options.cache_dir else datasets.default_cache_dir()

    datasets.check_request(options.dataset, Path(options.data))
    if kind in ("mc", "mmc") and options.dataset != "tuar":
        raise UsageError(f"task {recipe.id} needs per-channel labels, which only --dataset tuar provides")
    encoder_request = options.encoder if options.encoder is not None else getattr(recipe, "encoder", None)
    encoder_file = None
    if encoder_request and str(encoder_request).lower() != "none":
        encoder_file = resolve_encoder_file(str(encoder_request))

    index = datasets.discover(
        options.dataset, Path(options.data), labels, events_csv=options.events, apava_labels=options.labels_file,
        classification_type=kind,
    )
    assignment = datasets.assign_splits(
        index.sources, seed=options.seed, val_fraction=options.val_fraction, test_fraction=options.test_fraction
    )
    by_split = {name: [s for s in index.sources if assignment[s.subject] == name] for name in datasets.SPLITS}
    if not by_split["train"] or not by_split["val"]:
        raise BadInputError(
            f"need recordings from at least 2 subjects for train and val (found {len(set(assignment))} subjects)",
            path=options.data,
        )
    splits_doc = {
        "dataset": index.name,
        "seed": options.seed,
        "rule": "by subject; dataset-fixed splits kept",
        "notes": index.notes,
        "splits": {name: [s.to_json() for s in items] for name, items in by_split.items()},
    }
    _write_json(out_dir / "splits.json", splits_doc)

    failures: list[str] = []

    def on_error(source, exc):
        failures.append(f"{source.key}: {exc}")
        _emit(log, f"skipped {source.key}: {exc}")

    _emit(log, f"preparing windows ({len(index.sources)} recordings; cache {cache_dir})")
    train_set = datasets.build_split(index, by_split["train"], recipe, cache_dir=cache_dir, policy=policy,
                                     cache_dtype=options.cache_dtype, on_error=on_error)
    val_set = datasets.build_split(index, by_split["val"], recipe, cache_dir=cache_dir, policy=policy,
                                   cache_dtype=options.cache_dtype, on_error=on_error)
    if failures:
        warnings.append(f"{len(failures)} recording(s) skipped (unreadable or montage unusable); see splits.json")
        splits_doc["skipped"] = failures
        _write_json(out_dir / "splits.json", splits_doc)
    if len(train_set) == 0 or len(val_set) == 0:
        raise BadInputError("no usable windows in the train or val split", path=options.data)
    train_counts, val_counts = train_set.counts(n_classes), val_set.counts(n_classes)
    if sum(1 for c in train_counts if c > 0) < 2:
        raise BadInputError(f"the training split holds only one class (counts {train_counts})", path=options.data)

    # re-seed: decoding above must not change the initial weights (a resumed run reads the cache instead)
    seed_everything(options.seed, device)
    model, config, head_option = build_model(recipe, config_name=options.config, head_option=options.head_option)
    encoder_info: dict[str, Any] | None = None
    if encoder_file is not None:
        encoder_info = load_encoder_into(model, *encoder_file)
    else:
        warnings.append("encoder trained from scratch (--encoder none): not comparable with published numbers")
    model.to(device)

    num_blocks = int(getattr(config, "num_blocks", 2))
    groups: dict[float, list] = {}
    for pname, param in model.named_parameters():
        if options.freeze_encoder and not pname.startswith("classifier."):
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        groups.setdefault(layer_scale(pname, num_blocks, options.layer_decay), []).append(param)
    param_groups = [
        {"params": params, "lr": options.lr * scale, "base_lr": options.lr * scale}
        for scale, params in sorted(groups.items())
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=options.lr, betas=(0.9, 0.999), weight_decay=options.weight_decay)
    batch_size = max(1, options.batch_size)
    drop_last = len(train_set) > batch_size  # upstream drops the last partial batch; not when that is all there is
    steps_per_epoch = len(train_set) // batch_size if drop_last else math.ceil(len(train_set) / batch_size)
    total_steps = steps_per_epoch * options.epochs
    warmup_steps = int(round(options.warmup_epochs * steps_per_epoch))
    criterion, weight = make_criterion(kind, train_counts, options.class_weights, device)

    # the exact inputs, split and labels: resuming on changed data would silently mix two different runs (a
    # relabelled manifest or an edited annotation CSV leaves every input file, and so its sha256, unchanged)
    data_fingerprint = hashlib.sha256(json.dumps(
        [[c.sha256 for c in train_set.caches], [c.sha256 for c in val_set.caches],
         [_labels_digest(train_set.labels), _labels_digest(val_set.labels)]]).encode()).hexdigest()[:16]
    state = {"epoch": 0, "step": 0, "best_val_loss": float("inf"), "best_epoch": 0, "stale": 0, "history": []}
    best_state = None
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if options.resume:
        if not checkpoint_path.exists():
            raise UsageError(f"--resume: no {CHECKPOINT_NAME} in {out_dir}")
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != options.fingerprint() or saved.get("data_fingerprint") != data_fingerprint:
            raise UsageError(
                f"--resume: {checkpoint_path} was written with different options or data; "
                "resume with exactly the same command line"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        random.setstate(_python_rng_from(saved["python_rng"]))
        np.random.set_state(_numpy_rng_from(saved["numpy_rng"]))
        best_state = saved["best_model"]
        state = json.loads(saved["state_json"])
        _emit(log, f"resuming after epoch {state['epoch']}")

    use_bf16 = device.type == "cuda"
    stop_after = int(os.environ.get(STOP_AFTER_EPOCH_ENV, "0") or 0)

    def forward(x_np, pos_np):
        x = torch.from_numpy(x_np).to(device)
        pos = torch.from_numpy(np.ascontiguousarray(pos_np, dtype=np.float32)).to(device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            # upstream trains with an all-False mask, which jitters the electrode positions (spec Q2): a mild
            # augmentation kept for training; evaluation runs without it (deterministic)
            out = model(x, pos, location_jitter=model.training)
        logits = out[0] if isinstance(out, tuple) else out
        return logits.float()

    for epoch in range(state["epoch"], options.epochs):
        if state.get("stopped"):
            break
        model.train()
        order = epoch_order(options.seed, epoch, len(train_set))
        running, seen = 0.0, 0
        for batch_number in range(steps_per_epoch):
            idx = order[batch_number * batch_size : (batch_number + 1) * batch_size]
            x_np, pos_np, y_np = train_set.batch(idx)
            for group in optimizer.param_groups:
                group["lr"] = lr_factor(state["step"], warmup_steps, total_steps, group["base_lr"])
            logits = forward(x_np, pos_np)
            loss = criterion(logits, torch.from_numpy(y_np).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if progress is not None:
                progress(epoch, batch_number + 1, steps_per_epoch, running / max(seen, 1))
        val = evaluate_split(model, val_set, n_classes, forward, batch_size, criterion_weight=weight, kind=kind)
        record = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), **val}
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if val["val_loss"] < state["best_val_loss"]:
            state["best_val_loss"], state["best_epoch"], state["stale"] = val["val_loss"], epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["stale"] += 1
        _emit(
            log,
            f"epoch {epoch + 1}/{options.epochs}: train loss {record['train_loss']:.4f}, val loss "
            f"{val['val_loss']:.4f}, val balanced acc {val['val_balanced_accuracy']:.3f}, "
            f"val AUROC {_fmt(val['val_auroc'])}",
        )
        _save_checkpoint(checkpoint_path, model, optimizer, best_state, state, options, device, data_fingerprint)
        if stop_after and epoch + 1 == stop_after:
            raise KeyboardInterrupt
        if state["stale"] >= options.patience:
            _emit(log, f"early stop: val loss did not improve for {options.patience} epochs")
            state["stopped"] = True
            _save_checkpoint(checkpoint_path, model, optimizer, best_state, state, options, device,
                             data_fingerprint)
            break

    model.load_state_dict(best_state)
    model.to("cpu").eval()
    best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
    data_summary = {
        "dataset": index.name,
        "recordings": {name: len(items) for name, items in by_split.items()},
        "subjects": {name: len({s.subject for s in items}) for name, items in by_split.items()},
        "windows_per_class": {"train": dict(zip(class_names, train_counts)), "val": dict(zip(class_names, val_counts))},
        "counted": "(window, channel) pairs" if kind in ("mc", "mmc") else "windows",
        "input_sha256": sorted({c.sha256 for c in train_set.caches + val_set.caches}),
        "split_seed": options.seed,
        "split_subjects": {name: sorted({s.subject for s in items}) for name, items in by_split.items()},
        "skipped": len(failures),
    }
    training_config = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(options).items()
        if k not in ("data", "out", "cache_dir", "events", "labels_file", "resume", "import_to_store")
    }
    training_config.update(head_option=head_option, device=str(device), steps=state["step"],
                           epochs_run=state["epoch"], best_epoch=state["best_epoch"])
    # screen and evaluate apply the same preprocessing by default (a head only means something with it)
    training_config["preprocessing"] = {**policy.to_json(),
                                        "modes_seen": sorted(set(train_set.modes()) | set(val_set.modes()))}
    head_only = False
    if options.freeze_encoder and encoder_info is not None:
        # the encoder is the official one, untouched: store the head alone (small, and free of encoder weights the
        # licence keeps from being shared) when screen/evaluate can find that encoder again by its sha256
        from lumamba_cli import weights

        try:
            weights.encoder_path(encoder_info["name"], sha256=encoder_info["sha256"])
            head_only = True
        except WeightsError:
            warnings.append("--freeze-encoder: the encoder is neither an official download nor imported "
                            "(`lumamba weights import`), so the head file embeds a copy of it")
    training_config["head_only"] = head_only
    head_path = out_dir / f"{options.name or recipe.id}.safetensors"
    _save_head(head_path, model, recipe, head_option, encoder_info, data_summary, training_config, best, config,
               contains_encoder=not head_only)
    head_id = None
    if options.import_to_store:
        from lumamba_cli import weights

        record = weights.import_head(head_path, force=True)
        head_id = record.id
        warnings.extend(record.warnings)
    _write_json(out_dir / "history.json", state["history"])
    return TrainResult(head_path, head_id, out_dir, state["best_epoch"], state["epoch"], best, state["history"],
                       data_summary, warnings)


def evaluate_split(model, split, n_classes: int, forward, batch_size: int, *, criterion_weight=None,
                   kind: str = "bc") -> dict:
    """Validation loss (the training loss, same weighting) and headline metrics, pooled over (window, channel)
    pairs for mc/mmc. The model is put in eval mode, then back in train mode."""
    import torch

    from lumamba_cli import metrics
    from lumamba_cli.evaluate import predict

    logits = predict(model, split, None, batch_size, forward=forward)
    model.train()
    y = split.labels
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


def _labels_digest(labels: np.ndarray) -> str:
    array = np.ascontiguousarray(labels, dtype=np.int64)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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


def _save_checkpoint(path: Path, model, optimizer, best_state, state, options: TrainOptions, device,
                     data_fingerprint: str) -> None:
    """Tensors and plain types only, so ``torch.load(weights_only=True)`` can read it back safely."""
    import torch

    payload = {
        "format": 1,
        "fingerprint": options.fingerprint(),
        "data_fingerprint": data_fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_model": best_state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python_rng": _python_rng_to(random.getstate()),
        "numpy_rng": _numpy_rng_to(np.random.get_state()),
        "state_json": json.dumps(state),
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _save_head(path, model, recipe, head_option, encoder_info, data_summary, training_config, val_metrics, config,
               *, contains_encoder: bool = True):
    from lumamba_cli.model import checkpoint

    clean_val = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in val_metrics.items()}
    metadata = checkpoint.HeadMetadata(
        task=recipe.id,
        recipe_id=recipe.id,
        recipe_hash=recipe.hash,
        labels=list(recipe.labels),
        classification_type=getattr(recipe, "classification_type", "bc"),
        num_classes=int(config.num_classes),
        head_option=config.classifier_option,
        encoder=checkpoint.EncoderRef(**encoder_info) if encoder_info else None,
        contains_encoder=contains_encoder,
        tool_version=__version__,
        training={**training_config, "head": head_option, "data": data_summary},
        metrics={"validation": clean_val, "level": "window", "split": "val"},
    )
    checkpoint.save_head(path, model, metadata)
