"""`lumamba embed`: encoder outputs per window for recordings and folders → <stem>.<recipe>.embeddings.safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.markup import escape

from lumamba_cli import DISCLAIMER
from lumamba_cli.commands.options import (
    AliasesOption,
    Backend,
    BackendOption,
    BatchSizeOption,
    DeviceOption,
    ExecutorOption,
    JsonOption,
    QuietOption,
    SchedulerOption,
)
from lumamba_cli.batch import Executor
from lumamba_cli.commands.screen import LogProgress, RichProgress
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.embedding import Pool
from lumamba_cli.preprocess import Mode

HELP = (
    "Write the encoder's output for every window of each recording: safetensors with the embeddings (mean over "
    "patches, or every patch), window times, channel names and positions, recipe, preprocessing, encoder sha256. "
    "Any montage the registry can place; deterministic (no mask, no position jitter). For fitting your own probe: "
    "see also `lumamba train --head-option ridge|logistic`. Exit codes as `lumamba screen`.\n\n" + DISCLAIMER
)


def embed_command(
    paths: Annotated[List[Path], typer.Argument(help="EDF/EDF+/BDF files, or folders walked recursively.",
                                                show_default=False)],
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="Registry name (`lumamba weights list`), an encoder file, or a head file (its encoder). "
                          "Default: the recipe's encoder.")] = None,
    task: Annotated[str, typer.Option(
        "--task", help="Recipe that prepares the windows: embed (the pre-training preprocessing, every channel the "
                       "registry can place) or a task id (its layout and preprocessing).")] = "embed",
    pool: Annotated[Pool, typer.Option("--pool", help="mean: one vector per window; none: one per patch.")]
    = Pool.mean,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for the files and manifest.jsonl (default: lumamba/ beside each input).")] = None,
    glob: Annotated[Optional[str], typer.Option("--glob", help="Only recordings matching this pattern.")] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip recordings whose embeddings exist with the same encoder, recipe, pool and "
                                "preprocessing.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes that decode and "
                                                                  "preprocess; with --executor dask, the "
                                                                  "LocalCluster's worker processes.")] = 1,
    executor: ExecutorOption = Executor.local,
    scheduler: SchedulerOption = None,
    device: DeviceOption = "auto",
    backend: BackendOption = Backend.auto,
    batch_size: BatchSizeOption = 64,
    mode: Annotated[Mode, typer.Option("--mode", help="Preprocessing mode (as `lumamba screen --mode`).")]
    = Mode.auto,
    aliases: AliasesOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    from lumamba_cli import threads
    from lumamba_cli.batch import Progress
    from lumamba_cli.embedding import EmbedOptions, run_embed

    if scheduler is not None and executor is not Executor.dask:
        raise typer.BadParameter("--scheduler needs --executor dask", param_hint="--scheduler")
    if jobs > 1 and executor is Executor.local:
        threads.configure(threads.chosen().threads if threads.chosen() else None, jobs=jobs)
    options = EmbedOptions(encoder=encoder, task=task, pool=pool, out=out, glob=glob, skip_existing=skip_existing,
                           jobs=jobs, device=device, backend=backend.value, batch_size=batch_size, mode=mode,
                           aliases=aliases, executor=executor, scheduler=scheduler)
    progress: Progress = Progress() if quiet else (RichProgress() if err.is_terminal else LogProgress())
    run = run_embed(paths, options, progress=progress)
    result, loaded = run.batch, run.encoder
    if not quiet:
        for outcome in result.outcomes:
            detail = outcome.error or "; ".join(outcome.notes)
            err.print(f"{escape(clean(outcome.found.path.name))}: {outcome.status} {escape(clean(detail))}",
                      highlight=False)
        err.print(f"{result.count('ok')} ok, {result.count('skipped')} skipped, {result.count('failed')} failed; "
                  f"encoder {loaded.name} ({loaded.sha256[:12]}…) on {loaded.device}")
    if as_json:
        print_json({**result.summary(), "disclaimer": DISCLAIMER, "encoder": loaded.describe(), "recipe": run.recipe.id,
                    "pool": pool.value, "out": sorted({str(f.out_dir) for f in run.found})})
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("embed", help=HELP)(embed_command)
