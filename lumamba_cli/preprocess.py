"""Recording → model windows, exactly as upstream BioFoundation prepared its fine-tuning data.

Upstream ran, per recording: ``raw.filter(0.1, 75.0)`` (MNE FIR defaults) → ``raw.notch_filter(f)`` (fundamental
only) at the native rate → ``raw.resample(target, npad="auto")`` (FFT) when the rate differs → windows with no
overlap, remainder dropped. We call the same MNE functions on numpy arrays with the arguments the Raw methods pass
internally, so "whole" mode matches the parity fixtures to ~1e-13 of the signal std.

Two modes
---------
``whole``
    Each contiguous segment (EDF+D gaps split a recording) is read and processed in one piece. This is the only
    bit-faithful mode: MNE's FFT resampler pads to a power of two and rounds the padded output length, so its
    effective ratio (e.g. 1.2799988 instead of 1.28) and therefore every output sample's position depend on the
    segment's total length.
``chunked``
    Bounded memory for long segments. Overlapping chunks are filtered with the same MNE FIR calls; margins longer
    than the band-pass plus notch half-lengths make the filtered core identical to whole-segment filtering (the
    reflect padding only ever touches the true segment edges). The resampler is ours: band-limited (trigonometric)
    interpolation of each filtered chunk, evaluated with a chirp-z transform **at the exact sample positions the
    whole-segment FFT resampler would produce** (same effective ratio, same offset, same edge padding), so the
    only difference left is the interpolation kernel's far tail (chunk-periodic instead of segment-periodic),
    which weighs only the Nyquist-band content the 75 Hz low-pass has already removed. Polyphase resampling was
    rejected: it moves windows by ~0.25 std (different anti-alias filter and time grid); plain FFT resampling of
    chunks would put each chunk on its own slightly different time grid.

Measured deviation of chunked from whole (``benchmarks/preprocess_chunked_deviation.py``; reports quote
:data:`CHUNKED_DEVIATION_NOTE`): on the 30-min absence recording (200 → 256 Hz, 60-s chunks forced), TUAB recipe
max |Δ| = 4.6e-4 of the window's std, median 3.3e-6; Mumtaz 3.4e-4 / 3.3e-6; the same after the z-score. For
comparison, the smallest real mistake the parity fixtures catch moves windows by 7e-2 std, and processing the
first 10 min alone instead of within the 30-min file (a different FFT grid) moves them by up to 3 std. When
downsampling (15 min of the same recording upsampled to 500 Hz, TDBrain recipe 500 → 256 Hz, 1.25-s windows,
37-s chunks) max 3.7e-3, median 8.6e-6 std. Without resampling (native rate = target) chunked filtering is exact
to rounding (~1e-13).

Memory (same benchmark, ``--long-hours 6``: a 6-h, 19-channel, 200 Hz EDF, Mumtaz recipe, fresh processes): whole
mode peaks at 4.1 GB resident and takes 59 s; chunked mode (default 300-s chunks) peaks at 0.46 GB and takes 34 s.

Units: windows are carried in µV (float32 in :class:`WindowBlock`); a recipe whose upstream z-score saw volts
(Mumtaz) converts its eps instead (``Normalisation.eps_uv``), which is the same z-score.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from lumamba_cli.errors import MontageError
from lumamba_cli.montage import Derivation, MontageReport, Registry, get_layout
from lumamba_cli.recipes import Recipe
from lumamba_cli.recording import RecordingLike


class Mode(StrEnum):
    """How a contiguous segment is preprocessed (see the module docstring)."""

    auto = "auto"
    whole = "whole"
    chunked = "chunked"


# A segment longer than this is processed in chunks by mode="auto" (≈ 1 h keeps a 22-channel float64 segment at
# 256 Hz under ~0.7 GB including MNE's FFT work arrays).
DEFAULT_CHUNK_THRESHOLD_S = 3600.0
DEFAULT_CHUNK_S = 300.0
# Windows per yielded block: bounds the float32 output held at once (22 ch × 1280 × 256 ≈ 29 MB).
DEFAULT_BLOCK_WINDOWS = 256
# Extra native samples each side of a chunk for the resampler's interpolation kernel, on top of the filter
# margins (its tail decays like 1/distance on Nyquist-band content, which the low-pass has removed).
RESAMPLE_MARGIN_S = 10.0

# Measured by benchmarks/preprocess_chunked_deviation.py (chunk_s=60 forced, float32 blocks compared).
CHUNKED_DEVIATION = {
    "recording": "eeghdf_absence_epilepsy.edf (1811 s, 200 Hz -> 256 Hz), recipes tuab and mumtaz, chunk_s=60",
    "max_abs_over_window_std": 4.6e-04,
    "median_abs_over_window_std": 3.3e-06,
    "max_abs_zscored": 4.6e-04,
    "median_abs_zscored": 3.3e-06,
}
CHUNKED_DEVIATION_NOTE = (
    "chunked preprocessing (bounded memory) is not bit-identical to whole-segment processing: measured on a real "
    f"30-min recording, max |Δ| = {CHUNKED_DEVIATION['max_abs_over_window_std']:.1e} of the window's std "
    f"(median {CHUNKED_DEVIATION['median_abs_over_window_std']:.1e}), max |Δz| = "
    f"{CHUNKED_DEVIATION['max_abs_zscored']:.1e} after the z-score"
)


@dataclass(frozen=True)
class PreprocessPolicy:
    """How recordings are preprocessed: the mode and its chunking. A head records the policy it was trained with,
    so screening and evaluation apply the same one."""

    mode: Mode = Mode.auto
    chunk_s: float = DEFAULT_CHUNK_S
    chunk_threshold_s: float = DEFAULT_CHUNK_THRESHOLD_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))  # a plain "whole" from JSON or a caller is the same value

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "chunk_s": float(self.chunk_s), "chunk_threshold_s": float(self.chunk_threshold_s)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PreprocessPolicy | None:
        """The policy a head's metadata records, or None when it records none (heads written before policies)."""
        if not data or "mode" not in data:
            return None
        return cls(Mode(data["mode"]), float(data.get("chunk_s", DEFAULT_CHUNK_S)),
                   float(data.get("chunk_threshold_s", DEFAULT_CHUNK_THRESHOLD_S)))

    def mode_for(self, n_samples: int, sfreq: float) -> Literal["whole", "chunked"]:
        """The mode one segment of ``n_samples`` at ``sfreq`` gets."""
        if self.mode is Mode.auto:
            return "chunked" if n_samples / sfreq > self.chunk_threshold_s else "whole"
        return self.mode.value


