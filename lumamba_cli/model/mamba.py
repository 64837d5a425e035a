"""Mamba-1 block (selective state-space model) with interchangeable scan backends.

The block follows ``mamba_ssm.modules.mamba_simple.Mamba`` (spec §1.4) parameter for parameter, so the
official LuMamba weights load unchanged. Only the selective scan (and the short causal convolution) have
more than one implementation:

``"torch"``
    Pure PyTorch, CPU or GPU, float32 or float64. On CPU the recurrence runs over time with every step
    vectorised over (batch, channel, state) and updated in place (:func:`stepwise_scan`): the working set is
    one (B, D, N) state that stays in cache. On the 2-core development CPU this measured about 4x faster
    than the textbook scan, and the closed-form :func:`chunked_scan` about 10x slower than the stepwise one
    at every size tried (B=64 L=32, B=1..4 L=1152): the chunked form materialises (B, L, D, N) tensors and
    strided cumulative sums, so it is memory-bound there. On CUDA, where each step costs kernel launches,
    sequences longer than ``LONG_SEQUENCE_STEPS`` use :func:`chunked_scan` (a few large kernels instead of
    six per step); that choice is reasoned, not measured.
``"mamba-ssm"``
    The fused CUDA kernels of the ``mamba-ssm`` package (and ``causal-conv1d`` when installed). Only on CUDA
    tensors; imported lazily so a missing or broken installation never affects a CPU install.
``"auto"``
    ``"mamba-ssm"`` for CUDA tensors when it imports, ``"torch"`` otherwise.

:func:`reference_scan` is the plain step-by-step recurrence, kept as the yardstick for tests and the
benchmark; it is not used for inference.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "torch", "mamba-ssm")
_LOG2_E = 1.0 / math.log(2.0)

# On CUDA, above this many time steps the torch backend uses the chunked closed-form scan: per-step kernel
# launches would dominate, while the chunked scan needs only L / chunk sequential steps.
LONG_SEQUENCE_STEPS = 256


# --------------------------------------------------------------------------------------------- backends
@lru_cache(maxsize=1)
def _mamba_ssm_kernels() -> tuple[object | None, object | None, str]:
    """(selective_scan_fn, causal_conv1d_fn or None, reason); selective_scan_fn is None when unusable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, but also broken CUDA extensions raising OSError/RuntimeError
        return None, None, f"mamba-ssm unavailable: {type(exc).__name__}: {exc}"
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    return selective_scan_fn, causal_conv1d_fn, "mamba-ssm available"


