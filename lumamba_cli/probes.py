"""Linear probes on pooled encoder embeddings: a head in seconds on a CPU, in the style of frozen-encoder benchmarks.

``ridge``: ridge regression onto ±1 class targets, in closed form, its scores then scaled by one temperature fitted
on the training windows so that their softmax is a calibrated probability. ``logistic``: multinomial logistic
regression with an L2 penalty, fitted to convergence with L-BFGS (float64). Both standardise the features, pick the
penalty on the validation windows (lowest validation cross-entropy), and fold the standardisation into one
``Linear(D, K)``: the probe is stored as the ``probe`` classifier (mean over patches → Linear) of a LuMamba head,
so ``screen`` and ``evaluate`` use it like any head.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

RIDGE_PENALTIES = tuple(10.0 ** k for k in range(-6, 3))  # on standardised features, mean-squared-error scale
LOGISTIC_PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class ProbeKind(StrEnum):
    ridge = "ridge"
    logistic = "logistic"


@dataclass
class ProbeFit:
    kind: ProbeKind
    weight: np.ndarray  # (K, D) on the raw pooled features
    bias: np.ndarray  # (K,)
    penalty: float
    validation: dict[str, float]  # per candidate penalty: validation cross-entropy
    temperature: float = 1.0  # ridge only

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias


def _weighted_ce(logits: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(weights * log_p[np.arange(len(y)), y]).sum() / weights.sum())


def sample_weights(y: np.ndarray, n_classes: int, balanced: bool) -> np.ndarray:
    if not balanced:
        return np.ones(len(y))
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return per_class[y]


def fit_probe(kind: ProbeKind, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              n_classes: int, *, balanced: bool = False) -> ProbeFit:
    """Fit a probe on (N, D) pooled embeddings and class indices; choose its penalty on the validation set."""
    x_train = np.asarray(x_train, dtype=np.float64)
    x_val = np.asarray(x_val, dtype=np.float64)
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature carries nothing; it must not divide by zero
    z_train, z_val = (x_train - mean) / scale, (x_val - mean) / scale
    w_train = sample_weights(y_train, n_classes, balanced)
    w_val = sample_weights(y_val, n_classes, balanced)
    candidates = []
    for penalty in RIDGE_PENALTIES if kind == ProbeKind.ridge else LOGISTIC_PENALTIES:
        if kind == ProbeKind.ridge:
            weight, bias, temperature = _ridge(z_train, y_train, w_train, n_classes, penalty)
        else:
            (weight, bias), temperature = _logistic(z_train, y_train, w_train, n_classes, penalty), 1.0
        loss = _weighted_ce(z_val @ weight.T + bias, y_val, w_val)
        candidates.append((loss, penalty, weight, bias, temperature))
    loss, penalty, weight, bias, temperature = min(candidates, key=lambda c: (c[0], c[1]))
    # fold the standardisation into the linear layer: (x − μ)/σ · Wᵀ + b = x · (W/σ)ᵀ + (b − (W/σ)·μ)
    raw_weight = weight / scale
    return ProbeFit(kind, raw_weight, bias - raw_weight @ mean, penalty,
                    {f"{c[1]:g}": c[0] for c in candidates}, temperature)


def _ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, k: int, penalty: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted ridge onto ±1 one-vs-rest targets (closed form), then one temperature for the softmax."""
    targets = -np.ones((len(y), k))
    targets[np.arange(len(y)), y] = 1.0
    sw = w / w.sum()
    centre = sw @ z
    zc = z - centre
    gram = (zc * sw[:, None]).T @ zc
    solution = np.linalg.solve(gram + penalty * np.eye(z.shape[1]), (zc * sw[:, None]).T @ targets)
    bias = sw @ targets - centre @ solution
    scores = z @ solution + bias
    temperature = _temperature(scores, y, w)
    return temperature * solution.T, temperature * bias, temperature


def _temperature(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The scale τ minimising the training cross-entropy of softmax(τ · scores) (golden-section on log τ)."""
    lo, hi = np.log(1e-3), np.log(1e3)
    golden = (np.sqrt(5.0) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = _weighted_ce(np.exp(a) * scores, y, w), _weighted_ce(np.exp(b) * scores, y, w)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = _weighted_ce(np.exp(a) * scores, y, w)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = _weighted_ce(np.exp(b) * scores, y, w)
    return float(np.exp((lo + hi) / 2))


def _logistic(z: np.ndarray, y: np.ndarray, w: np.ndarray, k: int, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, mean weighted cross-entropy + penalty/2 · ‖W‖², by L-BFGS in float64."""
    import torch

    zt = torch.from_numpy(z)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    wt = torch.from_numpy(w / w.sum())
    weight = torch.zeros((k, z.shape[1]), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        log_p = torch.log_softmax(zt @ weight.T + bias, dim=1)
        loss = -(wt * log_p[torch.arange(len(yt)), yt]).sum() + 0.5 * penalty * (weight * weight).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()
