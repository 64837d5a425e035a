"""`lumamba manifest merge`: join the per-shard manifests of a report folder into one manifest.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lumamba_cli.commands.options import JsonOption
from lumamba_cli.console import err, print_json

manifest_app = typer.Typer(help="Report-folder manifests (manifest.jsonl, manifest.K-of-N.jsonl of --shard runs).",
                           no_args_is_help=True)


@manifest_app.command("merge")
def merge(
    out_dir: Annotated[Path, typer.Argument(help="Report folder that --shard runs wrote into.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Write every manifest of OUT_DIR into one manifest.jsonl (atomically, each line once, in finishing order),
    remove the shard files, and rewrite summary.csv. Safe to repeat; run it after the last shard has finished."""
    from lumamba_cli.batch import Manifest, summary_rows, write_summary
    from lumamba_cli.errors import BadInputError

    if not out_dir.is_dir():
        raise BadInputError("not a report folder", path=out_dir)
    manifest = Manifest(out_dir)
    shards = [p.name for p in manifest.files() if p != manifest.path]
    if not manifest.files():
        raise BadInputError("no manifest.jsonl or manifest.K-of-N.jsonl here", path=out_dir)
    target, lines = manifest.merge()
    written = write_summary(out_dir)
    recordings = len({row["path"] for row in summary_rows(out_dir)})
    if as_json:
        print_json({"manifest": str(target), "lines": lines, "merged": shards, "recordings": recordings,
                    "summary": [str(p) for p in written]})
        return
    err.print(f"merged {len(shards)} shard manifest(s) into {escape(str(target))}: {lines} lines, "
              f"{recordings} recordings; summary in {escape(str(written[0]))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
