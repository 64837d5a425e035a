"""Official encoder registry, Hugging Face downloads with sha256 checks, and the local head store.

Encoders: ``models/encoders.yaml`` pins the four PulpBio/LuMamba files (repo, commit, size, sha256). A file
is only ever used after its size and sha256 match the registry, so a truncated download, a hub-side change
or a hand-copied file with the wrong content is refused instead of silently giving other numbers. The
files are CC BY-ND 4.0: we download and check them unmodified and never write an adapted copy of them.

Heads: the public release has no task heads. Heads that users train or receive live in
``$LUMAMBA_HOME/heads/<task>/<head_id>.safetensors``; the store's index is read from each file's own
``lumamba_head`` metadata every time, so there is no second copy of the state that could drift.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lumamba_cli.errors import LumambaError, NetworkError, WeightsError
from lumamba_cli.fileio import atomic_copy, atomic_write_bytes
from lumamba_cli.fileio import sha256_file as _sha256_uncached

ENCODERS_FILE_ENV = "LUMAMBA_ENCODERS_FILE"
HOME_ENV = "LUMAMBA_HOME"
HEAD_METADATA_KEY = "lumamba_head"

_SHA_CACHE_LIMIT = 512
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

NO_HEADS_MESSAGE = (
    "the public LuMamba release has pre-trained encoders only, no task heads; train one with "
    "`lumamba train --task {task} ...` or import one with `lumamba heads import FILE`"
)


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------


class EncoderEntry(BaseModel):
    """One official encoder file, pinned to a hub commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    revision: str
    filename: str = Field(pattern=r"^[^/\\]+\.safetensors$")
    size: int = Field(gt=0)
    sha256: str
    objective: Literal["lejepa+reconstruction", "lejepa-only", "reconstruction-only"]
    objective_detail: str
    sigreg_slices: int | None
    card_results: list[str]
    card_variant_known: bool
    card_note: str
    licence: str
    default: bool = False
    source: str

    @field_validator("revision")
    @classmethod
    def _full_commit(cls, value: str) -> str:
        # A branch name or short hash could silently resolve to other bytes later; only a full commit pins.
        if not _HEX40.match(value):
            raise ValueError(f"revision must be a full 40-hex commit hash, got {value!r}")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {value!r}")
        return value


class EncoderRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    encoders: list[EncoderEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "EncoderRegistry":
        for attr in ("name", "sha256", "filename"):
            values = [getattr(e, attr) for e in self.encoders]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"duplicate encoder {attr}: {', '.join(duplicates)}")
        defaults = [e.name for e in self.encoders if e.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one encoder must be the default, found {len(defaults)}: {defaults}")
        return self

    @property
    def default(self) -> EncoderEntry:
        return next(e for e in self.encoders if e.default)

    def by_sha256(self, sha256: str) -> EncoderEntry | None:
        return next((e for e in self.encoders if e.sha256 == sha256), None)


def registry_path(registry_file: str | Path | None = None) -> Path:
    """The registry in use: the argument, else ``$LUMAMBA_ENCODERS_FILE``, else the bundled encoders.yaml."""
    if registry_file is not None:
        return Path(registry_file)
    override = os.environ.get(ENCODERS_FILE_ENV)
    if override:
        return Path(override).expanduser()
    from lumamba_cli.resources import data_file

    return data_file("models", "encoders.yaml")


def load_registry(registry_file: str | Path | None = None) -> EncoderRegistry:
    path = registry_path(registry_file)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError("encoder registry not found", path=path) from None
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"encoder registry unreadable: {_first_line(exc)}", path=path) from None
    try:
        return EncoderRegistry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise WeightsError(f"encoder registry invalid: {problems}", path=path) from None


def list_encoders(registry_file: str | Path | None = None) -> list[EncoderEntry]:
    return list(load_registry(registry_file).encoders)


def get_encoder(name: str | None = None, registry_file: str | Path | None = None) -> EncoderEntry:
    """Entry by short name (or by its file name); ``None`` gives the default encoder."""
    registry = load_registry(registry_file)
    if name is None:
        return registry.default
    for entry in registry.encoders:
        if name in (entry.name, entry.filename):
            return entry
    known = ", ".join(e.name for e in registry.encoders)
    raise WeightsError(f"unknown encoder '{name}' (known: {known})")


# --------------------------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------------------------


