"""`lumamba evaluate`: metrics of a trained head on labelled data, with bootstrap intervals."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli.commands.options import (
    CACHE_DTYPE_HELP,
    BatchSizeOption,
    CacheOption,
    DataOption,
    DatasetOption,
    DeviceOption,
    EventsOption,
    JsonOption,
    LabelsOption,
    ModeOption,
    QuietOption,
    TaskOption,
)
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.datasets import Dataset
from lumamba_cli.evaluate import AurocScore, Split
from lumamba_cli.window_cache import CacheDtype

HELP = (
    "Evaluate a trained head on labelled data: per-window and per-recording balanced accuracy, AUROC, AUPR, Cohen's "
    f"kappa and macro F1 with bootstrap 95 % intervals, confusion matrices and the recipe's published numbers.\n\n"
    f"{DISCLAIMER}"
)

_NAMES = {
    "balanced_accuracy": "balanced accuracy",
    "auroc": "AUROC",
    "aupr": "AUPR",
    "cohen_kappa": "Cohen's κ",
    "macro_f1": "macro F1",
}
_PUBLISHED_KEYS = {
    "balanced_accuracy": ("balanced_accuracy", "bacc", "ba"),
    "auroc": ("auroc", "auc_roc", "roc_auc"),
    "aupr": ("aupr", "auc_pr", "average_precision", "pr_auc"),
    "cohen_kappa": ("cohen_kappa", "kappa"),
    "macro_f1": ("macro_f1", "f1"),
}


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _published_value(published: list[dict], metric: str) -> str:
    for entry in published:
        for key in _PUBLISHED_KEYS[metric]:
            value = entry["metrics"].get(key)
            if value is not None:
                return f"{value:.3f}"
    return "—"


def render(result: dict) -> None:
    title = (
        f"{result['task']} · {result['split']} split · {result['n_recordings']} recordings, {result['n_windows']} windows"
    )
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    levels = result["levels"]
    for level in levels:
        table.add_column(f"{level} (95% CI)", justify="right", no_wrap=True)
    table.add_column("published", justify="right", no_wrap=True)
    for metric, label in _NAMES.items():
        row = [label]
        for level in levels.values():
            m = level["metrics"][metric]
            low, high = m["ci95"]
            ci = f" ({_fmt(low)}–{_fmt(high)})" if low is not None else ""
            row.append(_fmt(m["value"]) + ci)
        row.append(_published_value(result["published"], metric))
        table.add_row(*row)
    err.print(table)
    err.print(f"ranking score: {result['auroc_score_note']}")
    for level in levels.values():
        if level.get("pooled"):
            err.print(f"pooled: {level['pooled']}")
    if result.get("per_channel"):
        channels = Table(title="per channel (artifact vs none)")
        for column in ("channel", "positives", "AUROC"):
            channels.add_column(column, justify="right" if column != "channel" else "left")
        for row in result["per_channel"]:
            channels.add_row(row["channel"], f"{row['positives']}/{row['windows']}", _fmt(row["auroc"]))
        err.print(channels)
    for name, level in levels.items():
        err.print(f"confusion matrix per {name} (rows true, columns predicted; {', '.join(result['labels'])}):")
        for label, row in zip(result["labels"], level["confusion_matrix"]):
            err.print(f"  {label:>12}: " + " ".join(f"{v:>7d}" for v in row))
        err.print(f"  bootstrap: {level['bootstrap']} resamples of {level['n_resampling_units']} {level['resampled_units']}")
    if result["published"]:
        p = result["published"][0]
        err.print(f"published: {p['source']} (encoder {p['encoder']}); {result['published_note']}")
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(clean(warning))}")


def evaluate_command(
    task: TaskOption,
    data: DataOption,
    dataset: DatasetOption = Dataset.manifest,
    head: Annotated[Optional[str], typer.Option(
        "--head", help="Head store id or .safetensors file (default: newest stored head for the task).")] = None,
    split: Annotated[Split, typer.Option(
        "--split", help="Which split to score; splits are recomputed with the head's split seed.")] = Split.test,
    auroc_score: Annotated[AurocScore, typer.Option(
        "--auroc-score", help="Rank AUROC/AUPR by the softmax probability or by the raw class-1 logit (upstream's "
                              "choice).")] = AurocScore.probability,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95 % "
                                                                      "intervals.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    events: EventsOption = None,
    labels: LabelsOption = None,
    cache: CacheOption = None,
    cache_dtype: Annotated[Optional[CacheDtype], typer.Option(
        "--cache-dtype", help="Default: the dtype the head was trained with. " + CACHE_DTYPE_HELP)] = None,
    mode: ModeOption = None,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 64,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from lumamba_cli.evaluate import EvaluateOptions, evaluate

    options = EvaluateOptions(
        task=task, data=data, dataset=dataset, head=head, split=split, auroc_score=auroc_score, bootstrap=bootstrap,
        seed=seed, events=events, labels_file=labels, cache_dir=cache, device=device, batch_size=batch_size,
        cache_dtype=cache_dtype, mode=mode,
    )
    log = None if quiet else (lambda text: err.print(clean(text), markup=False, highlight=False))
    result = evaluate(options, log=log)
    if not quiet:
        render(result)
    if as_json:
        print_json(result)


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=HELP)(evaluate_command)