def mamba_ssm_status() -> tuple[bool, str]:
    """Whether the fused kernels import here, and why not (for ``--help``/diagnostics)."""
    fn, _, reason = _mamba_ssm_kernels()
    return fn is not None, reason


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """Turn a requested backend into the one that will run on ``device`` ("torch" or "mamba-ssm").

    ``"mamba-ssm"`` asked for explicitly on a CPU device, or when the package does not import, raises
    ``ValueError`` with the reason, rather than silently running something else.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown Mamba backend {name!r}; choose one of {', '.join(BACKENDS)}")
    on_cuda = torch.device(device).type == "cuda" if device is not None else False
    if name == "torch":
        return "torch"
    available, reason = mamba_ssm_status()
    if name == "auto":
        return "mamba-ssm" if (on_cuda and available) else "torch"
    if not on_cuda:
        raise ValueError("the mamba-ssm backend needs a CUDA device; use --backend torch or auto on CPU")
    if not available:
        raise ValueError(reason)
    return "mamba-ssm"


# ------------------------------------------------------------------------------------------------ scans
def reference_scan(u, delta, A, B, C, D):
    """Textbook selective scan, one time step after another (spec §1.4 step 6).

    u, delta: (batch, L, d_inner); A: (d_inner, d_state); B, C: (batch, L, d_state); D: (d_inner,).
    ``delta`` is the step size after the softplus. Returns y (batch, L, d_inner).
    """
    batch, length, d_inner = u.shape
    decay = torch.exp(torch.einsum("bld,dn->bldn", delta, A))
    drive = torch.einsum("bld,bln,bld->bldn", delta, B, u)
    state = u.new_zeros(batch, d_inner, A.shape[1])
    outputs = []
    for t in range(length):
        state = decay[:, t] * state + drive[:, t]
        outputs.append(torch.einsum("bdn,bn->bd", state, C[:, t]))
    return torch.stack(outputs, dim=1) + u * D


def stepwise_scan(u, delta, A, B, C, D):
    """Same function as :func:`reference_scan`, arranged for speed on CPU.

    Nothing of size (batch, L, d_inner, d_state) is materialised: each step computes its own decay into a
    reused buffer and updates the state in place, so the working set is one (batch, d_inner, d_state) block.
    """
    batch, length, d_inner = u.shape
    state = u.new_zeros(batch, d_inner, A.shape[1])
    delta_u = delta * u
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C, D)):
        # training: autograd cannot record in-place updates of one buffer, so build a new state per step
        outputs = []
        for t in range(length):
            decay = torch.exp(delta[:, t, :, None] * A)
            state = torch.addcmul(decay * state, delta_u[:, t, :, None], B[:, t, None, :])
            outputs.append(torch.bmm(state, C[:, t, :, None]).squeeze(-1))
        return torch.stack(outputs, dim=1) + u * D
    # exp(Δ·A) as 2^(Δ·A·log2 e): torch's vectorised exp2 measured ~2.5x faster than exp on CPU, and the
    # extra rounding of the scaled argument is far below the tolerances (≈1e-16 relative in float64)
    A_log2 = A * _LOG2_E
    scratch = torch.empty_like(state)
    out = u.new_empty(length, batch, d_inner)
    for t in range(length):
        torch.mul(delta[:, t, :, None], A_log2, out=scratch)
        scratch.exp2_()
        state.mul_(scratch).addcmul_(delta_u[:, t, :, None], B[:, t, None, :])
        # y_t = Σ_n C_t[n]·h_t[:, n]; multiply + sum beat a batched mat-vec (bmm) by ~1.5x here
        torch.mul(state, C[:, t, None, :], out=scratch)
        torch.sum(scratch, dim=-1, out=out[t])
    return out.transpose(0, 1).addcmul(u, D)


def chunked_scan(u, delta, A, B, C, D, chunk: int = 64):
    """Selective scan in closed form inside chunks of time, sequential only across chunks.

    Inside a chunk, with c_t = Σ_{s≤t} Δ_s·A (log of the accumulated decay, ≤ 0):
    h_t = e^{c_t}·(h_start + Σ_{s≤t} e^{-c_s}·Δ_s·B_s·u_s). ``e^{-c_s}`` overflows once the decay inside one
    chunk exceeds the exponent range, so the chunk is halved until the largest in-chunk decay stays below a
    safe bound for the dtype; if even a single step exceeds it, the plain recurrence runs instead. Rounding is the same order as
    the sequential scan because every weight e^{c_t - c_s} it represents is ≤ 1.
    """
    batch, length, d_inner = u.shape
    d_state = A.shape[1]
    log_decay = delta.unsqueeze(-1) * A  # (b, L, d, n), ≤ 0
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    # largest |log decay| a chunk may accumulate: e^{bound} must stay far inside the dtype's range
    bound = 60.0 if u.dtype in (torch.float32, torch.float16, torch.bfloat16) else 600.0
    chunk = max(1, min(chunk, length))
    step_max = float(-log_decay.amin()) if length else 0.0
    while chunk > 1 and step_max * chunk > bound:
        chunk //= 2
    if step_max * chunk > bound:
        # even one step decays past the exponent range: only the plain recurrence is safe
        return stepwise_scan(u, delta, A, B, C, D)
    n_chunks = -(-length // chunk)
    padded = n_chunks * chunk
    if padded != length:
        pad = (0, 0, 0, 0, 0, padded - length)
        log_decay = F.pad(log_decay, pad)
        drive = F.pad(drive, pad)
    log_decay = log_decay.view(batch, n_chunks, chunk, d_inner, d_state)
    drive = drive.view(batch, n_chunks, chunk, d_inner, d_state)
    cum = log_decay.cumsum(dim=2)
    local = (torch.exp(-cum) * drive).cumsum(dim=2)
    growth = torch.exp(cum)
    local.mul_(growth)  # state of each step if its chunk had started from zero
    # carry the state across chunk boundaries (the only sequential part)
    carry = u.new_zeros(batch, d_inner, d_state)
    starts = []
    for c in range(n_chunks):
        starts.append(carry)
        carry = growth[:, c, -1] * carry + local[:, c, -1]
    start = torch.stack(starts, dim=1).unsqueeze(2)  # (b, n_chunks, 1, d, n)
    states = local.addcmul_(growth, start).view(batch, padded, d_inner, d_state)[:, :length]
    y = torch.einsum("bldn,bln->bld", states, C)
    return y + u * D


_scan_override = None


@contextmanager
def using_scan(scan):
    """Run the "torch" backend with another scan function inside the block (benchmarks, tests)."""
    global _scan_override
    previous, _scan_override = _scan_override, scan
    try:
        yield
    finally:
        _scan_override = previous


def torch_scan(u, delta, A, B, C, D):
    """The "torch" backend: the faster of the two exact arrangements for this length."""
    args = (u, delta, A, B, C, D)
    dtype = u.dtype
    for tensor in args[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        # the recurrence accumulates over the whole sequence: keep it in float32 (as mamba-ssm does)
        dtype = torch.float32
    with torch.autocast(u.device.type, enabled=False):  # autocast would put the matvecs back in bf16
        args = tuple(a.to(dtype) for a in args)
        if _scan_override is not None:
            y = _scan_override(*args)
        elif u.is_cuda and u.shape[1] > LONG_SEQUENCE_STEPS:
            y = chunked_scan(*args)
        else:
            y = stepwise_scan(*args)
    return y.to(u.dtype)


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Depthwise causal conv over time on (batch, L, channels), without moving channels to dim 1.

    y_t = bias + Σ_k w[k]·x_{t-K+1+k} with zeros before the start (Conv1d with padding K-1, first L outputs).
    """
    kernel = weight.shape[-1]
    taps = weight.view(weight.shape[0], kernel)
    length = x.shape[1]
    padded = F.pad(x, (0, 0, kernel - 1, 0))
    out = torch.addcmul(bias, padded[:, 0:length], taps[:, 0])
    for k in range(1, kernel):
        out.addcmul_(padded[:, k : k + length], taps[:, k])
    return out


