"""Task recipes: how a recording becomes model input for one downstream task (``models/tasks/<id>.yaml``).

A recipe pins everything the preprocessing and the head depend on: the channel layout and how it is derived
from the file, the filters, the target rate, the window grid, the normalisation, the recommended official encoder
and the head type. Two runs with the same ``Recipe.hash`` prepare their input identically, so the hash goes into
every report and every stored head.

Where upstream BioFoundation has a known defect, the default recipe does the physically correct thing and lists
the difference under ``upstream_differences``; an option reproduces upstream exactly where that is feasible
(``tuh_row_order: script``, ``filter_scope: per_window``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lumamba_cli.errors import UsageError
from lumamba_cli.resources import data_dir

# The model cuts each window into 40-sample patches (spec Q8): any other length fails inside the encoder.
PATCH_SAMPLES = 40

ClassificationType = Literal["bc", "mcc", "mc", "mmc", "ml", "regression", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bandpass(_Strict):
    """MNE ``filter(l_freq, h_freq)`` with its FIR defaults; only the defaults upstream used are accepted."""

    l_freq: float | None = Field(description="high-pass edge in Hz (None: no high-pass)")
    h_freq: float | None = Field(description="low-pass edge in Hz (None: no low-pass)")
    method: Literal["fir"] = "fir"
    fir_design: Literal["firwin"] = "firwin"
    fir_window: Literal["hamming"] = "hamming"
    phase: Literal["zero"] = "zero"
    filter_length: Literal["auto"] = "auto"
    l_trans_bandwidth: Literal["auto"] = "auto"
    h_trans_bandwidth: Literal["auto"] = "auto"
    pad: Literal["reflect_limited"] = "reflect_limited"

    @model_validator(mode="after")
    def _edges(self) -> Bandpass:
        if self.l_freq is None and self.h_freq is None:
            raise ValueError("a band-pass needs l_freq or h_freq (use `bandpass: null` for no filter)")
        if self.l_freq is not None and self.h_freq is not None and not 0 < self.l_freq < self.h_freq:
            raise ValueError("need 0 < l_freq < h_freq")
        return self


class Notch(_Strict):
    """MNE ``notch_filter(freq)``: the fundamental only, stop band freq/200 wide, 1 Hz transitions."""

    freq: float = Field(gt=0, description="mains frequency in Hz (fundamental only, as upstream)")
    trans_bandwidth: float = 1.0
    notch_widths: None = None
    method: Literal["fir"] = "fir"
    pad: Literal["reflect_limited"] = "reflect_limited"


class Normalisation(_Strict):
    """Per-window, per-channel z-score applied just before the model (spec §3.0, ``ChannelWiseNormalize``)."""

    kind: Literal["zscore_window_channel"] = "zscore_window_channel"
    ddof: Literal[1] = 1
    eps: float = Field(1e-8, description="added to the std, in the units given by `units`")
    units: Literal["uV", "V"] = Field(
        "uV", description="units the upstream z-score saw; the eps only matters relative to them (Mumtaz: V)"
    )
    dtype: Literal["float32"] = "float32"

    @property
    def eps_uv(self) -> float:
        """The same eps expressed for data in µV: (x_V − m)/(s_V + eps) = (x_µV − m')/(s_µV + eps·1e6)."""
        return self.eps * (1e6 if self.units == "V" else 1.0)


class PublishedResult(_Strict):
    encoder: str = Field(description="short name of the pre-trained encoder the card attributes the result to")
    metrics: dict[str, float]
    source: str
    note: str | None = None


class UpstreamDifference(_Strict):
    id: str
    upstream: str = Field(description="what BioFoundation does")
    ours: str = Field(description="what this recipe does by default, and why")
    effect: str | None = None
    reproduce_upstream: str | None = Field(None, description="the recipe option that reproduces upstream, if any")


class Recipe(_Strict):
    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str
    aliases: list[str] = Field(default_factory=list)
    purpose: Literal["model", "qc", "embed"] = "model"

    labels: list[str] = Field(description="output names: class names, or per-output names for mc/mmc/regression")
    classification_type: ClassificationType
    num_outputs: int = Field(ge=0, description="size of the head's output layer")
    num_classes: int = Field(ge=0, description="classes per output (upstream `num_classes`)")
    head_option: Literal["luna", "mamba", "linear"] | None = "luna"
    classification_num_channels: int | None = None

    layout: str | None = Field(description="montages/layouts name; None: every EEG channel of the file (qc)")
    derivation: Literal["tcp_bipolar_from_referential", "bipolar_direct", "referential", "all_eeg"]
    row_order_script: list[str] | None = Field(
        None, description="upstream script's row order, used when tuh_row_order is 'script'"
    )
    tuh_row_order: Literal["chn_order", "script"] = "chn_order"
    units_read: Literal["uV", "V"] = Field("uV", description="units upstream read the file in (informational)")

    bandpass: Bandpass | None
    notch: Notch | None
    filter_scope: Literal["continuous", "per_window"] = Field(
        "continuous", description="filter each contiguous segment whole, or each window alone (APAVA upstream)"
    )
    target_sfreq: float | None = Field(description="Hz; None keeps the native rate (qc)")
    upstream_resampled: bool = Field(True, description="whether upstream's data needed resampling at all")
    resample_method: Literal["fft"] = "fft"
    window_s: float = Field(gt=0)
    step_s: float = Field(gt=0)
    normalisation: Normalisation | None = Field(default_factory=Normalisation)

    encoder: str | None = Field(description="recommended official encoder (models/encoders.yaml short name)")
    published: list[PublishedResult] = Field(default_factory=list)
    upstream_differences: list[UpstreamDifference] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.step_s > self.window_s + 1e-12:
            raise ValueError("step_s larger than window_s would skip data between windows")
        if self.target_sfreq is not None:
            n = self.window_s * self.target_sfreq
            if abs(n - round(n)) > 1e-6:
                raise ValueError(f"window_s × target_sfreq = {n} is not a whole number of samples")
            if self.purpose in ("model", "embed") and round(n) % PATCH_SAMPLES:
                raise ValueError(f"window of {round(n)} samples is not a multiple of {PATCH_SAMPLES} (spec Q8)")
        if self.purpose == "model" and (self.layout is None or self.target_sfreq is None):
            raise ValueError("a model recipe needs a layout and a target_sfreq")
        if self.purpose == "embed" and self.target_sfreq is None:
            raise ValueError("an embed recipe needs a target_sfreq")
        if self.tuh_row_order == "script" and not self.row_order_script:
            raise ValueError("tuh_row_order 'script' needs row_order_script")
        if self.classification_type in ("bc", "mcc") and self.num_outputs != len(self.labels):
            raise ValueError("bc/mcc: num_outputs must equal the number of labels")
        if self.classification_type in ("mc", "mmc") and self.head_option != "mamba":
            raise ValueError("mc/mmc outputs per channel: only the Mamba head can emit them (spec Q5)")
        if self.bandpass and self.target_sfreq and self.bandpass.h_freq and self.bandpass.h_freq >= self.target_sfreq / 2:
            raise ValueError("low-pass edge at or above the target Nyquist frequency")
        return self

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def hash(self) -> str:
        """First 16 hex digits of sha256 of the canonical JSON: changes whenever any field does."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @property
    def label_classes(self) -> int:
        """Classes a single label takes: the label count for bc/mcc, 2 for mc (artifact or not, per channel), the
        per-channel codes for mmc."""
        if self.classification_type == "mc":
            return 2
        if self.classification_type == "mmc":
            return self.num_classes
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        """Names of the classes a single label takes (metrics, confusion matrices): for mc the 22 labels are
        channels, and each channel's decision is artifact / no artifact."""
        return ["no artifact", "artifact"] if self.classification_type == "mc" else list(self.labels)

    def window_samples(self, sfreq: float) -> int:
        return int(round(self.window_s * sfreq))

    def step_samples(self, sfreq: float) -> int:
        return max(1, int(round(self.step_s * sfreq)))

    def native_rate_problem(self, sfreq: float) -> str | None:
        """Why a recording sampled at ``sfreq`` cannot go through this recipe, or None. Filtering happens at the
        native rate (before any resampling, as upstream), so the band-pass's low-pass edge must lie below the
        *native* Nyquist frequency; MNE, upstream's filter, refuses otherwise."""
        if sfreq <= 0:
            return f"sampling rate {sfreq:g} Hz is not positive"
        if self.bandpass is not None and self.bandpass.h_freq is not None and self.bandpass.h_freq >= sfreq / 2:
            return (
                f"sampled at {sfreq:g} Hz, too slow for the {self.id} recipe: its {self.bandpass.h_freq:g} Hz "
                f"low-pass is applied at the native rate and needs more than {2 * self.bandpass.h_freq:g} Hz"
            )
        return None

    def with_options(self, **changes: object) -> Recipe:
        """A validated copy with some fields changed (e.g. ``tuh_row_order='script'``); its hash differs."""
        return Recipe.model_validate({**self.model_dump(), **changes})


def tasks_dir() -> Path:
    return data_dir("models") / "tasks"


def _read(path: Path) -> Recipe:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read recipe: {exc}", path=path) from exc
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid recipe ({where}: {first['msg']})", path=path) from exc
    if recipe.id != path.stem:
        raise UsageError(f"recipe id '{recipe.id}' does not match its file name", path=path)
    return recipe


@lru_cache(maxsize=None)
def _all() -> dict[str, Recipe]:
    return {p.stem: _read(p) for p in sorted(tasks_dir().glob("*.yaml"))}


def list_recipes() -> list[Recipe]:
    """Every bundled recipe, sorted by id."""
    return list(_all().values())


def resolve_task_id(task_id: str) -> str:
    key = task_id.strip().lower()
    recipes = _all()
    if key in recipes:
        return key
    for recipe in recipes.values():
        if key in (a.lower() for a in recipe.aliases):
            return recipe.id
    known = ", ".join(sorted(recipes))
    raise UsageError(f"unknown task '{task_id}'", hint=f"known tasks: {known}")


def load_recipe(task_id: str) -> Recipe:
    """The validated recipe for ``task_id`` (an id such as ``tuab`` or an alias such as ``tuar``)."""
    return _all()[resolve_task_id(task_id)]
