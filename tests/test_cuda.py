"""GPU checks (``pytest -m cuda``; skipped without CUDA): bf16 autocast inference against float32, the full
screen path on the GPU, a GPU training step, and the encoder-output cache on the GPU. The mamba-ssm kernels'
parity with the torch backend is ``tests/test_mamba.py::test_fused_backend_matches_torch_on_gpu``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
EXCERPT = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"


def test_bf16_inference_agrees_with_float32():
    from model_helpers import load_formula_weights

    from lumamba_cli.inference import predict
    from lumamba_cli.model import LuMamba, LuMambaConfig

    model = load_formula_weights(LuMamba(LuMambaConfig.tiny(num_classes=2)).eval()).cuda()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 22, 1280, generator=g).numpy()
    positions = np.broadcast_to(torch.rand(22, 3, generator=g).numpy(), (32, 22, 3))
    bf16 = predict(model, [(x, positions)], torch.device("cuda"))  # autocast on CUDA
    with torch.inference_mode():
        full = model(torch.from_numpy(x).cuda(), torch.from_numpy(np.ascontiguousarray(positions)).cuda())
    p_bf16 = torch.softmax(torch.from_numpy(bf16), 1).numpy()
    p_full = torch.softmax(full.float().cpu(), 1).numpy()
    assert np.abs(p_bf16 - p_full).max() < 2e-2


def test_screen_runs_on_the_gpu_and_matches_the_cpu(tmp_path):
    from cli_helpers import run_cli

    from lumamba_cli.model.formula import save_formula_head

    head = save_formula_head("tuab", tmp_path / "tuab.safetensors")
    for device in ("cpu", "cuda"):
        code, _, err = run_cli(["screen", EXCERPT, "--task", "tuab", "--head", head, "--device", device,
                                "--out", tmp_path / device, "--quiet"])
        assert code == 0, err
    cpu, gpu = (json.loads((tmp_path / d / "absence_excerpt.tuab.json").read_text()) for d in ("cpu", "cuda"))
    assert gpu["model"]["device"].startswith("cuda") and gpu["model"]["precision"] == "bfloat16"
    p_cpu = np.array([w["probabilities"]["abnormal"] for w in cpu["windows"]])
    p_gpu = np.array([w["probabilities"]["abnormal"] for w in gpu["windows"]])
    assert np.abs(p_cpu - p_gpu).max() < 2e-2


def test_a_training_step_on_the_gpu_has_finite_gradients():
    from lumamba_cli.inference import run_model
    from lumamba_cli.model import LuMamba, LuMambaConfig

    model = LuMamba(LuMambaConfig.tiny(num_classes=2)).cuda().train()
    x = np.random.default_rng(0).standard_normal((8, 22, 1280)).astype(np.float32)
    positions = np.random.default_rng(1).random((8, 22, 3)).astype(np.float32)
    loss = torch.nn.functional.cross_entropy(run_model(model, x, positions, torch.device("cuda"), jitter=True),
                                             torch.tensor([0, 1] * 4, device="cuda"))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