@dataclass
class WindowBlock:
    """Consecutive windows of one segment, filtered and resampled, **not** z-scored."""

    data: np.ndarray  # (N, C, T) float32, µV
    start_s: np.ndarray  # (N,) float64, true seconds from the recording start (segment onset + offset)
    segment: np.ndarray  # (N,) int64 index into recording.segments
    sfreq: float
    mode: Literal["whole", "chunked"]
    channel_names: list[str]  # the data's rows (the recipe may reorder them: TUH script order)
    positions: np.ndarray  # (C, 3) float32, metres, paired row by row with data
    eps: float  # the recipe's z-score eps in µV

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def zscored(self) -> np.ndarray:
        return zscore(self.data, eps=self.eps)


# -- z-score ---------------------------------------------------------------------------------------------------------


def zscore(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per window and channel ``(x − mean) / (std_unbiased + eps)`` over the last axis, in float32 as upstream.

    ``eps`` is in the data's units: pass ``recipe.normalisation.eps_uv`` for µV data (0.01 for Mumtaz, whose
    upstream z-score ran in volts).
    """
    x32 = np.asarray(x, dtype=np.float32)
    mean = x32.mean(axis=-1, keepdims=True, dtype=np.float32)
    std = x32.std(axis=-1, ddof=1, keepdims=True, dtype=np.float32)
    return ((x32 - mean) / (std + np.float32(eps))).astype(np.float32, copy=False)


# -- the MNE calls, on arrays ---------------------------------------------------------------------------------------


def _quiet() -> Any:
    import mne

    return mne.utils.use_log_level("error")


# Rows are filtered and resampled independently, and MNE's FFTs release the GIL: groups of channels in threads give
# bit-identical results in about half the time on 2 cores (1-h TUAB resample: 3.9 s → 2.0 s).
_MIN_SAMPLES_FOR_THREADS = 100_000


def _across_channels(operation: Callable[[np.ndarray], np.ndarray], data: np.ndarray) -> np.ndarray:
    workers = min(os.cpu_count() or 1, data.shape[0], 8)
    if workers < 2 or data.shape[-1] < _MIN_SAMPLES_FOR_THREADS:
        return operation(data)
    edges = np.linspace(0, data.shape[0], workers + 1).astype(int)
    bounds = list(zip(edges[:-1], edges[1:]))
    with ThreadPoolExecutor(workers, thread_name_prefix="lumamba-mne") as pool:
        parts = list(pool.map(lambda ab: operation(data[ab[0] : ab[1]]), bounds))
    if all(np.shares_memory(part, data) for part in parts):  # filtered in place: nothing to gather
        return data
    out = np.empty((data.shape[0],) + parts[0].shape[1:], dtype=parts[0].dtype)
    for (start, stop), part in zip(bounds, parts):
        out[start:stop] = part
    return out


def bandpass(data: np.ndarray, sfreq: float, recipe: Recipe) -> np.ndarray:
    """``raw.filter(l, h)`` with MNE's defaults, in place on a float64 (C, n) array."""
    if recipe.bandpass is None:
        return data
    import mne

    with _quiet(), warnings.catch_warnings():
        # MNE warns when the filter is longer than a short signal; the result is still what upstream got.
        warnings.simplefilter("ignore", RuntimeWarning)
        return _across_channels(lambda rows: mne.filter.filter_data(
            rows, sfreq, recipe.bandpass.l_freq, recipe.bandpass.h_freq, filter_length="auto",
            l_trans_bandwidth="auto", h_trans_bandwidth="auto", method="fir", copy=False, phase="zero",
            fir_window="hamming", fir_design="firwin", pad="reflect_limited",
        ), data)


