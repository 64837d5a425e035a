"""The head file format, read without torch: a safetensors file whose ``lumamba_head`` metadata entry is a
:class:`HeadMetadata` JSON document.

Reading a head's metadata (the store listing, ``screen`` checking a head against its recipe before any recording is
decoded) only parses the safetensors header: an 8-byte length and a JSON object. The header is bounded in size and
nesting, so a hostile file cannot exhaust memory or the stack, and a Lightning ``.ckpt`` (a zip or pickle, not
safetensors) is recognised and named as such.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lumamba_cli import __version__
from lumamba_cli.errors import WeightsError, first_line

HEAD_METADATA_KEY = "lumamba_head"
HEAD_FORMAT_VERSION = 1
# safetensors' own reader refuses headers above 100 MB; a head's header is a few kB (142 keys + metadata).
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 32

CKPT_HINT = (
    "a checkpoint of the authors' pipeline: give --task with --head, or `lumamba heads import FILE --task TASK`; "
    "its tensors are read without running any pickled code"
)


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, tuple[tuple[int, ...], str]]  # key → (shape, dtype as written, e.g. "F32")
    metadata: dict[str, str]


def looks_like_lightning(path: Path) -> bool:
    """A PyTorch/Lightning checkpoint: a zip archive (torch.save since 1.6) or a legacy pickle stream."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def read_safetensors_header(path: Path, *, what: str = "weights file") -> SafetensorsHeader:
    """Tensor shapes and dtypes and the metadata of a safetensors file, reading only its header."""
    if not path.is_file():
        raise WeightsError(f"{what} not found" if not path.exists() else "not a regular file", path=path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length <= 1 or length > min(MAX_HEADER_BYTES, size - 8):
            if looks_like_lightning(path):
                raise WeightsError(f"is a PyTorch/Lightning checkpoint, not safetensors ({CKPT_HINT})", path=path)
            raise WeightsError(f"not a safetensors {what}: its first 8 bytes do not give a header length that fits "
                               f"the file ({size} bytes)", path=path)
        raw = handle.read(length)
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise WeightsError(f"safetensors header nested deeper than {MAX_JSON_DEPTH} levels", path=path) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"not a readable safetensors {what}: header is not JSON ({first_line(exc)})",
                           path=path) from None
    if not isinstance(document, dict):
        raise WeightsError(f"not a readable safetensors {what}: header is not a JSON object", path=path)
    metadata = document.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError("safetensors metadata must map names to strings", path=path)
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    end = 0
    for key, info in document.items():
        try:
            shape = tuple(int(d) for d in info["shape"])
            dtype = str(info["dtype"])
            start, stop = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"safetensors entry {key!r} lacks a valid shape, dtype or data_offsets",
                               path=path) from None
        if any(d < 0 for d in shape) or not 0 <= start <= stop:
            raise WeightsError(f"safetensors entry {key!r} has a negative size or offset", path=path)
        end = max(end, stop)
        tensors[key] = (shape, dtype)
    if 8 + length + end > size:
        raise WeightsError(f"truncated: the header describes {end} bytes of tensors, the file holds "
                           f"{size - 8 - length}", path=path)
    return SafetensorsHeader(tensors, dict(metadata))


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping at ``limit``."""
    if limit <= 0:
        return 0
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


class EncoderRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TrainingRecord(BaseModel):
    """How a head was trained. The fields lumamba reads back are typed; anything else recorded is kept as is."""

    model_config = ConfigDict(extra="allow")

    preprocessing: dict[str, Any] | None = None  # PreprocessPolicy.to_json() (+ modes_seen)
    cache_dtype: str | None = None
    seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    feature_cache: bool | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # dataset, split seed and subjects, window counts


class HeadMetadata(BaseModel):
    """What a head file says about itself (stored as JSON under the ``lumamba_head`` metadata key)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = HEAD_FORMAT_VERSION
    task: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # also a folder name in the store
    recipe_id: str
    recipe_hash: str  # of the recipe with recipe_options applied
    recipe_options: dict[str, str] = Field(default_factory=dict)  # e.g. {"tuh_row_order": "script"} (upstream's)
    labels: list[str]
    classification_type: str
    num_classes: int
    head_option: str | None
    config: dict[str, Any] = Field(default_factory=dict)  # LuMambaConfig.to_dict(); filled by save_head
    encoder: EncoderRef | None = None  # official file it was fine-tuned from; None = trained from scratch
    contains_encoder: bool = True  # False: only classifier.* tensors, the encoder comes from `encoder`
    tool_version: str = __version__
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    training: TrainingRecord = Field(default_factory=TrainingRecord)
    metrics: dict[str, Any] = Field(default_factory=dict)


def read_head_metadata(path: str | Path) -> HeadMetadata:
    """The validated metadata of a head file (header only); refuses anything that is not a lumamba head file."""
    path = Path(path)
    header = read_safetensors_header(path, what="head file")
    if HEAD_METADATA_KEY not in header.metadata:
        raise WeightsError(f"has no '{HEAD_METADATA_KEY}' metadata: not a lumamba head file (official encoders: "
                           "`lumamba weights`; a model fine-tuned with the authors' pipeline: give --task)", path=path)
    if not header.tensors:
        raise WeightsError("head file holds no tensors", path=path)
    try:
        document = json.loads(header.metadata[HEAD_METADATA_KEY])
    except RecursionError:
        document = None
    except ValueError as exc:
        raise WeightsError(f"'{HEAD_METADATA_KEY}' metadata is not JSON ({first_line(exc)})", path=path) from None
    if document is None or _depth(document, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH:
        raise WeightsError(f"'{HEAD_METADATA_KEY}' metadata is nested deeper than {MAX_JSON_DEPTH} levels", path=path)
    try:
        metadata = HeadMetadata.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise WeightsError(f"invalid head metadata: {where}: {first['msg']}", path=path) from None
    if metadata.format_version > HEAD_FORMAT_VERSION:
        raise WeightsError(
            f"head format {metadata.format_version} is newer than this lumamba understands ({HEAD_FORMAT_VERSION})",
            path=path, hint="upgrade lumamba",
        )
    return metadata


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file (an 8-byte header length followed by a JSON object)."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)
