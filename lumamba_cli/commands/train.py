"""`lumamba train`: fine-tune a classification head on your own labelled recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lumamba_cli import DISCLAIMER
from lumamba_cli.commands.options import (
    CacheDtypeOption,
    CacheOption,
    DataOption,
    DatasetOption,
    DeviceOption,
    EventsOption,
    JsonOption,
    LabelsOption,
    QuietOption,
    TaskOption,
)
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.datasets import Dataset
from lumamba_cli.preprocess import DEFAULT_CHUNK_S, DEFAULT_CHUNK_THRESHOLD_S, Mode, PreprocessPolicy
from lumamba_cli.train import ClassWeights, HeadOption
from lumamba_cli.window_cache import CacheDtype

HELP = (
    "Fine-tune a LuMamba head on labelled recordings (splits by subject, seeded; upstream optimisation by default). "
    "Writes the head, splits.json, history.json and checkpoint.pt to --out and imports the head into the local "
    f"head store.\n\n{DISCLAIMER}"
)


def train_command(
    task: TaskOption,
    data: DataOption,
    dataset: DatasetOption = Dataset.manifest,
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="Official encoder name or .safetensors file; 'none' trains from scratch. Default: the "
                          "recipe's. Checked before any data is read.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs (upstream: 50).")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per step (upstream: 512).")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate.")] = 5e-4,
    weight_decay: Annotated[float, typer.Option(
        "--weight-decay", help="AdamW weight decay, applied to every trained parameter (norms and biases "
                               "included), as upstream.")] = 0.05,
    layer_decay: Annotated[float, typer.Option(
        "--layer-decay", help="Layer-wise lr decay over the Mamba blocks: lr × decay^(num_blocks − i).")] = 0.75,
    warmup_epochs: Annotated[float, typer.Option(
        "--warmup-epochs", min=0, help="Linear warm-up from 1e-6, in epochs; then cosine to 1e-6 over all steps "
                                       "(upstream's timm schedule, updated every step).")] = 5.0,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Early stopping: epochs without val-loss "
                                                                    "gain.")] = 15,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder", help="Train the head only.")] = False,
    no_feature_cache: Annotated[bool, typer.Option(
        "--no-feature-cache", help="--freeze-encoder: run the frozen encoder in every epoch, with upstream's "
                                   "electrode-position jitter, instead of once per window from a cache of its "
                                   "outputs (much slower; upstream's exact regime).")] = False,
    class_weights: Annotated[ClassWeights, typer.Option(
        "--class-weights", help="Loss weighting: none, or balanced (inverse class frequency).")] = ClassWeights.none,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the split, the batch order and the "
                                                     "initialisation.")] = 0,
    head_option: Annotated[Optional[HeadOption], typer.Option(
        "--head-option", help="The classifier: luna (query head), mamba or linear (upstream's, trained by "
                              "gradient descent), or ridge / logistic: a linear probe on pooled embeddings of the "
                              "frozen encoder, fitted in seconds (bc/mcc tasks). Default: the recipe's.")] = None,
    config: Annotated[str, typer.Option(
        "--config", help="Model size: tiny (the released encoder), 8block, or key=value overrides.")] = "tiny",
    device: DeviceOption = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from <out>/checkpoint.pt (same "
                                                          "options).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default "
                                                              "./lumamba-train-<task>).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Head file name inside --out (default: the task "
                                                               "id).")] = None,
    events: EventsOption = None,
    labels: LabelsOption = None,
    cache: CacheOption = None,
    cache_dtype: CacheDtypeOption = CacheDtype.float32,
    mode: Annotated[Mode, typer.Option(
        "--mode", help="Preprocessing, as `lumamba screen --mode`. Recorded in the head: screen and evaluate use "
                       "the same policy unless told otherwise.")] = Mode.auto,
    chunk_s: Annotated[float, typer.Option("--chunk-s", min=10.0, help="Chunk length in seconds (chunked "
                                                                       "mode).")] = DEFAULT_CHUNK_S,
    chunk_threshold_s: Annotated[float, typer.Option(
        "--chunk-threshold-s", min=0.0, help="auto mode: segments longer than this are chunked.")]
    = DEFAULT_CHUNK_THRESHOLD_S,
    no_import: Annotated[bool, typer.Option("--no-import", help="Do not copy the head into the head store.")] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from lumamba_cli.train import TrainOptions, train

    options = TrainOptions(
        task=task, data=data, dataset=dataset, encoder=encoder, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, layer_decay=layer_decay, warmup_epochs=warmup_epochs, patience=patience,
        freeze_encoder=freeze_encoder, feature_cache=not no_feature_cache, class_weights=class_weights, seed=seed,
        head_option=head_option,
        config=config, device=device, resume=resume, out=out, name=name, events=events, labels_file=labels,
        cache_dir=cache, import_to_store=not no_import, policy=PreprocessPolicy(mode, chunk_s, chunk_threshold_s),
        cache_dtype=cache_dtype,
    )
    log = None if quiet else (lambda text: err.print(clean(text), markup=False, highlight=False))
    if not quiet and err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                       TimeRemainingColumn(), console=err, transient=True)
        current = {"id": None}

        def progress(epoch: int, step: int, steps: int, loss: float) -> None:
            if current["id"] is None or step == 1:
                if current["id"] is not None:
                    bar.remove_task(current["id"])
                current["id"] = bar.add_task("train", total=steps, epoch=epoch + 1, loss=loss)
            bar.update(current["id"], completed=step, loss=loss)

        with bar:
            result = train(options, log=log, progress=progress)
    else:
        result = train(options, log=log)

    if as_json:
        print_json({
            "task": task, "head": str(result.head_path), "head_id": result.head_id, "out": str(result.out_dir),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "validation": result.val_metrics,
            "data": {k: v for k, v in result.data_summary.items() if k not in ("input_sha256", "split_subjects")},
            "warnings": result.warnings, "disclaimer": DISCLAIMER,
        })
    if not quiet:
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(clean(warning))}")
        where = f" and stored as [bold]{result.head_id}[/]" if result.head_id else ""
        err.print(f"head written to {escape(str(result.head_path))}{where} (best epoch {result.best_epoch}; use it "
                  f"with `lumamba screen --task {task}` or `lumamba evaluate --task {task}`)")


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_command)