def lumamba_home() -> Path:
    """``$LUMAMBA_HOME``, else the platform's user data folder for lumamba."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lumamba", appauthor=False))


def imported_encoders_dir() -> Path:
    return lumamba_home() / "encoders"


def heads_dir() -> Path:
    return lumamba_home() / "heads"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment *now*.

    huggingface_hub reads HF_HOME / HF_HUB_CACHE once at import; resolving them per call (same rules) means a
    change of environment after import (tests, embedding applications) is still honoured.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


# --------------------------------------------------------------------------------------------------------------
# sha256 (streaming, with a small (path, size, mtime) cache for repeated loads)
# --------------------------------------------------------------------------------------------------------------


def _sha_cache_path() -> Path:
    return lumamba_home() / "cache" / "sha256.json"


def _read_sha_cache() -> dict[str, list]:
    try:
        data = json.loads(_sha_cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        # A missing or damaged cache only costs a recomputation.
        return {}


def _write_sha_cache(cache: dict[str, list]) -> None:
    if len(cache) > _SHA_CACHE_LIMIT:
        cache = dict(list(cache.items())[-_SHA_CACHE_LIMIT:])
    try:
        atomic_write_bytes(_sha_cache_path(), json.dumps(cache, indent=0).encode("utf-8"))
    except OSError:
        pass  # read-only home: the cache is an optimisation only


def sha256_file(path: str | Path, *, use_cache: bool = True) -> str:
    """Hex sha256 of a file, read in chunks. ``use_cache=False`` always re-reads (and refreshes the cache)."""
    path = Path(path)
    try:
        stat = path.stat()
        key = str(path.resolve())
    except OSError as exc:
        raise WeightsError(f"cannot read: {_first_line(exc)}", path=path) from None
    cache = _read_sha_cache()
    if use_cache:
        hit = cache.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            return str(hit[2])
    try:
        value = _sha256_uncached(path)
    except OSError as exc:
        raise WeightsError(f"cannot read: {_first_line(exc)}", path=path) from None
    cache.pop(key, None)
    cache[key] = [stat.st_size, stat.st_mtime_ns, value]
    _write_sha_cache(cache)
    return value


# --------------------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Verification:
    """What is known about one encoder file after reading all of it."""

    path: Path
    size: int
    sha256: str
    entry: EncoderEntry | None  # the registry entry whose sha256 matches, if any
    expected: EncoderEntry | None = None  # the entry the caller asked for, if any
    layout_checked: bool = False
    layout_error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "matches": self.entry.name if self.entry else None,
            "expected": self.expected.name if self.expected else None,
            "layout_checked": self.layout_checked,
            "layout_error": self.layout_error,
            "ok": self.ok,
            "problems": list(self.problems),
        }


def _layout_checker():
    """``check_official_layout`` from the checkpoint module, or None if that module is not available."""
    try:
        from lumamba_cli.model.checkpoint import check_official_layout
    except ImportError:
        return None
    return check_official_layout


def check_layout(path: Path) -> tuple[bool, str | None]:
    """(checked, error): run the official 142-key layout check; error is None when the layout is right."""
    checker = _layout_checker()
    if checker is None:
        return False, None
    try:
        result = checker(path)
    except LumambaError as exc:
        return True, exc.message
    except Exception as exc:  # a safetensors parse error etc. still means "not the official layout"
        return True, f"{type(exc).__name__}: {_first_line(exc)}"
    problems = _problems_from(result)
    return True, ("; ".join(problems) if problems else None)


def _problems_from(result: Any) -> list[str]:
    # The checker may return None/True (fine), False, a list of problems, or an object with .ok/.problems.
    if result is None or result is True:
        return []
    if result is False:
        return ["key layout differs from the official checkpoint"]
    if isinstance(result, str):
        return [result] if result else []
    if isinstance(result, (list, tuple)):
        return [str(p) for p in result]
    if hasattr(result, "ok"):
        if result.ok:
            return []
        return [str(p) for p in getattr(result, "problems", [])] or ["key layout differs from the official checkpoint"]
    return []


def verify(
    path: str | Path,
    *,
    expected: str | EncoderEntry | None = None,
    check_key_layout: bool = True,
    registry_file: str | Path | None = None,
) -> Verification:
    """Re-read ``path`` completely (no cache): sha256, size, matching registry entry and key layout.

    Never raises for a wrong file: the problems are listed in the result so a command can report them all.
    Raises ``WeightsError`` only when the file cannot be read at all.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError("no such encoder file" if not path.exists() else "not a regular file", path=path)
    registry = load_registry(registry_file)
    if isinstance(expected, str):
        expected = get_encoder(expected, registry_file)
    size = path.stat().st_size
    sha = sha256_file(path, use_cache=False)
    result = Verification(path=path, size=size, sha256=sha, entry=registry.by_sha256(sha), expected=expected)
    if expected is not None:
        if size != expected.size:
            result.problems.append(f"size {size:,} bytes, expected {expected.size:,} for {expected.name}")
        if sha != expected.sha256:
            result.problems.append(f"sha256 {sha} differs from the pinned {expected.sha256} of {expected.name}")
    elif result.entry is None:
        result.problems.append(f"sha256 {sha} matches no official LuMamba file in {registry_path(registry_file)}")
    if check_key_layout:
        result.layout_checked, result.layout_error = check_layout(path)
        if result.layout_error:
            result.problems.append(f"layout: {result.layout_error}")
    return result


