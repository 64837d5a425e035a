"""`lumamba evaluate`: metrics of a trained head on labelled data, with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lumamba_cli import DISCLAIMER
from lumamba_cli.commands import train as shared

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
    from rich.table import Table

    from lumamba_cli.console import err

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
        err.print(f"[yellow]warning:[/] {warning}")


def register(app: typer.Typer) -> None:
    @app.command(
        "evaluate",
        help=(
            "Evaluate a trained head on labelled data: per-window and per-recording balanced accuracy, AUROC, "
            "AUPR, Cohen's kappa and macro F1 with bootstrap 95 % intervals, confusion matrices and the "
            f"recipe's published numbers.\n\n{DISCLAIMER}"
        ),
    )
    def evaluate_command(
        task: str = shared.task_option(),
        data: Path = shared.data_option(),
        dataset: str = shared.dataset_option(),
        head: Optional[str] = typer.Option(
            None, "--head", help="Head store id or .safetensors file (default: newest stored head for the task)."
        ),
        split: str = typer.Option(
            "test", "--split", help="test | val | train | all. Splits are recomputed with the head's split seed."
        ),
        auroc_score: str = typer.Option(
            "probability", "--auroc-score",
            help="Rank AUROC/AUPR by the softmax 'probability' or by the raw class-1 'logit' (upstream's choice).",
        ),
        bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95 % intervals."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        events: Optional[Path] = shared.events_option(),
        labels: Optional[Path] = shared.labels_option(),
        cache: Optional[Path] = shared.cache_option(),
        cache_dtype: Optional[str] = typer.Option(
            None, "--cache-dtype",
            help="float32 | float16 window cache. Default: the dtype the head was trained with. "
            + shared.CACHE_DTYPE_HELP,
        ),
        mode: Optional[str] = typer.Option(
            None, "--mode", help="auto | whole | chunked. Default: the preprocessing the head was trained with."
        ),
        device: str = shared.device_option(),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Windows per forward pass."),
        json_out: bool = shared.json_option("the full result"),
        quiet: bool = typer.Option(False, "--quiet", help="No table on stderr."),
    ) -> None:
        from lumamba_cli import console
        from lumamba_cli.evaluate import EvaluateOptions, evaluate

        console.show_disclaimer(quiet)
        options = EvaluateOptions(
            task=task, data=data, dataset=dataset.lower(), head=head, split=split.lower(),
            auroc_score=auroc_score.lower(), bootstrap=bootstrap, seed=seed, events=events, labels_file=labels,
            cache_dir=cache, device=device, batch_size=batch_size,
            cache_dtype=(shared.choice("--cache-dtype", cache_dtype, ("float32", "float16"))
                         if cache_dtype is not None else None),
            mode=shared.choice("--mode", mode, shared.MODE_CHOICES) if mode is not None else None,
        )
        log = None if quiet else (lambda text: console.err.print(text, markup=False, highlight=False))
        result = evaluate(options, log=log)
        if not quiet:
            render(result)
        if json_out:
            console.print_json(result)