def notch(data: np.ndarray, sfreq: float, recipe: Recipe) -> np.ndarray:
    """``raw.notch_filter(f)`` (fundamental only) with MNE's defaults, in place on a float64 (C, n) array."""
    if recipe.notch is None or recipe.notch.freq >= sfreq / 2:
        return data
    import mne

    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _across_channels(lambda rows: mne.filter.notch_filter(
            rows, sfreq, [recipe.notch.freq], filter_length="auto", notch_widths=None,
            trans_bandwidth=recipe.notch.trans_bandwidth, method="fir", copy=False, phase="zero",
            fir_window="hamming", fir_design="firwin", pad="reflect_limited",
        ), data)


def needs_resampling(sfreq: float, recipe: Recipe) -> bool:
    return recipe.target_sfreq is not None and abs(sfreq - recipe.target_sfreq) > 1e-9


def output_sfreq(sfreq: float, recipe: Recipe) -> float:
    return float(recipe.target_sfreq) if needs_resampling(sfreq, recipe) else float(sfreq)


def resample_whole(data: np.ndarray, sfreq: float, recipe: Recipe) -> np.ndarray:
    """``raw.resample(target, npad="auto")``: MNE's FFT method, boxcar window, reflect_limited padding."""
    if not needs_resampling(sfreq, recipe):
        return data
    import mne

    with _quiet():
        return _across_channels(lambda rows: mne.filter.resample(
            rows, up=float(recipe.target_sfreq), down=float(sfreq), npad="auto", window="auto", pad="auto",
            method="fft", axis=-1,
        ), data)


def filter_length(sfreq: float, recipe: Recipe) -> int:
    """Total taps of band-pass + notch MNE designs at ``sfreq`` (their sum bounds the chunk margin needed)."""
    import mne

    taps = 0
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if recipe.bandpass is not None:
            taps += len(mne.filter.create_filter(None, sfreq, recipe.bandpass.l_freq, recipe.bandpass.h_freq))
        if recipe.notch is not None and recipe.notch.freq < sfreq / 2:
            f = recipe.notch.freq
            half = f / 200 / 2 + recipe.notch.trans_bandwidth / 2
            taps += len(mne.filter.create_filter(None, sfreq, f + half, f - half, l_trans_bandwidth=0.5,
                                                 h_trans_bandwidth=0.5))
    return taps