def _matches(path: Path, entry: EncoderEntry) -> bool:
    """Cheap check for repeated use: size first, then the (cached) sha256."""
    try:
        if path.stat().st_size != entry.size:
            return False
    except OSError:
        return False
    return sha256_file(path) == entry.sha256


# --------------------------------------------------------------------------------------------------------------
# Encoders: download, find, import
# --------------------------------------------------------------------------------------------------------------


def _hub_cached_file(entry: EncoderEntry) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            entry.repo, entry.filename, cache_dir=str(hub_cache_dir()), revision=entry.revision
        )
    except Exception:
        return None  # an unreadable cache behaves like an empty one
    if isinstance(found, (str, os.PathLike)) and Path(found).is_file():
        return Path(found)
    return None


def local_copies(entry: EncoderEntry) -> list[Path]:
    """Files that should hold ``entry`` (HF cache, then imported folder), not yet checked."""
    found = [p for p in (_hub_cached_file(entry), imported_encoders_dir() / entry.filename) if p is not None]
    return [p for p in found if p.is_file()]


def _absent_hint(entry: EncoderEntry) -> str:
    return (
        f"run `lumamba weights pull {entry.name}`, or copy the file by hand and "
        f"`lumamba weights import FILE`"
    )


def encoder_path(
    name: str | None = None, *, sha256: str | None = None, registry_file: str | Path | None = None
) -> Path:
    """A local, verified copy of encoder ``name`` (default encoder when None). Never downloads.

    With ``sha256`` (e.g. from a head file's metadata) the content decides: a registered hash selects its
    entry whatever the name says, and an unregistered one is looked up among the imported encoders, where
    `lumamba weights import --allow-unregistered` put it.
    """
    entry = None
    if sha256 is not None:
        entry = load_registry(registry_file).by_sha256(sha256)
        if entry is None:
            return _unregistered_encoder_path(name, sha256)
    entry = entry or get_encoder(name, registry_file)
    bad: list[Path] = []
    for candidate in local_copies(entry):
        if _matches(candidate, entry):
            return candidate
        bad.append(candidate)
    if bad:
        raise WeightsError(
            f"local copy of encoder {entry.name} does not match the pinned size/sha256 {entry.sha256[:12]}…",
            path=bad[0],
            hint=f"delete it, then {_absent_hint(entry)}",
        )
    where = f"not in the Hugging Face cache ({hub_cache_dir()}) nor in {imported_encoders_dir()}"
    if hub_offline():
        where += "; HF_HUB_OFFLINE is set, so it cannot be downloaded now"
    raise WeightsError(f"encoder {entry.name} ({entry.filename}) is {where}", hint=_absent_hint(entry))


def _unregistered_encoder_path(name: str | None, sha256: str) -> Path:
    folder = imported_encoders_dir()
    candidates = [folder / Path(name).name] if name else []
    candidates += sorted(p for p in folder.glob("*.safetensors") if p not in candidates) if folder.is_dir() else []
    for candidate in candidates:
        if candidate.is_file() and sha256_file(candidate) == sha256:
            return candidate
    raise WeightsError(
        f"encoder {name or '?'} (sha256 {sha256[:12]}…) is not an official release and is not among the "
        f"imported encoders in {folder}",
        hint="copy that file here and `lumamba weights import FILE --allow-unregistered`",
    )


