"""Mamba block and scan backends: every arrangement of the scan computes the textbook recurrence."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from lumamba_cli.model import mamba as mamba_module
from lumamba_cli.model.mamba import (
    LONG_SEQUENCE_STEPS,
    Mamba,
    causal_depthwise_conv,
    chunked_scan,
    reference_scan,
    resolve_backend,
    stepwise_scan,
    torch_scan,
)

from model_helpers import load_formula_weights


def scan_inputs(batch, length, d_inner=12, d_state=5, dtype=torch.float64, step_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d_inner, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(batch, length, d_inner, generator=g, dtype=dtype) - 1.0) * step_scale
    A = -torch.exp(torch.randn(d_inner, d_state, generator=g, dtype=dtype))
    B = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, length, d_state, generator=g, dtype=dtype)
    D = torch.randn(d_inner, generator=g, dtype=dtype)
    return u, delta, A, B, C, D


def rel_err(got, ref):
    return float((got - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("length", [1, 2, 7, 32, 33, 100])
@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_chunked_scan_equals_reference(length, chunk):
    args = scan_inputs(2, length)
    ref = reference_scan(*args)
    assert rel_err(chunked_scan(*args, chunk=chunk), ref) <= 1e-12


@pytest.mark.parametrize("length", [1, 5, 32, 77])
def test_stepwise_scan_equals_reference(length):
    args = scan_inputs(3, length)
    ref = reference_scan(*args)
    assert rel_err(stepwise_scan(*args), ref) <= 1e-13
    with torch.enable_grad():  # the differentiable arrangement used in training
        grad_args = [a.clone().requires_grad_(True) for a in args]
        y = stepwise_scan(*grad_args)
        y.sum().backward()
    assert rel_err(y.detach(), ref) <= 1e-13
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in grad_args)


@pytest.mark.parametrize("step_scale", [3.0, 40.0])
def test_chunked_scan_survives_strong_decay_in_float32(step_scale):
    # |Δ·A| of several (or hundreds) per step would overflow e^{-cumsum} within one 64-step chunk
    args = scan_inputs(2, 96, dtype=torch.float64, step_scale=step_scale)
    ref = reference_scan(*args)
    got = chunked_scan(*[a.float() for a in args], chunk=64)
    assert torch.isfinite(got).all()
    assert rel_err(got.double(), ref) <= 1e-5


def test_torch_scan_on_long_sequences():
    args = scan_inputs(1, LONG_SEQUENCE_STEPS + 45, d_inner=8, d_state=4)
    assert rel_err(torch_scan(*args), reference_scan(*args)) <= 1e-12
    assert rel_err(chunked_scan(*args), reference_scan(*args)) <= 1e-12  # what CUDA uses at this length


@pytest.mark.parametrize("length", [1, 3, 10])
def test_causal_conv_matches_conv1d(length):
    g = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3, bias=True).double()
    x = torch.randn(2, length, 6, generator=g, dtype=torch.float64)
    expected = conv(x.transpose(1, 2))[..., :length].transpose(1, 2)
    got = causal_depthwise_conv(x, conv.weight, conv.bias)
    assert torch.allclose(got, expected, rtol=0, atol=1e-14)


def test_block_default_equals_reference_path():
    torch.manual_seed(0)
    block = Mamba(32, d_state=8, expand=2).double()
    x = torch.randn(2, 20, 32, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(block(x), block.forward_reference(x)) <= 1e-13
    assert block.dt_rank == 2 and block.d_inner == 64


def test_causality():
    torch.manual_seed(0)
    block = Mamba(16, d_state=4).double().eval()
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7:] += 1.0
    with torch.no_grad():
        a, b = block(x), block(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.equal(a[:, 7:], b[:, 7:])


def test_resolve_backend():
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_backend("mamba-ssm", "cpu")
    with pytest.raises(ValueError, match="unknown"):
        resolve_backend("triton", "cpu")


def test_broken_mamba_ssm_never_breaks_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import of it raises ImportError
    mamba_module._mamba_ssm_kernels.cache_clear()
    try:
        available, reason = mamba_module.mamba_ssm_status()
        assert not available and "mamba-ssm unavailable" in reason
        assert resolve_backend("auto", "cuda") == "torch"
        with pytest.raises(ValueError, match="mamba-ssm unavailable"):
            resolve_backend("mamba-ssm", "cuda")
    finally:
        mamba_module._mamba_ssm_kernels.cache_clear()


@pytest.mark.cuda
def test_fused_backend_matches_torch_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    available, reason = mamba_module.mamba_ssm_status()
    if not available:
        pytest.skip(reason)
    from lumamba_cli.model import LuMamba, LuMambaConfig

    config = LuMambaConfig.tiny(num_classes=2, classifier_option="mamba")
    model = load_formula_weights(LuMamba(config).eval())
    model.cuda()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 22, 1280, generator=g).cuda()
    locations = torch.rand(8, 22, 3, generator=g).cuda()
    with torch.inference_mode():
        model.set_backend("torch")
        reference = model.encode(x, locations)
        ref_logits = model(x, locations)
        model.set_backend("mamba-ssm")
        assert model.backend == "mamba-ssm"
        fused = model.encode(x, locations)
        fused_logits = model(x, locations)
    assert rel_err(fused, reference) <= 1e-4
    assert rel_err(fused_logits, ref_logits) <= 1e-4


def test_half_precision_inputs_scan_in_float32():
    args = scan_inputs(2, 16, dtype=torch.float32)
    expected = reference_scan(*args)
    got = torch_scan(*(a.bfloat16() for a in args))
    assert got.dtype == torch.bfloat16
    assert rel_err(got.float(), expected) <= 3e-2  # bf16 inputs; the recurrence itself ran in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch_scan(*args).dtype == torch.float32


def test_model_reports_and_switches_backend():
    from lumamba_cli.model import LuMamba, LuMambaConfig

    model = LuMamba(LuMambaConfig.tiny(num_classes=2, embed_dim=16, num_queries=2), backend="auto")
    assert model.backend == "torch" and model.requested_backend == "auto"
    with pytest.raises(ValueError, match="CUDA"):
        model.set_backend("mamba-ssm")
    assert model.set_backend("torch").backend == "torch"