def window_starts(n_samples: int, window: int, step: int) -> np.ndarray:
    """First sample of every complete window (``⌊(n − w)/step⌋ + 1`` of them, remainder dropped)."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, step, dtype=np.int64)


def cut_windows(data: np.ndarray, window: int, step: int) -> np.ndarray:
    starts = window_starts(data.shape[-1], window, step)
    if step == window:
        return data[:, : len(starts) * window].reshape(data.shape[0], len(starts), window).transpose(1, 0, 2)
    view = np.lib.stride_tricks.sliding_window_view(data, window, axis=-1)[:, ::step]
    return view.transpose(1, 0, 2)


def preprocess_array(data_uv: np.ndarray, sfreq: float, recipe: Recipe,
                     derivation: Derivation | None = None) -> np.ndarray:
    """One contiguous segment, processed whole: (file channels, n) µV → (N, C, T) float64 windows in µV.

    Row k of ``data_uv`` is file channel ``derivation.file_channels[k]``; without a derivation each row is one
    output channel.
    """
    data = np.array(data_uv, dtype=np.float64, order="C", copy=True)
    if recipe.filter_scope == "per_window":
        return _per_window(data, sfreq, recipe, derivation)
    bandpass(data, sfreq, recipe)
    notch(data, sfreq, recipe)
    data = resample_whole(data, sfreq, recipe)
    fs = output_sfreq(sfreq, recipe)
    derived = derivation.apply(data) if derivation is not None else data
    return cut_windows(derived, recipe.window_samples(fs), recipe.step_samples(fs))


def _per_window(data: np.ndarray, sfreq: float, recipe: Recipe, derivation: Derivation | None) -> np.ndarray:
    """Upstream APAVA: cut native-rate windows first, then filter (and resample) each window on its own."""
    native_w, native_step = recipe.window_samples(sfreq), recipe.step_samples(sfreq)
    native = cut_windows(data, native_w, native_step)
    fs = output_sfreq(sfreq, recipe)
    n_out = len(derivation.terms) if derivation is not None else data.shape[0]
    out = np.empty((native.shape[0], n_out, recipe.window_samples(fs)))
    for k, window in enumerate(native):
        w = np.array(window, dtype=np.float64, order="C")
        bandpass(w, sfreq, recipe)
        notch(w, sfreq, recipe)
        w = resample_whole(w, sfreq, recipe)
        out[k] = (derivation.apply(w) if derivation is not None else w)[:, : out.shape[-1]]
    return out


# -- chunked mode: whole-segment time grid, bounded memory ----------------------------------------------------------


@dataclass(frozen=True)
class FFTGrid:
    """Where MNE's FFT resampler puts each output sample of an ``n``-sample segment (npad="auto").

    Output sample ``j`` lies at native position ``(j + remove_left) * padded / new_len − npad_left``.
    """

    n: int
    npad_left: int
    npad_right: int
    padded: int
    new_len: int
    remove_left: int
    final_len: int

    @classmethod
    def for_length(cls, n: int, sfreq: float, target: float) -> FFTGrid:
        ratio = float(target) / float(sfreq)
        final_len = max(int(round(ratio * n)), 1)
        min_add = min(n // 8, 100) * 2
        total = 2 ** int(np.ceil(np.log2(n + min_add))) - n
        left, extra = divmod(total, 2)
        padded = n + 2 * left + extra
        new_len = max(int(round(ratio * padded)), 1)
        return cls(n, left, left + extra, padded, new_len, int(round(ratio * left)), final_len)

    def positions(self, j: np.ndarray) -> np.ndarray:
        return (j + self.remove_left) * (self.padded / self.new_len) - self.npad_left

    def first_at_or_after(self, t: float) -> int:
        j = math.ceil((t + self.npad_left) * self.new_len / self.padded - self.remove_left - 1e-9)
        return min(max(j, 0), self.final_len)


def _odd_reflect_pad(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """MNE's ``reflect_limited`` padding (point reflection about the end samples, zeros beyond one length)."""
    n = x.shape[-1]
    parts = []
    if left:
        lz = max(left - n + 1, 0)
        parts += [np.zeros(x.shape[:-1] + (lz,)), 2 * x[..., :1] - x[..., left - lz : 0 : -1]]
    parts.append(x)
    if right:
        rz = max(right - n + 1, 0)
        parts += [2 * x[..., -1:] - x[..., -2 : -(right - rz) - 2 : -1], np.zeros(x.shape[:-1] + (rz,))]
    return np.concatenate(parts, axis=-1)


