"""`lumamba weights`: the official pre-trained encoders (list, pull, verify, path, import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli import encoders as W
from lumamba_cli.commands.options import JsonOption
from lumamba_cli.console import err, print_json
from lumamba_cli.errors import UsageError, WeightsError

weights_app = typer.Typer(
    help=(
        "Official LuMamba pre-trained encoders (PulpBio/LuMamba, CC BY-ND 4.0), pinned by commit and sha256. "
        "Files are downloaded into the Hugging Face cache (HF_HOME / HF_HUB_CACHE; HF_HUB_OFFLINE=1 forbids "
        "downloads) or imported by hand into $LUMAMBA_HOME/encoders.\n\n" + DISCLAIMER
    ),
    no_args_is_help=True,
)

def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """List the official encoders, their pre-training objective and whether a verified copy is local."""
    rows = []
    for entry in W.list_encoders():
        status, path = W.local_status(entry)
        rows.append((entry, status, path))
    if as_json:
        print_json(
            {
                "disclaimer": DISCLAIMER,
                "registry": str(W.registry_path()),
                "encoders": [
                    {**entry.model_dump(mode="json"), "local": status, "path": str(path) if path else None}
                    for entry, status, path in rows
                ],
            }
        )
        return
    table = Table(title="LuMamba encoders (PulpBio/LuMamba @ pinned commit)")
    table.add_column("name", no_wrap=True)
    table.add_column("objective")
    table.add_column("model-card results")
    table.add_column("local", no_wrap=True)
    colours = {"verified": "green", "corrupt": "bold red", "absent": "dim"}
    for entry, status, _ in rows:
        results = ", ".join(entry.card_results) or "-"
        if entry.card_results and not entry.card_variant_known:
            results += " (128 vs 300 slices unknown)"
        name = entry.name + (" *" if entry.default else "")
        table.add_row(name, entry.objective, results, f"[{colours[status]}]{status}[/]")
    err.print(table)
    err.print("* default encoder")
    for entry, status, path in rows:
        if path is not None:
            err.print(f"{entry.name}: {path}" + ("" if status == "verified" else " [bold red](sha256 mismatch)[/]"))
    err.print(f"licence: CC BY-ND 4.0 (unmodified files only). Registry: {W.registry_path()}")


@weights_app.command("pull")
def pull_command(
    name: Annotated[Optional[str], typer.Argument(
        help="Encoder short name (see `lumamba weights list`); default: the default encoder.")] = None,
    all_encoders: Annotated[bool, typer.Option("--all", help="Download all four official encoders.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Download again even if a verified copy is cached.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Download an encoder at its pinned commit and check its size and sha256 (refused on mismatch)."""
    if all_encoders and name:
        raise UsageError("give either NAME or --all, not both")
    entries = W.list_encoders() if all_encoders else [W.get_encoder(name)]
    done = []
    for entry in entries:
        err.print(f"pulling {entry.name} ({entry.filename}, {entry.size:,} bytes) …")
        path = W.pull(entry.name, force=force)
        done.append({"name": entry.name, "path": str(path), "sha256": entry.sha256, "verified": True})
        err.print(f"[green]verified[/] {entry.name}: {path}")
    if as_json:
        print_json({"disclaimer": DISCLAIMER, "encoders": done})


def _verification_targets(target: Optional[str]) -> list[tuple[Path, Optional[W.EncoderEntry]]]:
    if target is None:
        found = []
        for entry in W.list_encoders():
            for candidate in W.local_copies(entry):
                found.append((candidate, entry))
        if not found:
            raise WeightsError(
                "no encoder file is present locally",
                hint="run `lumamba weights pull NAME`, or copy the file by hand and `lumamba weights import FILE`",
            )
        return found
    as_path = Path(target)
    if as_path.exists():
        return [(as_path, None)]
    if as_path.suffix == ".safetensors" or "/" in target or "\\" in target:
        raise WeightsError("no such encoder file", path=as_path)
    entry = W.get_encoder(target)
    candidates = W.local_copies(entry)
    if not candidates:
        W.encoder_path(entry.name)  # raises the standard "absent, here is how to get it" error
    return [(candidate, entry) for candidate in candidates]


@weights_app.command("verify")
def verify_command(
    target: Annotated[Optional[str], typer.Argument(
        help="An encoder file (any path) or a registry name; default: every encoder file present locally.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-read encoder files completely: sha256, size, registry match and the official 142-key layout."""
    results = [W.verify(path, expected=entry) for path, entry in _verification_targets(target)]
    if as_json:
        print_json({"disclaimer": DISCLAIMER, "results": [r.to_dict() for r in results]})
    else:
        table = Table(title="encoder verification")
        for column in ("file", "size", "sha256", "registry", "layout", "result"):
            table.add_column(column)
        for r in results:
            layout = "ok" if not r.layout_error else "[red]wrong[/]"
            table.add_row(
                str(r.path),
                f"{r.size:,}",
                r.sha256[:16] + "…",
                r.entry.name if r.entry else "[red]unknown[/]",
                layout,
                "[green]ok[/]" if r.ok else "[bold red]FAILED[/]",
            )
        err.print(table)
        for r in results:
            for problem in r.problems:
                err.print(f"[red]{r.path}:[/] {problem}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise WeightsError(f"{len(failed)} of {len(results)} encoder file(s) failed verification", path=failed[0].path)


@weights_app.command("path")
def path_command(
    name: Annotated[Optional[str], typer.Argument(help="Encoder short name; default: the default encoder.")] = None,
) -> None:
    """Print the path of a verified local copy of an encoder (stdout), or fail with how to get one."""
    typer.echo(str(W.encoder_path(name)))


@weights_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="An encoder .safetensors file copied by hand (e.g. on an air-gapped "
                                              "site).")],
    allow_unregistered: Annotated[bool, typer.Option(
        "--allow-unregistered",
        help="Accept a file whose sha256 is not an official release (its key layout is still checked).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a different file already imported under this name.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check an encoder file against the registry and copy it into $LUMAMBA_HOME/encoders."""
    result = W.import_encoder(file, allow_unregistered=allow_unregistered, force=force)
    entry = result.verification.entry
    if as_json:
        print_json(
            {
                "disclaimer": DISCLAIMER,
                "path": str(result.path),
                "encoder": entry.name if entry else None,
                "sha256": result.verification.sha256,
                "already_present": result.already_present,
            }
        )
        return
    label = entry.name if entry else "[yellow]unregistered[/]"
    verb = "already imported" if result.already_present else "imported"
    err.print(f"[green]{verb}[/] {label}: {result.path}")
    if entry is None:
        err.print("[yellow]warning: this file is not an official LuMamba release; results are not comparable.[/]")