def pull(
    name: str | None = None, *, force: bool = False, registry_file: str | Path | None = None
) -> Path:
    """Download encoder ``name`` at its pinned commit into the HF cache, check it, and return its path."""
    entry = get_encoder(name, registry_file)
    cached = _hub_cached_file(entry)
    cached_ok = cached is not None and _matches(cached, entry)
    # A full commit hash never changes, so a verified cached copy needs no network round trip.
    if cached_ok and not force:
        return cached
    if cached is not None and not cached_ok:
        if hub_offline():
            raise WeightsError(
                f"cached copy of encoder {entry.name} does not match the pinned size/sha256, and HF_HUB_OFFLINE "
                "is set so it cannot be replaced",
                path=cached,
                hint="delete it and pull again when online, or `lumamba weights import FILE`",
            )
        # The hub trusts its cache for a pinned commit and would hand the damaged file back unchanged.
        _discard_from_cache(cached, hub_cache_dir())
    if hub_offline():
        raise NetworkError(
            f"cannot download encoder {entry.name} ({entry.filename}): HF_HUB_OFFLINE is set and the file is "
            f"not in the Hugging Face cache ({hub_cache_dir()})",
            hint="unset HF_HUB_OFFLINE, or copy the file by hand and `lumamba weights import FILE`",
        )
    import huggingface_hub
    import huggingface_hub.errors

    cache_dir = hub_cache_dir()
    try:
        downloaded = huggingface_hub.hf_hub_download(
            entry.repo,
            entry.filename,
            revision=entry.revision,
            cache_dir=str(cache_dir),
            force_download=force,
        )
    except (KeyboardInterrupt, LumambaError):
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        if isinstance(exc, huggingface_hub.errors.LocalEntryNotFoundError):
            # Its own text is a paragraph; what it means here fits in a few words.
            reason = "the Hugging Face Hub could not be reached and the file is not cached"
        raise NetworkError(
            f"download of {entry.repo}/{entry.filename}@{entry.revision[:12]} failed: {reason}",
            hint="check the connection, or copy the file by hand and `lumamba weights import FILE`",
        ) from None
    path = Path(downloaded)
    size = path.stat().st_size if path.is_file() else -1
    sha = sha256_file(path, use_cache=False) if size >= 0 else ""
    if size != entry.size or sha != entry.sha256:
        deleted = _discard_from_cache(path, cache_dir)
        raise WeightsError(
            f"downloaded {entry.filename} is {size:,} bytes with sha256 {sha or '-'}, but the pinned "
            f"{entry.name} is {entry.size:,} bytes with sha256 {entry.sha256}; refusing to use it"
            + ("; the bad file was deleted" if deleted else ""),
            path=path,
        )
    return path


def _discard_from_cache(path: Path, cache_dir: Path) -> bool:
    """Delete a bad download (snapshot link and blob) so the hub does not serve it again; only inside the cache."""
    try:
        root = cache_dir.resolve()
        targets = [path.parent.resolve() / path.name, path.resolve()]
        if not all(root in t.parents for t in targets):
            return False
        for target in targets:
            target.unlink(missing_ok=True)
        return True
    except OSError:
        return False


@dataclass
class ImportResult:
    path: Path
    verification: Verification
    already_present: bool