def _bandlimited_at(x: np.ndarray, t0: float, dt: float, count: int, keep_ratio: float) -> np.ndarray:
    """Trigonometric interpolation of each row of ``x`` at positions ``t0 + dt·j`` (j < count), keeping the
    frequencies below ``keep_ratio`` × the input Nyquist frequency (as MNE's boxcar FFT resampler does)."""
    from scipy import fft, signal

    length = x.shape[-1]
    spectrum = fft.rfft(x, axis=-1)
    kmax = spectrum.shape[-1] - 1
    if keep_ratio < 1.0:
        kmax = min(kmax, int(np.floor(keep_ratio * length / 2)))
    k = np.arange(kmax + 1)
    weights = np.full(kmax + 1, 2.0)
    weights[0] = 1.0
    if 2 * kmax == length or (keep_ratio < 1.0 and 2 * kmax == round(keep_ratio * length)):
        # the Nyquist bin of the kept band appears once, as in the real inverse FFT
        weights[-1] = 1.0
    coeffs = spectrum[..., : kmax + 1] * weights * np.exp(2j * np.pi * k * t0 / length) / length
    w = np.exp(2j * np.pi * dt / length)
    return signal.czt(coeffs, m=count, w=w, a=1.0, axis=-1).real


def _iter_chunked_segment(
    read: Callable[[int, int], np.ndarray], n: int, sfreq: float, recipe: Recipe, derivation: Derivation,
    chunk_s: float,
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (derived output samples (C, m), first output index) for one segment, chunk by chunk."""
    margin_filter = filter_length(sfreq, recipe)  # ≥ both half-lengths, summed, with room to spare
    resample = needs_resampling(sfreq, recipe)
    margin = margin_filter + (int(RESAMPLE_MARGIN_S * sfreq) if resample else 0)
    core = max(int(round(chunk_s * sfreq)), 1)
    grid = FFTGrid.for_length(n, sfreq, recipe.target_sfreq) if resample else None
    for a in range(0, n, core):
        b = min(n, a + core)
        lo, hi = max(0, a - margin), min(n, b + margin)
        x = np.array(read(lo, hi), dtype=np.float64, order="C")
        bandpass(x, sfreq, recipe)
        notch(x, sfreq, recipe)
        if grid is None:
            yield derivation.apply(x[:, a - lo : b - lo]), a
            continue
        # the first/last output samples may sit a fraction of a sample outside [0, n): they belong to the end chunks
        j0 = grid.first_at_or_after(a) if a > 0 else 0
        j1 = grid.first_at_or_after(b) if b < n else grid.final_len
        if j1 <= j0:
            continue
        # The whole-segment resampler sees the segment padded at both true edges; reproduce that padding where
        # this chunk touches an edge so the first and last windows match too.
        # Capped at the chunk's own length: beyond one reflection MNE pads with zeros anyway, and the far padding
        # only reaches the kept samples through the kernel's negligible tail; uncapped it would grow with the
        # segment (npad ≈ n/2) and break the memory bound.
        pad_l = min(grid.npad_left, x.shape[-1] - 1) if lo == 0 else 0
        pad_r = min(grid.npad_right, x.shape[-1] - 1) if hi == n else 0
        xp = _odd_reflect_pad(x, pad_l, pad_r)
        # Keep a little reflected signal at interior chunk ends too, so the periodic wrap is continuous.
        extra = min(256, x.shape[-1] - 1)
        xp = _odd_reflect_pad(xp, extra if lo > 0 else 0, extra if hi < n else 0)
        offset = lo - pad_l - (extra if lo > 0 else 0)
        t0 = grid.positions(np.array([j0]))[0] - offset
        dt = grid.padded / grid.new_len
        keep = min(1.0, grid.new_len / grid.padded)
        y = _bandlimited_at(xp, t0, dt, j1 - j0, keep)
        yield derivation.apply(y), j0


# -- the pipeline on a recording ------------------------------------------------------------------------------------


@dataclass
class TaskInput:
    """A recording made ready for one recipe: how its channels build the recipe's layout, and whether they can.

    :func:`prepare` is the one chain from a recording to model windows, used by ``screen``, the training window
    cache, ``embed`` and ``montage check``; :meth:`require` is the one place a task that cannot be built is refused.
    """

    recording: RecordingLike
    recipe: Recipe
    montage: MontageReport
    policy: PreprocessPolicy
    problem: str | None  # why the recipe cannot be built from this recording; None when it can
    names_missing: bool  # the problem is channels the file may name differently (an --aliases file can help)

    @property
    def usable(self) -> bool:
        return self.problem is None

    def require(self) -> Derivation:
        """The derivation, or :class:`MontageError` naming the file and what is missing."""
        if self.problem is not None or self.montage.derivation is None:
            raise MontageError(self.problem or self.montage.verdict, path=self.recording.path,
                               hint="add an alias with --aliases FILE if the file names them differently"
                               if self.names_missing else None)
        return self.montage.derivation

    def windows(self, *, block_windows: int = DEFAULT_BLOCK_WINDOWS,
                on_skip: Callable[[str], None] | None = None) -> Iterator[WindowBlock]:
        return iter_windows(self.recording, self.recipe, self.require(), policy=self.policy,
                            block_windows=block_windows, on_skip=on_skip)


def prepare(recording: RecordingLike, recipe: Recipe, registry: Registry,
            policy: PreprocessPolicy = PreprocessPolicy()) -> TaskInput:
    """Resolve ``recording`` against ``recipe``'s layout (every EEG channel with a position when the recipe has
    none) and check that the recipe's filters can run at the channels' native rate."""
    layout = get_layout(recipe.layout, registry=registry) if recipe.layout is not None else None
    montage = registry.resolve(recording, layout, on_missing="ignore")
    problem, names_missing = None, False
    if not montage.usable or montage.derivation is None:
        problem = montage.verdict
        names_missing = layout is None or any(not q.bad for q in montage.required if q.status == "missing")
    elif montage.derivation.sfreq is not None:
        rate_problem = recipe.native_rate_problem(float(montage.derivation.sfreq))
        if rate_problem:
            problem = f"not usable for {recipe.id}: {rate_problem}"
    return TaskInput(recording, recipe, montage, policy, problem, names_missing)


def _segment_bounds(recording: RecordingLike, sfreq: float, n_samples: int) -> list[tuple[int, float, int, int]]:
    """(segment index, true onset s, first stored sample, sample count) per contiguous segment."""
    bounds = []
    for index, seg in enumerate(recording.segments):
        first = int(round(seg.data_start_s * sfreq))
        count = min(int(round(seg.duration_s * sfreq)), n_samples - first)
        bounds.append((index, float(seg.onset_s), first, count))
    return bounds


def iter_windows(
    recording: RecordingLike,
    recipe: Recipe,
    derivation: Derivation,
    *,
    policy: PreprocessPolicy = PreprocessPolicy(),
    block_windows: int = DEFAULT_BLOCK_WINDOWS,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[WindowBlock]:
    """Yield the recipe's windows of ``recording`` as :class:`WindowBlock` s, segment by segment.

    No window crosses a segment boundary. A segment shorter than one window gives no window; ``on_skip`` receives
    one line saying so (default: a ``UserWarning``), so a report can state it rather than silently cover less of
    the recording. Production code reaches this through :meth:`TaskInput.windows`, which has checked the rate.
    """
    if on_skip is None:
        def on_skip(message: str) -> None:
            warnings.warn(message, UserWarning, stacklevel=3)

    if recipe.tuh_row_order == "script" and recipe.row_order_script:
        # data rows in script order, positions left in layout order: upstream's mismatch on purpose (spec Q-TUH)
        derivation = derivation.reordered(recipe.row_order_script)
    names = list(derivation.channel_names)
    positions = np.asarray(derivation.positions, dtype=np.float32)
    rows = derivation.file_channels
    channel = recording.channels[rows[0]]
    sfreq = float(channel.sfreq)
    problem = recipe.native_rate_problem(sfreq)
    if problem:
        raise ValueError(f"{recording.path}: {problem} (use prepare(), which refuses such recordings)")
    fs = output_sfreq(sfreq, recipe)
    window, step = recipe.window_samples(fs), recipe.step_samples(fs)
    eps = recipe.normalisation.eps_uv if recipe.normalisation is not None else 1e-8

    def block(data: np.ndarray, starts: np.ndarray, seg_index: int, onset: float, used: str) -> WindowBlock:
        return WindowBlock(
            data=np.ascontiguousarray(data, dtype=np.float32),
            start_s=onset + starts / fs,
            segment=np.full(len(starts), seg_index, dtype=np.int64),
            sfreq=fs, mode=used, channel_names=names, positions=positions, eps=eps,
        )

    for seg_index, onset, first, count in _segment_bounds(recording, sfreq, channel.n_samples):
        if count < int(round(recipe.window_s * sfreq)):
            on_skip(
                f"{recording.path}: segment {seg_index} at {onset:.3f} s lasts {max(count, 0) / sfreq:.3f} s, "
                f"shorter than one {recipe.window_s:g}-s window: no window from it"
            )
            continue
        used = policy.mode_for(count, sfreq)
        if recipe.filter_scope == "per_window":
            used = "whole"  # each window is filtered alone anyway

        def read(lo: int, hi: int, first: int = first) -> np.ndarray:
            return recording.read(rows, (first + lo) / sfreq, (first + hi) / sfreq)

        if used == "whole":
            windows = preprocess_array(read(0, count), sfreq, recipe, derivation)
            starts = np.arange(len(windows), dtype=np.int64) * step
            for k in range(0, len(windows), block_windows):
                yield block(windows[k : k + block_windows], starts[k : k + block_windows], seg_index, onset, used)
            continue

        # chunked: keep a rolling buffer of derived output samples and cut windows from it as they complete
        buffer = np.zeros((len(names), 0))
        buffer_start = 0  # output sample index of buffer[:, 0]
        next_window = 0  # output sample index where the next window starts
        pending: list[np.ndarray] = []
        pending_starts: list[int] = []
        for piece, piece_start in _iter_chunked_segment(read, count, sfreq, recipe, derivation, policy.chunk_s):
            if piece_start != buffer_start + buffer.shape[1]:
                raise AssertionError("chunked resampler produced non-contiguous output")
            buffer = np.concatenate([buffer, piece], axis=1)
            while next_window + window <= buffer_start + buffer.shape[1]:
                lo = next_window - buffer_start
                pending.append(buffer[:, lo : lo + window])
                pending_starts.append(next_window)
                next_window += step
                if len(pending) == block_windows:
                    yield block(np.stack(pending), np.array(pending_starts), seg_index, onset, used)
                    pending, pending_starts = [], []
            drop = next_window - buffer_start
            if drop > 0:
                buffer = buffer[:, drop:]
                buffer_start += drop
        if pending:
            yield block(np.stack(pending), np.array(pending_starts), seg_index, onset, used)


def collect(blocks: Sequence[WindowBlock] | Iterator[WindowBlock]) -> WindowBlock | None:
    """Concatenate blocks (tests, small recordings); None when there are none."""
    blocks = list(blocks)
    if not blocks:
        return None
    first = blocks[0]
    return WindowBlock(
        data=np.concatenate([b.data for b in blocks]),
        start_s=np.concatenate([b.start_s for b in blocks]),
        segment=np.concatenate([b.segment for b in blocks]),
        sfreq=first.sfreq, mode=first.mode, channel_names=first.channel_names, positions=first.positions,
        eps=first.eps,
    )
