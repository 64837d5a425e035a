"""`lumamba train`: fine-tune a classification head on your own labelled recordings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from lumamba_cli import DISCLAIMER

DATASET_HELP = (
    "Layout of --data: tuab (train|eval/normal|abnormal/01_tcp_ar/*.edf), tuar/tusl (EDF + TUH .csv annotations; "
    "tuar serves the tuar, tuar_mc and tuar_mmc tasks; 01_tcp_ar and 02_tcp_le folders), "
    "mumtaz ('H S1 EO.edf'…; upstream's fixed subject split), tdbrain (derivatives/ + TDBRAIN_participants_V2.tsv), apava (*.mat), "
    "manifest (CSV path,label[,subject][,split])."
)
CACHE_DTYPE_HELP = (
    "float32 | float16: storage type of the preprocessed-window cache. float16 halves its disk and page-cache size "
    "at ~3 significant digits (relative error ≤ 5e-4, well below EEG noise); values beyond ±65504 µV are refused. "
    "Windows are z-scored after loading, in float32, either way."
)
MODE_CHOICES = ("auto", "whole", "chunked")


# Options shared by `train` and `evaluate`: one definition each, so their names and help never drift apart.
def task_option():
    return typer.Option(..., "--task", help="Task recipe id (e.g. tuab, tuar_mc); fixes labels and preprocessing.")


def data_option():
    return typer.Option(..., "--data", help="Dataset folder, or the manifest CSV for --dataset manifest.")


def dataset_option():
    return typer.Option("manifest", "--dataset", help=DATASET_HELP)


def events_option():
    return typer.Option(None, "--events", help="manifest only: CSV path,start_s,end_s,label for window-level labels.")


def labels_option():
    return typer.Option(None, "--labels", help="apava only: CSV path,label for each .mat.")


def cache_option():
    return typer.Option(None, "--cache", help="Window cache folder (default in LUMAMBA_HOME).")


def cache_dtype_option():
    return typer.Option("float32", "--cache-dtype", help=CACHE_DTYPE_HELP)


def device_option(extra: str = ""):
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N" + extra + ".")


def json_option(what: str):
    return typer.Option(False, "--json", help=f"Print {what} as JSON on stdout.")


def choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    from lumamba_cli.errors import UsageError

    lowered = value.lower()
    if lowered not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)} (got {value!r})")
    return lowered


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        help=(
            "Fine-tune a LuMamba head on labelled recordings (splits by subject, seeded; upstream optimisation "
            "by default). Writes the head, splits.json, history.json and checkpoint.pt to --out and imports the "
            f"head into the local head store.\n\n{DISCLAIMER}"
        ),
    )
    def train_command(
        task: str = task_option(),
        data: Path = data_option(),
        dataset: str = dataset_option(),
        encoder: Optional[str] = typer.Option(
            None, "--encoder",
            help="Official encoder name or .safetensors file; 'none' trains from scratch. Default: the recipe's.",
        ),
        epochs: int = typer.Option(50, "--epochs", min=1, help="Maximum epochs (upstream: 50)."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Windows per step (upstream: 512)."),
        lr: float = typer.Option(5e-4, "--lr", help="Peak AdamW learning rate."),
        weight_decay: float = typer.Option(
            0.05, "--weight-decay",
            help="AdamW weight decay, applied to every trained parameter (norms and biases included), as upstream.",
        ),
        layer_decay: float = typer.Option(
            0.75, "--layer-decay", help="Layer-wise lr decay over the Mamba blocks: lr × decay^(num_blocks − i)."
        ),
        warmup_epochs: float = typer.Option(
            5.0, "--warmup-epochs", min=0,
            help="Linear warm-up from 1e-6, in epochs; then cosine to 1e-6 over all steps (upstream's timm "
            "schedule, updated every step).",
        ),
        patience: int = typer.Option(15, "--patience", min=1, help="Early stopping: epochs without val-loss gain."),
        freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train the head only."),
        class_weights: str = typer.Option("none", "--class-weights", help="none | balanced (inverse frequency)."),
        seed: int = typer.Option(0, "--seed", help="Seeds the split, the batch order and the initialisation."),
        head_option: Optional[str] = typer.Option(
            None, "--head-option", help="luna (alias luma) | mamba | linear. Default: the recipe's."
        ),
        config: str = typer.Option(
            "tiny", "--config", help="Model size: tiny (the released encoder), 8block, or key=value overrides."
        ),
        device: str = device_option(" (bf16 autocast on GPU)"),
        resume: bool = typer.Option(False, "--resume", help="Continue from <out>/checkpoint.pt (same options)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./lumamba-train-<task>)."),
        name: Optional[str] = typer.Option(None, "--name", help="Head file name (default: the task id)."),
        events: Optional[Path] = events_option(),
        labels: Optional[Path] = labels_option(),
        cache: Optional[Path] = cache_option(),
        cache_dtype: str = cache_dtype_option(),
        mode: str = typer.Option(
            "auto", "--mode",
            help="auto | whole | chunked preprocessing (as `lumamba screen --mode`). Recorded in the head: screen "
                 "and evaluate use the same policy unless told otherwise.",
        ),
        chunk_s: float = typer.Option(300.0, "--chunk-s", min=10.0, help="Chunk length in seconds (chunked mode)."),
        chunk_threshold_s: float = typer.Option(
            3600.0, "--chunk-threshold-s", min=0.0, help="auto mode: segments longer than this are chunked."
        ),
        no_import: bool = typer.Option(False, "--no-import", help="Do not copy the head into the head store."),
        json_out: bool = json_option("the result"),
        quiet: bool = typer.Option(False, "--quiet", help="Only errors on stderr."),
    ) -> None:
        from lumamba_cli import console
        from lumamba_cli.train import TrainOptions, train

        console.show_disclaimer(quiet)
        options = TrainOptions(
            task=task, data=data, dataset=dataset.lower(), encoder=encoder, epochs=epochs, batch_size=batch_size,
            lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, warmup_epochs=warmup_epochs,
            patience=patience, freeze_encoder=freeze_encoder, class_weights=class_weights.lower(), seed=seed,
            head_option=head_option, config=config, device=device, resume=resume, out=out, name=name,
            events=events, labels_file=labels, cache_dir=cache, import_to_store=not no_import,
            preprocess_mode=choice("--mode", mode, MODE_CHOICES), chunk_s=chunk_s, chunk_threshold_s=chunk_threshold_s,
            cache_dtype=choice("--cache-dtype", cache_dtype, ("float32", "float16")),
        )
        log = (lambda text: None) if quiet else (lambda text: console.err.print(text, markup=False, highlight=False))
        progress_bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            progress_bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                TimeRemainingColumn(), console=console.err, transient=True,
            )
        if progress_bar is not None:
            bar_task = {"id": None}

            def progress(epoch, step, steps, loss):
                if bar_task["id"] is None or step == 1:
                    if bar_task["id"] is not None:
                        progress_bar.remove_task(bar_task["id"])
                    bar_task["id"] = progress_bar.add_task("train", total=steps, epoch=epoch + 1, loss=loss)
                progress_bar.update(bar_task["id"], completed=step, loss=loss)

            with progress_bar:
                result = train(options, log=log, progress=progress)
        else:
            result = train(options, log=log)

        summary = {
            "task": task,
            "head": str(result.head_path),
            "head_id": result.head_id,
            "out": str(result.out_dir),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "validation": result.val_metrics,
            "data": {k: v for k, v in result.data_summary.items() if k not in ("input_sha256", "split_subjects")},
            "warnings": result.warnings,
            "disclaimer": DISCLAIMER,
        }
        if json_out:
            console.print_json(summary)
        if not quiet:
            for warning in result.warnings:
                console.err.print(f"[yellow]warning:[/] {warning}")
            where = f" and stored as [bold]{result.head_id}[/]" if result.head_id else ""
            console.err.print(
                f"head written to {result.head_path}{where} (best epoch {result.best_epoch}; "
                f"use it with `lumamba screen --task {task}` or `lumamba evaluate --task {task}`)"
            )