def import_encoder(
    file: str | Path,
    *,
    allow_unregistered: bool = False,
    force: bool = False,
    registry_file: str | Path | None = None,
) -> ImportResult:
    """Register an encoder file copied by hand (air-gapped sites) into ``$LUMAMBA_HOME/encoders``.

    A file whose sha256 is in the registry is copied under its official name. Any other file is refused
    unless ``allow_unregistered``; even then its key layout must be the official one.
    """
    file = Path(file)
    check = verify(file, registry_file=registry_file)
    registry = load_registry(registry_file)
    if check.entry is None:
        if not allow_unregistered:
            raise WeightsError(
                f"sha256 {check.sha256} matches no official LuMamba encoder; refusing to import it",
                path=file,
                hint="check the download, or pass --allow-unregistered (its key layout is still checked)",
            )
        if not check.layout_checked:
            raise WeightsError(
                "cannot import an unregistered encoder: the key-layout check (lumamba_cli.model.checkpoint) "
                "is not available in this installation",
                path=file,
            )
        if any(e.filename == file.name for e in registry.encoders):
            raise WeightsError(
                "an unregistered file may not carry the name of an official encoder file; rename it first",
                path=file,
            )
        dest = imported_encoders_dir() / file.name
    else:
        dest = imported_encoders_dir() / check.entry.filename
    if check.layout_error:
        raise WeightsError(f"not in the official LuMamba checkpoint layout: {check.layout_error}", path=file)

    if dest.exists():
        if _same_file(dest, file) or sha256_file(dest, use_cache=False) == check.sha256:
            return ImportResult(dest, check, already_present=True)
        if not force:
            raise WeightsError(
                "a different file with this name is already imported", path=dest, hint="pass --force to replace it"
            )
    written = atomic_copy(file, dest)
    if written != check.sha256:
        dest.unlink(missing_ok=True)
        raise WeightsError("the file changed while it was being imported; try again", path=file)
    return ImportResult(dest, check, already_present=False)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def local_status(entry: EncoderEntry) -> tuple[str, Path | None]:
    """("verified" | "corrupt" | "absent", path) using the cached sha256 (cheap enough for `weights list`)."""
    bad = None
    for candidate in local_copies(entry):
        if _matches(candidate, entry):
            return "verified", candidate
        bad = bad or candidate
    return ("corrupt", bad) if bad else ("absent", None)


# --------------------------------------------------------------------------------------------------------------
# Head store
# --------------------------------------------------------------------------------------------------------------

_REQUIRED_HEAD_FIELDS = ("task", "recipe_id", "recipe_hash", "labels", "classification_type", "num_classes")


@dataclass
class HeadRecord:
    """One head in the store (or a head file given by path), described by its own metadata."""

    id: str
    task: str
    path: Path
    size: int
    created: str | None
    recipe_id: str
    recipe_hash: str
    metadata: dict[str, Any]
    in_store: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def encoder(self) -> dict | None:
        return self.metadata.get("encoder")

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id,
            "task": self.task,
            "path": str(self.path),
            "size": self.size,
            "created": self.created,
            "recipe_id": self.recipe_id,
            "recipe_hash": self.recipe_hash,
            "labels": self.metadata.get("labels"),
            "classification_type": self.metadata.get("classification_type"),
            "head_option": self.metadata.get("head_option"),
            "encoder": self.encoder,
            "contains_encoder": self.metadata.get("contains_encoder"),
            "in_store": self.in_store,
            "warnings": list(self.warnings),
        }
        if full:
            data["metadata"] = self.metadata
        return data


