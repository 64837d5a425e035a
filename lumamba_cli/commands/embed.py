"""`lumamba embed`: encoder outputs per window for recordings and folders → <stem>.<recipe>.embeddings.safetensors."""

from __future__ import annotations

import functools
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
    JsonOption,
    QuietOption,
)
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
                                                                  "preprocess.")] = 1,
    device: DeviceOption = "auto",
    backend: BackendOption = Backend.auto,
    batch_size: BatchSizeOption = 64,
    mode: Annotated[Mode, typer.Option("--mode", help="Preprocessing mode (as `lumamba screen --mode`).")]
    = Mode.auto,
    aliases: AliasesOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    from lumamba_cli import embedding, threads
    from lumamba_cli.batch import Progress, find_recordings, run_batch
    from lumamba_cli.errors import BadInputError, UsageError
    from lumamba_cli.montage import load_registry
    from lumamba_cli.preprocess import PreprocessPolicy
    from lumamba_cli.recipes import load_recipe

    if jobs > 1:
        threads.configure(threads.chosen().threads if threads.chosen() else None, jobs=jobs)
    recipe = load_recipe(task)
    if recipe.target_sfreq is None:
        raise UsageError(f"--task {recipe.id} has no model input (it is the {recipe.purpose} recipe)")
    if aliases is not None:
        load_registry(aliases)
    found = find_recordings(paths, glob, out)
    if not found:
        raise BadInputError("no .edf/.bdf recordings found", path=", ".join(str(p) for p in paths))
    loaded = embedding.load_encoder(encoder or recipe.encoder, device=device, backend=backend.value)
    policy = PreprocessPolicy(mode)
    progress: Progress = Progress() if quiet else (RichProgress() if err.is_terminal else LogProgress())
    params = {recipe.id: {"encoder_sha256": loaded.sha256, "recipe_hash": recipe.hash, "pool": pool.value,
                          "preprocessing": policy.to_json()}}
    result = run_batch(
        found, functools.partial(embedding.produce_file, recipe, policy, aliases),
        functools.partial(embedding.consume_file, loaded, recipe, pool, batch_size, progress),
        tasks=[recipe.id], expected_outputs=lambda f: [embedding.output_name(f.stem, recipe.id)],
        skip_existing=skip_existing, jobs=jobs, progress=progress, params=params,
    )
    if len(found) == 1 and found[0].explicit and result.outcomes[0].exception is not None:
        raise result.outcomes[0].exception
    if not quiet:
        for outcome in result.outcomes:
            detail = outcome.error or "; ".join(outcome.notes)
            err.print(f"{escape(clean(outcome.found.path.name))}: {outcome.status} {escape(clean(detail))}",
                      highlight=False)
        err.print(f"{result.count('ok')} ok, {result.count('skipped')} skipped, {result.count('failed')} failed; "
                  f"encoder {loaded.name} ({loaded.sha256[:12]}…) on {loaded.device}")
    if as_json:
        print_json({**result.summary(), "disclaimer": DISCLAIMER, "encoder": loaded.describe(), "recipe": recipe.id,
                    "pool": pool.value, "out": sorted({str(f.out_dir) for f in found})})
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("embed", help=HELP)(embed_command)
