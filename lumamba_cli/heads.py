"""Task heads: the local head store and the one lookup that turns a task (and an optional ``--head``) into a head
checked against its recipe.

The public LuMamba release has no task heads, and its licence forbids sharing adapted weights: heads are trained
locally or imported, and live in ``$LUMAMBA_HOME/heads/<task>/<head_id>.safetensors``. The store's index is read
from each file's own metadata every time, so there is no second copy of the state that could drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumamba_cli.encoders import encoder_path, file_sha256, same_file
from lumamba_cli.errors import LumambaError, UsageError, WeightsError
from lumamba_cli.fileio import atomic_copy
from lumamba_cli.headfile import (
    HEAD_METADATA_KEY,
    HeadMetadata,
    TrainingRecord,
    is_safetensors,
    read_head_metadata,
    read_safetensors_header,
)
from lumamba_cli.preprocess import PreprocessPolicy
from lumamba_cli.recipes import Recipe, load_recipe, resolve_task_id
from lumamba_cli.resources import cache_dir, heads_dir

if TYPE_CHECKING:
    import torch

    from lumamba_cli.model import LuMamba

NO_HEADS_MESSAGE = (
    "the public LuMamba release has pre-trained encoders only, no task heads; train one with "
    "`lumamba train --task {task} ...` or import one with `lumamba heads import FILE`"
)


@dataclass
class HeadRecord:
    """One head in the store (or a head file given by path), described by its own metadata."""

    id: str
    path: Path
    size: int
    metadata: HeadMetadata
    in_store: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.metadata.task

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        meta = self.metadata
        data = {
            "id": self.id,
            "task": meta.task,
            "path": str(self.path),
            "size": self.size,
            "created": meta.created,
            "recipe_id": meta.recipe_id,
            "recipe_hash": meta.recipe_hash,
            "labels": meta.labels,
            "classification_type": meta.classification_type,
            "head_option": meta.head_option,
            "encoder": meta.encoder.model_dump() if meta.encoder else None,
            "contains_encoder": meta.contains_encoder,
            "in_store": self.in_store,
            "warnings": list(self.warnings),
        }
        if full:
            data["metadata"] = meta.model_dump(mode="json")
        return data


def _head_id(task: str, sha256: str) -> str:
    return f"{task}-{sha256[:12]}"


def _record(path: Path, *, in_store: bool) -> HeadRecord:
    meta = read_head_metadata(path)
    return HeadRecord(id=path.stem if in_store else _head_id(meta.task, file_sha256(path)), path=path,
                      size=path.stat().st_size, metadata=meta, in_store=in_store)


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return folder.resolve() in path.resolve().parents
    except OSError:
        return False


def canonical_task(task: str) -> str:
    """The recipe id for ``task`` (which may be an alias); ``task`` itself when no recipe knows it."""
    try:
        return resolve_task_id(task)
    except UsageError:
        return task


def list_heads(task: str | None = None, *, errors: list[str] | None = None) -> list[HeadRecord]:
    """Heads in the store, newest first. Unreadable files are skipped and described in ``errors``."""
    if task is not None:
        task = canonical_task(task)
    root = heads_dir()
    pattern = f"{task}/*.safetensors" if task else "*/*.safetensors"
    files = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith(".")) if root.is_dir() else []
    records = []
    for path in files:
        try:
            record = _record(path, in_store=True)
        except LumambaError as exc:
            if errors is not None:
                errors.append(exc.line())
            continue
        if record.task != path.parent.name:
            # Filed under the wrong folder: still listed, but its real task is what counts.
            record.warnings.append(f"stored under '{path.parent.name}/' but its metadata says task '{record.task}'")
            if task is not None and record.task != task:
                continue
        records.append(record)
    records.sort(key=lambda r: (r.metadata.created, r.path.stat().st_mtime, r.id), reverse=True)
    return records


def _find_in_store(head_id: str) -> HeadRecord:
    heads = list_heads()
    exact = [h for h in heads if h.id == head_id]
    if exact:
        return exact[0]
    prefixed = [h for h in heads if h.id.startswith(head_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise WeightsError(f"head id '{head_id}' is ambiguous: {', '.join(h.id for h in prefixed)}")
    raise WeightsError(f"no head '{head_id}' in the store ({heads_dir()})", hint="see `lumamba heads list`")


def show_head(id_or_path: str | Path) -> HeadRecord:
    """A head by store id (or unique id prefix), or any head file by path."""
    candidate = Path(id_or_path)
    if candidate.exists() or candidate.suffix in (".safetensors", ".ckpt") or os.sep in str(id_or_path):
        return _record(candidate, in_store=_is_inside(candidate, heads_dir()))
    return _find_in_store(str(id_or_path))


def head_recipe(meta: HeadMetadata, recipe: Recipe) -> Recipe:
    """The recipe a head runs with: the installed one, with the options the head was trained with applied (a head
    imported from BioFoundation keeps upstream's TUH row order)."""
    return recipe.with_options(**meta.recipe_options) if meta.recipe_options else recipe


def check_head_matches(meta: HeadMetadata, recipe: Recipe, *, path: str | Path | None = None) -> None:
    """Refuse a head whose recipe, recipe hash, labels (order included) or output type differ from ``recipe``.

    A head only means something with the preprocessing (filters, rate, window, channels) and the class order it
    was trained with: a recipe that changed since, or labels in another order, would make its outputs meaningless
    or name them wrongly.
    """
    recipe = head_recipe(meta, recipe)
    if meta.recipe_id != recipe.id:
        if meta.task != recipe.id:
            raise WeightsError(f"head was trained for task '{meta.task}' (recipe '{meta.recipe_id}'), not for "
                               f"'{recipe.id}'", path=path)
        raise WeightsError(f"head was trained with recipe '{meta.recipe_id}', not '{recipe.id}'", path=path)
    if meta.recipe_hash != recipe.hash:
        raise WeightsError(
            f"head was trained with recipe {meta.recipe_id}@{meta.recipe_hash}, but the installed recipe is "
            f"{recipe.id}@{recipe.hash} (preprocessing or labels changed)",
            path=path,
            hint="retrain the head with this lumamba version, or use the lumamba version it was trained with",
        )
    if list(meta.labels) != list(recipe.labels):
        raise WeightsError(f"head labels {meta.labels} differ from the recipe's {recipe.labels} (order matters: "
                           "output k is class k)", path=path)
    if meta.classification_type != recipe.classification_type or meta.num_classes != recipe.num_classes:
        raise WeightsError(
            f"head is a {meta.classification_type} head with {meta.num_classes} classes; recipe {recipe.id} needs "
            f"{recipe.classification_type} with {recipe.num_classes}", path=path)


def is_lumamba_head(path: Path) -> bool:
    """A lumamba head file (safetensors with ``lumamba_head`` metadata), as opposed to an upstream checkpoint."""
    try:
        return path.is_file() and is_safetensors(path) and HEAD_METADATA_KEY in read_safetensors_header(path).metadata
    except WeightsError:
        return False


def import_head(file: str | Path, *, force: bool = False, task: str | None = None, labels: list[str] | None = None,
                row_order: str | None = None) -> HeadRecord:
    """Copy a head file into the store after validating its metadata and task; returns the stored record. A
    fine-tuned model from the authors' pipeline (``.ckpt`` or its safetensors conversion) is converted first
    (:func:`convert_upstream`; needs ``task``)."""
    file = Path(file)
    if not is_lumamba_head(file) and task is not None:
        converted = convert_upstream(file, load_recipe(task), labels=labels, row_order=row_order)
        try:
            return import_head(converted, force=force)
        finally:
            converted.unlink(missing_ok=True)
    elif task is not None or labels is not None or row_order is not None:
        raise UsageError("--task, --labels and --row-order describe a checkpoint from the authors' pipeline; a "
                         "lumamba head file records them itself")
    record = _record(file, in_store=False)
    meta = record.metadata
    from lumamba_cli.model.checkpoint import head_config

    head_config(file, meta)  # a configuration out of bounds or tensors that do not fit it: refused now, not at use
    try:
        recipe = load_recipe(meta.recipe_id)
    except UsageError:
        recipe = None
    if recipe is None or recipe.id != meta.recipe_id:
        raise WeightsError(f"head was trained for recipe '{meta.recipe_id}', which this lumamba version does not "
                           "know", path=file, hint="see `lumamba screen --help` for the known tasks")
    warnings = []
    if recipe.hash != meta.recipe_hash:
        warnings.append(
            f"trained with recipe {meta.recipe_id}@{meta.recipe_hash}, the installed recipe is @{recipe.hash}: it "
            "will be refused for screening until the recipes match"
        )
    else:
        check_head_matches(meta, recipe, path=file)
    dest = heads_dir() / meta.task / f"{record.id}.safetensors"
    if dest.exists() and not force:
        if same_file(dest, file):
            raise WeightsError("this file is already the stored head", path=dest)
        if file_sha256(dest, cached=False) == file_sha256(file, cached=False):
            stored = _record(dest, in_store=True)
            stored.warnings = warnings + ["already in the store; nothing copied"]
            return stored
        raise WeightsError("a different head is stored under this id", path=dest, hint="pass --force to replace it")
    written = atomic_copy(file, dest)
    if _head_id(meta.task, written) != record.id:
        dest.unlink(missing_ok=True)
        raise WeightsError("the file changed while it was being imported; try again", path=file)
    stored = _record(dest, in_store=True)
    stored.warnings = warnings
    return stored


def remove_head(head_id: str) -> HeadRecord:
    """Delete a head from the store by id (or unique id prefix); returns what was removed."""
    record = _find_in_store(head_id)
    record.path.unlink()
    try:
        record.path.parent.rmdir()  # only succeeds when that task has no heads left
    except OSError:
        pass
    return record


# ---------------------------------------------------------------------------------------------------------------
# The head a task runs with


@dataclass(frozen=True)
class TaskHead:
    """A head checked against its recipe, with the encoder file a head-only head needs."""

    recipe: Recipe  # with the head's recipe options applied
    path: Path
    metadata: HeadMetadata
    sha256: str
    encoder_file: Path | None  # a head-only file's encoder (official or imported), verified by sha256

    @property
    def trained_policy(self) -> PreprocessPolicy | None:
        return PreprocessPolicy.from_json(self.metadata.training.preprocessing)

    def provenance(self) -> dict[str, Any]:
        """The report's description of the weights that produced its numbers."""
        encoder = self.metadata.encoder
        return {
            "encoder": {
                "name": encoder.name if encoder else None,
                # None: the head file carries its own encoder weights (fine-tuned end to end).
                "file": str(self.encoder_file) if self.encoder_file is not None else None,
                "sha256": encoder.sha256 if encoder else None,
                "embedded_in_head": self.metadata.contains_encoder,
            },
            "head": {"id": self.path.stem, "sha256": self.sha256, "file": str(self.path)},
        }

    def load(self, *, backend: str = "torch") -> LuMamba:
        """The model (eval mode) with this head's weights."""
        from lumamba_cli.model.checkpoint import load_head

        return load_head(self.path, self.encoder_file, backend=backend)[0]


def find_head(recipe: Recipe, head: str | Path | None = None) -> HeadRecord:
    """The head for ``recipe``: ``head`` (a file or store id) when given, else the newest stored head that
    matches the recipe. Refuses (exit 5) a missing head and a head for another task or recipe version. A
    checkpoint from the authors' pipeline given as ``head`` is converted on the fly (into the cache)."""
    if head is not None and Path(head).is_file() and not is_lumamba_head(Path(head)):
        converted = cache_dir("upstream-heads") / f"{file_sha256(Path(head))[:16]}.{recipe.id}.safetensors"
        if not converted.exists():
            convert_upstream(Path(head), recipe, into=converted)
        record = _record(converted, in_store=False)
        check_head_matches(record.metadata, recipe, path=head)
        return record
    if head is not None:
        record = show_head(head)
        check_head_matches(record.metadata, recipe, path=record.path)
    else:
        stored = [h for h in list_heads(recipe.id) if h.task == recipe.id]
        if not stored:
            raise WeightsError(NO_HEADS_MESSAGE.format(task=recipe.id))
        mismatched = []
        for candidate in stored:
            try:
                check_head_matches(candidate.metadata, recipe, path=candidate.path)
            except WeightsError as exc:
                mismatched.append(exc.line())
                continue
            record = candidate
            break
        else:
            raise WeightsError(
                f"{len(stored)} stored head(s) for task '{recipe.id}', but none matches the installed recipe "
                f"({mismatched[0]})",
                hint=f"train one with `lumamba train --task {recipe.id} ...` or pass --head FILE",
            )
    return record


def head_for_task(recipe: Recipe, head: str | Path | None = None) -> TaskHead:
    """:func:`find_head`, with the verified encoder a head-only file needs (refused when it is absent)."""
    record = find_head(recipe, head)
    meta = record.metadata
    encoder_file = None
    if not meta.contains_encoder:
        if meta.encoder is None:
            raise WeightsError("head-only file names no encoder", path=record.path)
        # found by content, so an encoder imported under another name still counts
        encoder_file = encoder_path(meta.encoder.name, sha256=meta.encoder.sha256)
    return TaskHead(head_recipe(meta, recipe), record.path, meta, file_sha256(record.path), encoder_file)


# ---------------------------------------------------------------------------------------------------------------
# Heads trained with the authors' pipeline (BioFoundation)


def convert_upstream(path: Path, recipe: Recipe, *, labels: list[str] | None = None, row_order: str | None = None,
                     into: Path | None = None) -> Path:
    """A lumamba head file from a fine-tuned classification model of the authors' pipeline: a Lightning ``.ckpt``
    (tensors only, ``weights_only=True``) or its ``ckpt_to_safetensor.py`` conversion (keys ``model.*``).

    The configuration is read off the key set and shapes and checked strictly against the recipe (head type,
    outputs). ``labels`` is the head's own class order when it differs from the recipe's; its output rows are
    then reordered to the recipe's. The head records upstream's preprocessing: whole-segment, and for TUH tasks
    upstream's row order (``tuh_row_order: script``) unless ``row_order`` says ``chn_order``.
    """
    import torch

    from lumamba_cli.model import LuMamba
    from lumamba_cli.model.checkpoint import infer_classification_config, read_classification_state, save_head

    state = read_classification_state(path)
    config = infer_classification_config({k: tuple(v.shape) for k, v in state.items()}, recipe.classification_type,
                                         path)
    option = config.classifier_option or "luna"
    if config.num_outputs != recipe.num_outputs:
        raise WeightsError(f"its head emits {config.num_outputs} outputs; task {recipe.id} has {recipe.num_outputs}",
                           path=path)
    if recipe.classification_type in ("mc", "mmc") and option != "mamba":
        raise WeightsError(f"task {recipe.id} needs per-channel outputs, which only a Mamba head emits", path=path)
    model = LuMamba(config)
    model.load_state_dict(state, strict=True)
    notes = ["imported from the authors' pipeline; attention heads = 2 assumed (the released encoders'; the "
             "weights' shapes do not record it)"]
    if labels is not None and list(labels) != list(recipe.labels):
        if sorted(labels) != sorted(recipe.labels) or recipe.classification_type not in ("bc", "mcc"):
            raise UsageError(f"--labels {labels} must be the recipe's labels {recipe.labels} in the head's order")
        order = [list(labels).index(name) for name in recipe.labels]  # recipe output k ← head output order[k]
        last = _last_layer(model)
        with torch.no_grad():
            last.weight.copy_(last.weight[order].clone())
            last.bias.copy_(last.bias[order].clone())
        notes.append(f"outputs reordered from the head's {list(labels)} to the recipe's {list(recipe.labels)}")
    options: dict[str, str] = {}
    if recipe.row_order_script:
        options["tuh_row_order"] = row_order or "script"
    elif row_order is not None:
        raise UsageError(f"--row-order applies to TUH tasks only, not {recipe.id}")
    effective = recipe.with_options(**options) if options else recipe
    metadata = HeadMetadata(
        task=recipe.id, recipe_id=recipe.id, recipe_hash=effective.hash, recipe_options=options,
        labels=list(recipe.labels), classification_type=recipe.classification_type, num_classes=config.num_classes,
        head_option=config.classifier_option, encoder=None, contains_encoder=True,
        training=TrainingRecord(preprocessing={"mode": "whole", "chunk_s": 300.0, "chunk_threshold_s": 3600.0},
                                source={"pipeline": "BioFoundation", "file": path.name, "sha256": file_sha256(path)},
                                notes=notes),
    )
    target = into or path.with_name(f".{path.stem}.{recipe.id}.lumamba-head.safetensors")
    return save_head(target, model, metadata)


def _last_layer(model: LuMamba) -> torch.nn.Linear:
    from lumamba_cli.model.lumamba import ClassificationHeadWithQueries, MambaClassifier

    head = model.classifier
    if isinstance(head, ClassificationHeadWithQueries):
        return head.decoder_ffn.fc2
    if isinstance(head, MambaClassifier):
        return head.fc3
    return head.fc1