def read_head_metadata(path: str | Path) -> dict[str, Any]:
    """The ``lumamba_head`` metadata of a head file, validated; reads only the safetensors header."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("no such head file" if not path.exists() else "not a regular file", path=path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            n_tensors = len(list(handle.keys()))
    except Exception as exc:
        raise WeightsError(f"not a readable safetensors file: {_first_line(exc)}", path=path) from None
    if HEAD_METADATA_KEY not in metadata:
        raise WeightsError(
            f"no '{HEAD_METADATA_KEY}' metadata: not a lumamba head (official encoders are handled by "
            "`lumamba weights`)",
            path=path,
        )
    if n_tensors == 0:
        raise WeightsError("head file holds no tensors", path=path)
    try:
        data = json.loads(metadata[HEAD_METADATA_KEY])
    except ValueError as exc:
        raise WeightsError(f"'{HEAD_METADATA_KEY}' metadata is not JSON: {_first_line(exc)}", path=path) from None
    if not isinstance(data, dict):
        raise WeightsError(f"'{HEAD_METADATA_KEY}' metadata is not a JSON object", path=path)
    return _validate_head_metadata(data, path)


def _validate_head_metadata(data: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        from lumamba_cli.model.checkpoint import HEAD_FORMAT_VERSION, HeadMetadata
    except ImportError:
        HeadMetadata = None  # noqa: N806 - the class name, when the module exists
    if HeadMetadata is not None:
        try:
            model = HeadMetadata.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise WeightsError(f"invalid head metadata: {where}: {first['msg']}", path=path) from None
        version = getattr(model, "format_version", None)
        if isinstance(version, int) and version > HEAD_FORMAT_VERSION:
            raise WeightsError(
                f"head format {version} is newer than this lumamba understands ({HEAD_FORMAT_VERSION})",
                path=path,
                hint="upgrade lumamba",
            )
        return model.model_dump(mode="json")
    missing = [key for key in _REQUIRED_HEAD_FIELDS if key not in data]
    if missing:
        raise WeightsError(f"invalid head metadata: missing {', '.join(missing)}", path=path)
    for key in ("task", "recipe_id", "recipe_hash"):
        if not isinstance(data[key], str) or not data[key]:
            raise WeightsError(f"invalid head metadata: {key} must be a non-empty string", path=path)
    return data


def _safe_task_name(task: str, path: Path) -> str:
    # The task becomes a folder name; refuse anything that could escape the store.
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", task):
        raise WeightsError(f"invalid task name {task!r} in head metadata", path=path)
    return task


def _record(path: Path, *, in_store: bool) -> HeadRecord:
    meta = read_head_metadata(path)
    task = _safe_task_name(str(meta["task"]), path)
    return HeadRecord(
        id=path.stem if in_store else _head_id(task, sha256_file(path)),
        task=task,
        path=path,
        size=path.stat().st_size,
        created=meta.get("created") if isinstance(meta.get("created"), str) else None,
        recipe_id=str(meta["recipe_id"]),
        recipe_hash=str(meta["recipe_hash"]),
        metadata=meta,
        in_store=in_store,
    )


def _head_id(task: str, sha256: str) -> str:
    return f"{task}-{sha256[:12]}"


def _store_files(task: str | None = None) -> Iterable[Path]:
    root = heads_dir()
    if not root.is_dir():
        return []
    pattern = f"{task}/*.safetensors" if task else "*/*.safetensors"
    return sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("."))


def canonical_task(task: str) -> str:
    """The recipe id for ``task`` (which may be an alias); ``task`` itself when no recipe knows it."""
    try:
        from lumamba_cli.recipes import resolve_task_id
    except ImportError:
        return task
    try:
        return resolve_task_id(task)
    except (LumambaError, FileNotFoundError, KeyError, ValueError):
        return task


def list_heads(task: str | None = None, *, errors: list[str] | None = None) -> list[HeadRecord]:
    """Heads in the store, newest first. Unreadable files are skipped and described in ``errors``."""
    if task is not None:
        task = canonical_task(task)
    records = []
    for path in _store_files(task):
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
    records.sort(key=_newest_key, reverse=True)
    return records


def _newest_key(record: HeadRecord) -> tuple[str, float, str]:
    return (record.created or "", record.path.stat().st_mtime, record.id)


def _find_in_store(head_id: str) -> HeadRecord:
    heads = list_heads()
    exact = [h for h in heads if h.id == head_id]
    if exact:
        return exact[0]
    prefixed = [h for h in heads if h.id.startswith(head_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise WeightsError(
            f"head id '{head_id}' is ambiguous: {', '.join(h.id for h in prefixed)}",
        )
    raise WeightsError(f"no head '{head_id}' in the store ({heads_dir()})", hint="see `lumamba heads list`")


def show_head(id_or_path: str | Path) -> HeadRecord:
    """A head by store id (or unique id prefix), or any head file by path."""
    candidate = Path(id_or_path)
    if candidate.suffix == ".safetensors" or candidate.exists():
        in_store = _is_inside(candidate, heads_dir())
        return _record(candidate, in_store=in_store)
    return _find_in_store(str(id_or_path))


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return folder.resolve() in path.resolve().parents
    except OSError:
        return False


def _recipe_known(recipe_id: str) -> tuple[bool, Any]:
    """(known, recipe or None). Uses lumamba_cli.recipes when present, else the bundled task files."""
    try:
        from lumamba_cli.recipes import load_recipe
    except ImportError:
        load_recipe = None
    if load_recipe is not None:
        try:
            recipe = load_recipe(recipe_id)
        except (LumambaError, FileNotFoundError, KeyError, ValueError):
            return False, None
        # load_recipe also accepts aliases; a head must name the recipe by its id, as check_head_matches does.
        return getattr(recipe, "id", recipe_id) == recipe_id, recipe
    from lumamba_cli.resources import data_file

    try:
        return data_file("models", "tasks", f"{recipe_id}.yaml").is_file(), None
    except FileNotFoundError:
        return False, None


def import_head(file: str | Path, *, force: bool = False) -> HeadRecord:
    """Copy a head file into the store after validating its metadata and task; returns the stored record."""
    file = Path(file)
    record = _record(file, in_store=False)
    known, recipe = _recipe_known(record.recipe_id)
    if not known:
        raise WeightsError(
            f"head was trained for recipe '{record.recipe_id}', which this lumamba version does not know",
            path=file,
            hint="see `lumamba screen --help` for the known tasks",
        )
    warnings = []
    recipe_hash = getattr(recipe, "hash", None)
    if recipe_hash is not None and recipe_hash != record.recipe_hash:
        warnings.append(
            f"trained with recipe {record.recipe_id}@{record.recipe_hash}, the installed recipe is "
            f"@{recipe_hash}: it will be refused for screening until the recipes match"
        )
    dest = heads_dir() / record.task / f"{record.id}.safetensors"
    if dest.exists() and not force:
        if _same_file(dest, file):
            raise WeightsError("this file is already the stored head", path=dest)
        if sha256_file(dest, use_cache=False) == sha256_file(file, use_cache=False):
            stored = _record(dest, in_store=True)
            stored.warnings = warnings + ["already in the store; nothing copied"]
            return stored
        raise WeightsError("a different head is stored under this id", path=dest, hint="pass --force to replace it")
    written = atomic_copy(file, dest)
    if _head_id(record.task, written) != record.id:
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


def _field(meta: Any, name: str) -> Any:
    return meta.get(name) if isinstance(meta, dict) else getattr(meta, name, None)


def check_head_matches(meta: Any, recipe: Any, *, path: str | Path | None = None) -> None:
    """Refuse a head whose task or recipe hash differs from ``recipe`` (anything with ``.id`` and ``.hash``).

    A head only means something with the preprocessing (filters, rate, window, channels, labels) it was
    trained with, so a recipe that changed since training makes its outputs meaningless.
    """
    recipe_id = getattr(recipe, "id", None)
    recipe_hash = getattr(recipe, "hash", None)
    head_recipe = _field(meta, "recipe_id")
    head_task = _field(meta, "task")
    if head_recipe != recipe_id and head_task != recipe_id:
        raise WeightsError(
            f"head was trained for task '{head_task}' (recipe '{head_recipe}'), not for '{recipe_id}'", path=path
        )
    if head_recipe != recipe_id:
        raise WeightsError(f"head was trained with recipe '{head_recipe}', not '{recipe_id}'", path=path)
    head_hash = _field(meta, "recipe_hash")
    if recipe_hash is not None and head_hash != recipe_hash:
        raise WeightsError(
            f"head was trained with recipe {head_recipe}@{head_hash}, but the installed recipe is "
            f"{recipe_id}@{recipe_hash} (preprocessing or labels changed)",
            path=path,
            hint="retrain the head with this lumamba version, or use the lumamba version it was trained with",
        )


def resolve_head(task: str, head: str | Path | None = None, *, recipe: Any = None) -> Path:
    """The head file to use for ``task``: ``head`` (path or store id) when given, else the newest stored one.

    With ``recipe`` (``.id``/``.hash``) the chosen head must match it; without, only the task is checked.
    ``task`` may be a recipe alias (``abnormal`` for ``tuab``); heads are filed under the recipe id.
    """
    task = getattr(recipe, "id", None) or canonical_task(task)
    if head is not None:
        candidate = Path(head)
        if candidate.exists() or candidate.suffix == ".safetensors" or os.sep in str(head):
            record = _record(candidate, in_store=_is_inside(candidate, heads_dir()))
        else:
            record = _find_in_store(str(head))
        if record.task != task and record.recipe_id != task:
            raise WeightsError(f"head is for task '{record.task}', not '{task}'", path=record.path)
        if recipe is not None:
            check_head_matches(record.metadata, recipe, path=record.path)
        return record.path

    heads = [h for h in list_heads(task) if h.task == task]
    if not heads:
        raise WeightsError(NO_HEADS_MESSAGE.format(task=task))
    if recipe is None:
        return heads[0].path
    mismatched = []
    for record in heads:
        try:
            check_head_matches(record.metadata, recipe, path=record.path)
            return record.path
        except WeightsError as exc:
            mismatched.append(exc.line())
    raise WeightsError(
        f"{len(heads)} stored head(s) for task '{task}', but none matches the installed recipe "
        f"({mismatched[0]})",
        hint=f"train one with `lumamba train --task {task} ...` or pass --head FILE",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
