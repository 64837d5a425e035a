"""LuMamba: LUNA's channel-unifying front-end followed by a stack of bidirectional Mamba-1 blocks.

Written from the specification (spec §1, §2): module names and shapes equal the upstream state-dict keys,
so the official ``PulpBio/LuMamba`` files load without renaming. Shapes below use B windows, C channels,
T samples, patch size P, S = T / P patches, Q queries of width E.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lumamba_cli.model.mamba import BACKENDS, Mamba, resolve_backend

CLASSIFICATION_TYPES = ("bc", "mcc", "ml", "mc", "mmc")
HEAD_OPTIONS = (None, "mamba", "linear", "probe")

# NeRF location features per octave: (sin, cos) for each of the 3 axes.
_NERF_PER_OCTAVE = 6
_BOUNDS = {
    "patch_size": (4, 4096), "num_queries": (1, 64), "embed_dim": (8, 4096), "num_heads": (1, 64),
    "num_blocks": (1, 64), "d_state": (1, 256), "d_conv": (1, 16), "expand": (1, 8), "num_classes": (0, 100_000),
    "classification_num_channels": (1, 4096), "vocab_size": (1, 100_000), "query_self_attn_layers": (0, 32),
    "mamba_head_dim": (1, 8192),
}


@dataclass
class LuMambaConfig:
    """Every hyperparameter of the network. Saved (``to_dict``) with every checkpoint lumamba writes."""

    patch_size: int = 40
    num_queries: int = 6
    embed_dim: int = 64
    num_heads: int = 2
    mlp_ratio: float = 4.0
    num_blocks: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    num_classes: int = 0  # 0 = pre-training model (reconstruction decoder + channel-name embedding)
    classifier_option: str | None = None  # None = LUNA query head, "mamba", "linear"
    classification_type: str = "bc"
    classification_num_channels: int = 22
    vocab_size: int = 90
    norm_eps: float = 1e-5
    query_self_attn_layers: int = 3
    mamba_head_dim: int = 256
    location_jitter_std: float = 0.02

    def __post_init__(self) -> None:
        # Bounds first, before any arithmetic: a configuration read from a file must not divide by zero or ask for
        # terabytes of parameters before it is refused. They are far above any LuMamba size (tiny: E=64, Q=6).
        out_of_bounds = [
            f"{name} must be an integer in [{low}, {high}] (got {getattr(self, name)!r})"
            for name, (low, high) in _BOUNDS.items()
            if not (isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool)
                    and low <= getattr(self, name) <= high)
        ]
        if not (isinstance(self.mlp_ratio, (int, float)) and 0 < self.mlp_ratio <= 16):
            out_of_bounds.append(f"mlp_ratio must be in (0, 16] (got {self.mlp_ratio!r})")
        if self.dt_rank != "auto" and not (isinstance(self.dt_rank, int) and 1 <= self.dt_rank <= 4096):
            out_of_bounds.append(f"dt_rank must be 'auto' or an integer in [1, 4096] (got {self.dt_rank!r})")
        if out_of_bounds:
            raise ValueError("invalid LuMamba configuration: " + "; ".join(out_of_bounds))
        problems = []
        if self.patch_size <= 0 or self.patch_size % 4:
            problems.append(f"patch_size must be a positive multiple of 4 (got {self.patch_size})")
        if self.embed_dim % 4 or self.embed_dim < _NERF_PER_OCTAVE:
            problems.append(f"embed_dim must be a multiple of 4 and >= 6 (got {self.embed_dim})")
        if self.embed_dim % self.num_heads or (self.num_queries * self.embed_dim) % self.num_heads:
            problems.append("embed_dim and num_queries*embed_dim must be divisible by num_heads")
        if self.num_blocks < 1 or self.num_queries < 1:
            problems.append("num_blocks and num_queries must be >= 1")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0 (got {self.num_classes})")
        if self.classifier_option not in HEAD_OPTIONS:
            problems.append(f"classifier_option must be null, 'mamba', 'linear' or 'probe' "
                            f"(got {self.classifier_option!r})")
        if self.classification_type not in CLASSIFICATION_TYPES:
            problems.append(f"classification_type must be one of {CLASSIFICATION_TYPES} (got {self.classification_type!r})")
        if (
            self.num_classes > 0
            and self.classification_type in ("mc", "mmc")
            and self.classifier_option != "mamba"
        ):
            # upstream's other heads silently ignore the per-channel sizes (spec Q5)
            problems.append(f"classification_type {self.classification_type!r} needs classifier_option 'mamba'")
        if not (self.dt_rank == "auto" or (isinstance(self.dt_rank, int) and self.dt_rank > 0)):
            problems.append(f"dt_rank must be 'auto' or a positive integer (got {self.dt_rank!r})")
        if problems:
            raise ValueError("invalid LuMamba configuration: " + "; ".join(problems))

    @property
    def d_model(self) -> int:
        return self.num_queries * self.embed_dim

    @property
    def head(self) -> str:
        if self.num_classes == 0:
            return "reconstruction"
        return self.classifier_option or "luna"

    @property
    def num_outputs(self) -> int:
        """Width of the classifier's last layer (the mmc output is then viewed as (channels, classes))."""
        if self.num_classes == 0:
            return 0
        if self.classifier_option == "mamba":
            if self.classification_type == "mc":
                return self.classification_num_channels
            if self.classification_type == "mmc":
                return self.classification_num_channels * self.num_classes
        return self.num_classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LuMambaConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LuMamba configuration keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def tiny(cls, **overrides: Any) -> "LuMambaConfig":
        """The released LuMamba-tiny (Q=6, E=64, 2 bi-Mamba blocks); pre-training model unless overridden."""
        return cls(**overrides)

    @classmethod
    def from_upstream(cls, constructor: dict[str, Any]) -> "LuMambaConfig":
        """From upstream ``LuMamba.__init__`` arguments (a fixture's ``config.constructor``)."""
        args = dict(constructor)
        if args.get("bidirectional", True) is not True or args.get("bidirectional_strategy", "add") != "add":
            raise ValueError("only bidirectional Mamba with strategy 'add' is implemented (as released)")
        norm = str(args.get("norm_layer", "torch.nn.LayerNorm"))
        if not norm.endswith("LayerNorm"):
            raise ValueError(f"unsupported norm_layer {norm!r}")
        option = args.get("classifier_option")
        if option is None and args.get("mamba_classifier", False):
            option = "mamba"  # the legacy flag, overridden by classifier_option when both are given (Q5)
        return cls(
            patch_size=int(args.get("patch_size", 40)),
            num_queries=int(args.get("num_queries", 6)),
            embed_dim=int(args.get("embed_dim", 64)),
            num_heads=int(args.get("num_heads", 2)),
            mlp_ratio=float(args.get("mlp_ratio", 4.0)),
            num_blocks=int(args.get("num_blocks", 2)),
            expand=int(args.get("exp", 2)),
            num_classes=int(args.get("num_classes", 0)),
            classifier_option=option,
            classification_type=str(args.get("classification_type", "bc")),
            classification_num_channels=int(args.get("classification_num_channels", 22)),
        )


