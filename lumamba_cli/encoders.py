"""The official pre-trained encoders: registry, Hugging Face downloads with sha256 checks, local copies.

``models/encoders.yaml`` pins the four PulpBio/LuMamba files (repo, commit, size, sha256). A file is only ever
used after its size and sha256 match the registry, so a truncated download, a hub-side change or a hand-copied
file with the wrong content is refused instead of silently giving other numbers. The files are CC BY-ND 4.0: we
download and check them unmodified and never write an adapted copy of them. Task heads live in ``heads.py``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lumamba_cli.errors import LumambaError, NetworkError, WeightsError, first_line
from lumamba_cli.fileio import atomic_copy, sha256_file
from lumamba_cli.resources import data_file, imported_encoders_dir

ENCODERS_FILE_ENV = "LUMAMBA_ENCODERS_FILE"

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


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
    return data_file("models", "encoders.yaml")


def load_registry(registry_file: str | Path | None = None) -> EncoderRegistry:
    path = registry_path(registry_file)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError("encoder registry not found", path=path) from None
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"encoder registry unreadable: {first_line(exc)}", path=path) from None
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


def file_sha256(path: Path, *, cached: bool = True) -> str:
    """sha256 of a weights file (``cached``: reuse the digest of an unchanged file); unreadable → WeightsError."""
    try:
        return sha256_file(path, cached=cached)
    except OSError as exc:
        raise WeightsError(f"cannot read: {first_line(exc)}", path=path) from None


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
            "layout_error": self.layout_error,
            "ok": self.ok,
            "problems": list(self.problems),
        }


def layout_problem(path: Path) -> str | None:
    """Why ``path`` is not laid out as an official encoder file (142 float32 keys, prefix ``model.``), or None."""
    from lumamba_cli.model.checkpoint import check_official_layout

    try:
        check_official_layout(path)
    except WeightsError as exc:
        return exc.message
    return None


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
    sha = file_sha256(path, cached=False)
    result = Verification(path=path, size=size, sha256=sha, entry=registry.by_sha256(sha), expected=expected)
    if expected is not None:
        if size != expected.size:
            result.problems.append(f"size {size:,} bytes, expected {expected.size:,} for {expected.name}")
        if sha != expected.sha256:
            result.problems.append(f"sha256 {sha} differs from the pinned {expected.sha256} of {expected.name}")
    elif result.entry is None:
        result.problems.append(f"sha256 {sha} matches no official LuMamba file in {registry_path(registry_file)}")
    if check_key_layout:
        result.layout_error = layout_problem(path)
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
    return file_sha256(path) == entry.sha256


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
        if candidate.is_file() and file_sha256(candidate) == sha256:
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
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        if isinstance(exc, huggingface_hub.errors.LocalEntryNotFoundError):
            # Its own text is a paragraph; what it means here fits in a few words.
            reason = "the Hugging Face Hub could not be reached and the file is not cached"
        raise NetworkError(
            f"download of {entry.repo}/{entry.filename}@{entry.revision[:12]} failed: {reason}",
            hint="check the connection, or copy the file by hand and `lumamba weights import FILE`",
        ) from None
    path = Path(downloaded)
    size = path.stat().st_size if path.is_file() else -1
    sha = file_sha256(path, cached=False) if size >= 0 else ""
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
        if same_file(dest, file) or file_sha256(dest, cached=False) == check.sha256:
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


def same_file(a: Path, b: Path) -> bool:
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