# -------------------------------------------------------------------------------------------- the block
class Mamba(nn.Module):
    """Mamba-1 mixer on (batch, L, d_model); parameter names and shapes equal mamba_ssm's ``Mamba``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown Mamba backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._init_ssm(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        # Only matters when training from scratch (spec §1.4): step sizes log-uniform in [dt_min, dt_max],
        # stored through the inverse softplus so that softplus(bias) gives them back.
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        row = torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32))
        self.A_log.copy_(row.expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, hidden: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        requested = backend or self.backend
        chosen = resolve_backend(requested, hidden.device)
        if chosen == "mamba-ssm" and hidden.dtype == torch.float64:
            if requested == "mamba-ssm":
                raise ValueError("the mamba-ssm kernels have no float64 version; use the torch backend")
            chosen = "torch"  # "auto": float64 is for exactness checks, which the torch scan provides
        if chosen == "mamba-ssm":
            return self._forward_fused(hidden)
        return self._forward_torch(hidden, torch_scan)

    def _projections(self, x: torch.Tensor):
        """From the convolved, activated x (batch, L, d_inner): step sizes Δ (after softplus), B, C."""
        x_dbl = self.x_proj(x)
        dt_low, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # the bias sits inside the softplus, as the kernel's delta_bias with delta_softplus=True
        delta = F.softplus(F.linear(dt_low, self.dt_proj.weight, self.dt_proj.bias))
        return delta, B, C

    def _forward_torch(self, hidden: torch.Tensor, scan) -> torch.Tensor:
        xz = self.in_proj(hidden)
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))
        delta, B, C = self._projections(x)
        A = -torch.exp(self.A_log)
        y = scan(x, delta, A, B, C, self.D)
        return self.out_proj(y * F.silu(z))

    def forward_reference(self, hidden: torch.Tensor) -> torch.Tensor:
        """The same block with the textbook scan (tests and the benchmark's baseline)."""
        return self._forward_torch(hidden, reference_scan)

    def _forward_fused(self, hidden: torch.Tensor) -> torch.Tensor:
        selective_scan_fn, causal_conv1d_fn, _ = _mamba_ssm_kernels()
        length = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # kernels want (batch, channels, L)
        x, z = xz.chunk(2, dim=1)
        weight = self.conv1d.weight.view(self.d_inner, self.d_conv)
        if causal_conv1d_fn is not None:
            x = causal_conv1d_fn(x.contiguous(), weight, self.conv1d.bias, activation="silu")
        else:
            x = F.silu(F.conv1d(x, self.conv1d.weight, self.conv1d.bias, padding=self.d_conv - 1,
                                groups=self.d_inner)[..., :length])
        x_dbl = self.x_proj(x.transpose(1, 2))
        dt_low, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt_low @ self.dt_proj.weight.t()).transpose(1, 2)
        A = -torch.exp(self.A_log.float())
        y = selective_scan_fn(
            x.contiguous(),
            delta.contiguous(),
            A,
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            z=z.contiguous(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