# ------------------------------------------------------------------------------------------ small parts
class Mlp(nn.Module):
    """fc1 → GELU → dropout → optional LayerNorm → fc2 → dropout (the parameter names upstream uses)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, *, norm: bool = False,
                 dropout: float = 0.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, out_features)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class PatchEmbedNetwork(nn.Module):
    """Three conv + GroupNorm + GELU stages over each P-sample patch → E features per patch."""

    def __init__(self, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        channels = embed_dim // 4
        self.patch_size = patch_size
        self.proj_in = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=(1, patch_size // 2 - 1), stride=(1, patch_size // 4),
                      padding=(0, patch_size // 4 - 1)),
            nn.GroupNorm(4, channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, kernel_size=(1, 3), padding=(0, 1)),
            nn.GroupNorm(4, channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, kernel_size=(1, 3), padding=(0, 1)),
            nn.GroupNorm(4, channels),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_channels, n_samples = x.shape
        tokens = n_channels * (n_samples // self.patch_size)
        # token n = c·S + s (channel-major), one unit "image channel"
        feat = self.proj_in(x.reshape(batch, 1, tokens, self.patch_size))  # (B, E/4, C·S, W)
        # feature index w·(E/4) + e: the width position is the outer factor
        return feat.permute(0, 2, 3, 1).reshape(batch, tokens, -1)


class FrequencyFeatureEmbedder(nn.Module):
    """rFFT magnitude and phase of each patch → Mlp → E features."""

    def __init__(self, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        n_features = 2 * (patch_size // 2 + 1)
        self.frequency_to_embed = Mlp(n_features, 4 * n_features, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_channels, n_samples = x.shape
        patches = x.reshape(batch, n_channels * (n_samples // self.patch_size), self.patch_size)
        spectrum = torch.fft.rfft(patches, dim=-1)
        # angle() returns +π for a negative real DC/Nyquist bin (imaginary part +0.0), as upstream
        features = torch.cat([spectrum.abs(), spectrum.angle()], dim=-1)
        return self.frequency_to_embed(features)


def normalize_locations(locations: torch.Tensor) -> torch.Tensor:
    """Per window and per axis, min-max over the channels: (loc − min) / (max − min + 1e-8)."""
    low = locations.amin(dim=1, keepdim=True)
    high = locations.amax(dim=1, keepdim=True)
    return (locations - low) / (high - low + 1e-8)


def nerf_encode(coords: torch.Tensor, size: int) -> torch.Tensor:
    """NeRF features of (B, C, 3) coordinates: index k·6 + axis·2 + {sin, cos} of 2^k·coord (no π), zero-padded."""
    octaves = size // _NERF_PER_OCTAVE
    scales = 2.0 ** torch.arange(octaves, dtype=coords.dtype, device=coords.device)
    angles = coords.unsqueeze(-2) * scales.unsqueeze(-1)  # (B, C, k, axis)
    features = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(start_dim=2)
    return F.pad(features, (0, size - features.shape[-1]))


class CrossAttentionBlock(nn.Module):
    """Q learned queries attend over the channels of each patch, then 3 pre-norm self-attention layers."""

    def __init__(self, config: LuMambaConfig) -> None:
        super().__init__()
        E, eps = config.embed_dim, config.norm_eps
        hidden = int(E * config.mlp_ratio)
        self.query_embed = nn.Parameter(torch.empty(1, config.num_queries, E))
        # unused upstream too, but part of every state dict (spec Q6)
        self.temparature = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        self.cross_attention = nn.MultiheadAttention(E, config.num_heads, dropout=0.1, batch_first=True)
        self.ffn = Mlp(E, hidden, E, norm=True, dropout=0.1, eps=eps)
        self.keys_norm = nn.LayerNorm(E, eps=eps)
        self.values_norm = nn.LayerNorm(E, eps=eps)
        self.queries_norm = nn.LayerNorm(E, eps=eps)
        layer = nn.TransformerEncoderLayer(E, config.num_heads, dim_feedforward=hidden, dropout=0.1,
                                           activation="gelu", batch_first=True, norm_first=True,
                                           layer_norm_eps=eps)
        self.query_self_attn = nn.TransformerEncoder(layer, config.query_self_attn_layers,
                                                     enable_nested_tensor=False)
        nn.init.orthogonal_(self.query_embed)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        rows = tokens.shape[0]
        queries = self.queries_norm(self.query_embed).expand(rows, -1, -1)
        attended, weights = self.cross_attention(
            queries, self.keys_norm(tokens), self.values_norm(tokens),
            need_weights=need_weights, average_attn_weights=True,
        )
        # no residual around the cross-attention itself (upstream), but one around the FFN
        attended = attended + self.ffn(attended)
        return self.query_self_attn(attended), weights


class BiMamba(nn.Module):
    """Two independent Mamba blocks, one reading the patches backwards; outputs added."""

    def __init__(self, config: LuMambaConfig, backend: str) -> None:
        super().__init__()
        kwargs = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand, dt_rank=config.dt_rank,
                      backend=backend)
        self.mamba_fwd = Mamba(config.d_model, **kwargs)
        self.mamba_rev = Mamba(config.d_model, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mamba_fwd(x) + self.mamba_rev(x.flip(1)).flip(1)


class ClassificationHeadWithQueries(nn.Module):
    """LUNA's head: one learned query attends over the S patch embeddings, then an Mlp."""

    def __init__(self, config: LuMambaConfig) -> None:
        super().__init__()
        width = config.d_model
        self.learned_agg = nn.Parameter(torch.randn(1, 1, width))
        self.decoder_attn = nn.MultiheadAttention(width, config.num_heads, dropout=0.15, batch_first=True)
        self.decoder_ffn = Mlp(width, int(width * config.mlp_ratio), config.num_outputs, dropout=0.15)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        query = self.learned_agg.expand(x.shape[0], -1, -1)
        return self.decoder_attn(query, x, x, need_weights=False)[0][:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder_ffn(self.pooled(x))


class MambaClassifier(nn.Module):
    """FEMBA's head: Linear → GELU → unidirectional Mamba → mean over patches → Linear."""

    def __init__(self, config: LuMambaConfig, backend: str) -> None:
        super().__init__()
        hidden = config.mamba_head_dim
        self.fc1 = nn.Linear(config.d_model, hidden)
        self.mamba_1 = Mamba(hidden, d_state=config.d_state, d_conv=config.d_conv, expand=config.expand,
                             backend=backend)
        self.fc3 = nn.Linear(hidden, config.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.mamba_1(F.gelu(self.fc1(x))).mean(dim=1))


class LinearClassifier(nn.Module):
    """Mean over patches → Linear → GELU. The GELU on the logits is upstream's (spec Q4)."""

    def __init__(self, config: LuMambaConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.fc1(x.mean(dim=1)))


class ProbeClassifier(nn.Module):
    """Mean over patches → Linear: a linear probe fitted in closed form or by logistic regression on pooled
    embeddings (lumamba's own head; upstream has none). Same keys as the linear head, without its GELU."""

    def __init__(self, config: LuMambaConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(x.mean(dim=1))


class ChannelEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embed_dim)

    def forward(self, names: torch.Tensor) -> torch.Tensor:
        return self.embeddings(names)


class ReconstructionDecoder(nn.Module):
    """Per channel and patch: a query (location + channel-name embedding) attends to the Q patch queries."""

    def __init__(self, config: LuMambaConfig) -> None:
        super().__init__()
        E = config.embed_dim
        hidden = int(E * config.mlp_ratio)
        layer = nn.TransformerDecoderLayer(E, config.num_heads, dim_feedforward=hidden, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True,
                                           layer_norm_eps=config.norm_eps)
        self.decoder_pred = nn.TransformerDecoder(layer, 1)
        self.norm = nn.LayerNorm(E, eps=config.norm_eps)
        self.decoder_linear = Mlp(E, hidden, config.patch_size)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.decoder_linear(self.norm(self.decoder_pred(queries, memory)))


# ------------------------------------------------------------------------------------------------ model
class LuMamba(nn.Module):
    """The LuMamba network (tiny or any other size) with one of its heads.

    Electrode-position (and channel-name) embeddings are tiled **per window**: every window keeps its own
    positions. For batches whose windows share one montage this equals upstream exactly; for mixed-montage
    batches it deliberately differs from upstream, whose ``.repeat(S, 1, 1)`` gives token row b·S+s the
    positions of window (b·S+s) mod B (spec Q1). Here a batch gives every window the same output as running
    it alone.
    """

    def __init__(self, config: LuMambaConfig | None = None, *, backend: str = "torch") -> None:
        super().__init__()
        config = config or LuMambaConfig.tiny()
        if backend not in BACKENDS:
            raise ValueError(f"unknown Mamba backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.config = config
        self._backend = backend
        E = config.embed_dim
        # learned only in pre-training; classification never masks (spec Q6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, E), requires_grad=config.num_classes == 0)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.patch_embed = PatchEmbedNetwork(E, config.patch_size)
        self.freq_embed = FrequencyFeatureEmbedder(E, config.patch_size)
        self.channel_location_embedder = nn.Sequential(Mlp(E, 2 * E, E, norm=True, eps=config.norm_eps))
        self.cross_attn = CrossAttentionBlock(config)
        if config.num_classes == 0:
            self.decoder_head = ReconstructionDecoder(config)
            self.channel_emb = ChannelEmbeddings(config.vocab_size, E)
        elif config.classifier_option == "mamba":
            self.classifier = MambaClassifier(config, backend)
        elif config.classifier_option == "linear":
            self.classifier = LinearClassifier(config)
        elif config.classifier_option == "probe":
            self.classifier = ProbeClassifier(config)
        else:
            self.classifier = ClassificationHeadWithQueries(config)
        self.mamba_blocks = nn.ModuleList(BiMamba(config, backend) for _ in range(config.num_blocks))
        self.norm_layers = nn.ModuleList(nn.LayerNorm(config.d_model, eps=config.norm_eps)
                                         for _ in range(config.num_blocks))

    # ---- backend
    @property
    def backend(self) -> str:
        """The scan backend that runs on the model's current device ("torch" or "mamba-ssm")."""
        return resolve_backend(self._backend, self._device())

    @property
    def requested_backend(self) -> str:
        return self._backend

    def set_backend(self, name: str) -> "LuMamba":
        resolve_backend(name, self._device())  # refuse an impossible choice now, not at the first batch
        self._backend = name
        for module in self.modules():
            if isinstance(module, Mamba):
                module.backend = name
        return self

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- checks
    def _check_inputs(self, x: torch.Tensor, locations: torch.Tensor) -> None:
        P = self.config.patch_size
        if x.ndim != 3:
            raise ValueError(f"x must be (batch, channels, samples), got shape {tuple(x.shape)}")
        batch, n_channels, n_samples = x.shape
        if n_samples == 0 or n_samples % P:
            raise ValueError(f"the window length must be a positive multiple of {P} samples, got {n_samples}")
        if tuple(locations.shape) != (batch, n_channels, 3):
            raise ValueError(
                f"channel_locations must be (batch, channels, 3) = {(batch, n_channels, 3)}, got {tuple(locations.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor")
        # NaN would spread silently through every window of the batch (attention, LayerNorm)
        if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(locations).all()):
            raise ValueError("x or channel_locations contain NaN or infinite values")

    # ---- stages
    def _token_embeddings(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        tokens = self.patch_embed(x) + self.freq_embed(x)  # (B, C·S, E)
        if mask is not None:
            batch, n_channels, n_samples = x.shape
            if tuple(mask.shape) != tuple(x.shape):
                raise ValueError(f"mask must have the shape of x {tuple(x.shape)}, got {tuple(mask.shape)}")
            masked = mask.reshape(batch, -1, self.config.patch_size).any(dim=-1, keepdim=True)
            tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        return tokens

    def _location_embedding(self, locations: torch.Tensor, jitter: bool) -> torch.Tensor:
        coords = normalize_locations(locations)
        if jitter:
            coords = coords + torch.randn_like(coords) * self.config.location_jitter_std
        return self.channel_location_embedder(nerf_encode(coords, self.config.embed_dim))

    def _tokens(self, embeddings: torch.Tensor, location_emb: torch.Tensor) -> torch.Tensor:
        batch, n_channels, E = location_emb.shape
        grid = embeddings.reshape(batch, n_channels, -1, E).transpose(1, 2)  # (B, S, C, E)
        return (grid + location_emb.unsqueeze(1)).reshape(-1, n_channels, E)  # row b·S + s

    def _mamba_stack(self, hidden: torch.Tensor) -> torch.Tensor:
        for norm, block in zip(self.norm_layers, self.mamba_blocks):
            hidden = hidden + block(norm(hidden))
        return hidden  # no final norm (spec Q3)

    def _encode(self, x, locations, mask, jitter, need_weights=False):
        self._check_inputs(x, locations)
        dtype = next(self.parameters()).dtype
        x, locations = x.to(dtype), locations.to(dtype)  # e.g. float64 signals into a float32 model
        location_emb = self._location_embedding(locations, jitter)
        tokens = self._tokens(self._token_embeddings(x, mask), location_emb)
        queries, weights = self.cross_attn(tokens, need_weights=need_weights)
        batch = x.shape[0]
        hidden = queries.reshape(batch, -1, self.config.d_model)  # (B, S, Q·E), feature q·E + e
        return self._mamba_stack(hidden), location_emb, weights

    def encode(self, x: torch.Tensor, channel_locations: torch.Tensor, mask: torch.Tensor | None = None,
               location_jitter: bool | None = None) -> torch.Tensor:
        """Encoder output (B, S, Q·E): the raw residual stream after the last bi-Mamba block."""
        jitter = (mask is not None) if location_jitter is None else location_jitter
        return self._encode(x, channel_locations, mask, jitter)[0]

    def forward(self, x: torch.Tensor, channel_locations: torch.Tensor, channel_names: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, location_jitter: bool | None = None) -> torch.Tensor:
        """Logits (B, n) — (B, channels, classes) for "mmc" — or, for ``num_classes == 0``, the
        reconstruction (B, C, T), which needs ``channel_names`` (B, C) vocabulary indices.

        ``mask=None`` is deterministic. Upstream adds N(0, 0.02²) jitter to the normalised positions whenever a
        mask is passed (even an all-False one); that happens here only with a mask or ``location_jitter=True``.
        """
        jitter = (mask is not None) if location_jitter is None else location_jitter
        if self.config.num_classes == 0:
            if channel_names is None:
                raise ValueError("the pre-training model (num_classes=0) needs channel_names for reconstruction")
            encoded, location_emb, _ = self._encode(x, channel_locations, mask, jitter)
            return self._reconstruct(encoded, location_emb, channel_names, tuple(x.shape))
        encoded = self._encode(x, channel_locations, mask, jitter)[0]
        return self.classify(encoded)

    def classify(self, encoded: torch.Tensor) -> torch.Tensor:
        """Logits from encoder outputs (B, S, Q·E): the head alone (frozen-encoder training from cached outputs)."""
        logits = self.classifier(encoded)
        if self.config.classifier_option == "mamba" and self.config.classification_type == "mmc":
            logits = logits.view(-1, self.config.classification_num_channels, self.config.num_classes)
        return logits

    def _reconstruct(self, encoded, location_emb, channel_names, shape) -> torch.Tensor:
        batch, n_channels, n_samples = shape
        if tuple(channel_names.shape) != (batch, n_channels):
            raise ValueError(f"channel_names must be (batch, channels) = {(batch, n_channels)}, "
                             f"got {tuple(channel_names.shape)}")
        if channel_names.dtype not in (torch.int64, torch.int32) or (
            channel_names.numel() and (int(channel_names.min()) < 0 or int(channel_names.max()) >= self.config.vocab_size)
        ):
            raise ValueError(f"channel_names must be integer indices in [0, {self.config.vocab_size})")
        E, S = self.config.embed_dim, n_samples // self.config.patch_size
        per_window = location_emb + self.channel_emb(channel_names.long())  # (B, C, E)
        queries = per_window.unsqueeze(1).expand(batch, S, n_channels, E).reshape(batch * S, n_channels, E)
        memory = encoded.reshape(batch * S, self.config.num_queries, E)
        patches = self.decoder_head(queries, memory)  # (B·S, C, P)
        return patches.view(batch, S, n_channels, -1).permute(0, 2, 1, 3).reshape(batch, n_channels, n_samples)

    @torch.no_grad()
    def stages(self, x: torch.Tensor, channel_locations: torch.Tensor,
               channel_names: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every intermediate of a deterministic forward (mask=None), named as in the parity fixtures."""
        cfg = self.config
        self._check_inputs(x, channel_locations)
        locations = channel_locations.to(x.dtype)
        out: dict[str, torch.Tensor] = {}
        out["patch_embed"] = self.patch_embed(x)
        out["freq_embed"] = self.freq_embed(x)
        out["loc_normalized"] = normalize_locations(locations)
        out["loc_nerf"] = nerf_encode(out["loc_normalized"], cfg.embed_dim)
        out["loc_emb"] = self.channel_location_embedder(out["loc_nerf"])
        out["tokens"] = self._tokens(out["patch_embed"] + out["freq_embed"], out["loc_emb"])
        out["cross_attn"], out["cross_attn_weights"] = self.cross_attn(out["tokens"], need_weights=True)
        hidden = out["cross_attn"].reshape(x.shape[0], -1, cfg.d_model)
        for i, (norm, block) in enumerate(zip(self.norm_layers, self.mamba_blocks)):
            normed = norm(hidden)
            out[f"block{i}.mamba_fwd"] = block.mamba_fwd(normed)
            out[f"block{i}.bimamba"] = block(normed)
            hidden = hidden + out[f"block{i}.bimamba"]
            out[f"block{i}.out"] = hidden
        out["encode"] = hidden
        if cfg.num_classes == 0:
            if channel_names is not None:
                out["reconstruction"] = self._reconstruct(hidden, out["loc_emb"], channel_names, x.shape)
            return out
        head = self.classifier
        if isinstance(head, ClassificationHeadWithQueries):
            out["head.attn"] = head.pooled(hidden)
        elif isinstance(head, MambaClassifier):
            out["head.fc1_gelu"] = F.gelu(head.fc1(hidden))
            out["head.mamba"] = head.mamba_1(out["head.fc1_gelu"])
        elif isinstance(head, (LinearClassifier, ProbeClassifier)):
            out["head.pooled"] = hidden.mean(dim=1)
            out["head.fc1"] = head.fc1(out["head.pooled"])
        out["logits"] = self.classify(hidden)
        return out

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = [
    "LuMamba",
    "LuMambaConfig",
    "Mlp",
    "normalize_locations",
    "nerf_encode",
    "CLASSIFICATION_TYPES",
    "HEAD_OPTIONS",
]
