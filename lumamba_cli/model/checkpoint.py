"""Reading and writing LuMamba weights, always with strict key coverage.

Three kinds of file:

* the official ``PulpBio/LuMamba`` safetensors: the pre-training model's 142 float32 tensors, keys prefixed
  ``model.`` (spec §2.6); the unprefixed form is accepted too;
* Lightning ``.ckpt`` files, read only through ``torch.load(weights_only=True)`` — never unrestricted pickle;
* lumamba head files: safetensors plus a ``lumamba_head`` metadata entry (:class:`HeadMetadata`), holding
  either the whole fine-tuned model or only the ``classifier.*`` tensors of a head trained on top of an
  official encoder identified by its sha256.

A file that does not cover the model exactly (missing, unexpected or mis-shaped keys) raises
:class:`~lumamba_cli.errors.WeightsError` naming the file: a partly random model is never run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from lumamba_cli.errors import WeightsError
from lumamba_cli.fileio import atomic_write_bytes, sha256_file
from lumamba_cli.headfile import (
    HEAD_METADATA_KEY,
    HeadMetadata,
    is_safetensors,
    read_head_metadata,
    read_safetensors_header,
)
from lumamba_cli.model.lumamba import LuMamba, LuMambaConfig

PREFIX = "model."
# What to run, only where the checkpoint's origin is trusted, when a .ckpt holds objects beyond tensors.
CONVERSION_RECIPE = (
    "in a trusted environment run: python -c \"import torch, safetensors.torch as st; "
    "sd = torch.load('{path}', map_location='cpu', weights_only=False)['state_dict']; "
    "st.save_file({{k: v.contiguous() for k, v in sd.items()}}, '{stem}.safetensors')\" and use that file"
)
# Only the pre-training model has these; classification drops them (upstream fine-tuning does the same).
RECONSTRUCTION_PREFIXES = ("decoder_head.", "channel_emb.")
CLASSIFIER_PREFIX = "classifier."
_SHOWN = 5  # keys listed per category in an error line


# ------------------------------------------------------------------------------------------ key shapes
def model_key_shapes(config: LuMambaConfig) -> dict[str, tuple[int, ...]]:
    """Upstream key → shape for ``config``, read off the model itself (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = LuMamba(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def official_key_shapes(config: LuMambaConfig | None = None) -> dict[str, tuple[int, ...]]:
    """The tensors of an official encoder file (pre-training model), without the ``model.`` prefix."""
    config = config or LuMambaConfig.tiny()
    return model_key_shapes(_pretraining(config))


def _pretraining(config: LuMambaConfig) -> LuMambaConfig:
    data = config.to_dict()
    data.update(num_classes=0, classifier_option=None, classification_type="bc")
    return LuMambaConfig.from_dict(data)


def coverage_problems(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """One line describing missing, unexpected and mis-shaped keys, or None when they match exactly."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(k for k in set(found) & set(expected) if tuple(found[k]) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
    if misshaped:
        shown = ", ".join(f"{k} {list(found[k])} instead of {list(expected[k])}" for k in misshaped[:_SHOWN])
        more = f", … {len(misshaped) - _SHOWN} more" if len(misshaped) > _SHOWN else ""
        parts.append(f"{len(misshaped)} with the wrong shape ({shown}{more})")
    return "; ".join(parts) if parts else None


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", … {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


# ------------------------------------------------------------------------------------- raw file access
def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise WeightsError(f"cannot read the tensors ({exc})", path=path) from None


def _load_lightning(path: Path) -> dict[str, torch.Tensor]:
    """state_dict of a Lightning ``.ckpt`` through the restricted unpickler only."""
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message is several paragraphs with terminal colour codes; keep its first sentence
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split(". ")[0].splitlines()[0] if str(exc) else ""
        raise WeightsError(
            "cannot be read with torch.load(weights_only=True), and lumamba never unpickles arbitrary "
            f"objects ({type(exc).__name__}: {first[:120]})",
            path=path,
            hint=CONVERSION_RECIPE.format(path=path.name, stem=path.stem),
        ) from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError("has no state_dict of tensors", path=path)
    return state


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors or Lightning file, keys as stored."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path=path)
    if is_safetensors(path):
        return _load_safetensors(path)
    return _load_lightning(path)


def strip_prefix(state: Mapping[str, torch.Tensor], path: Path | str) -> dict[str, torch.Tensor]:
    """Remove the Lightning ``model.`` prefix; all keys must carry it, or none."""
    prefixed = [k.startswith(PREFIX) for k in state]
    if all(prefixed):
        return {k[len(PREFIX):]: v for k, v in state.items()}
    if not any(prefixed):
        return dict(state)
    raise WeightsError(
        f"mixes keys with and without the '{PREFIX}' prefix ({sum(prefixed)} of {len(prefixed)} prefixed)", path=path
    )


def _check_values(state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    bad_dtype = sorted(k for k, v in state.items() if not v.is_floating_point())
    if bad_dtype:
        raise WeightsError(f"non-floating-point weights: {_first(bad_dtype)}", path=path)
    non_finite = sorted(k for k, v in state.items() if not bool(torch.isfinite(v).all()))
    if non_finite:
        raise WeightsError(f"NaN or infinite values in {_first(non_finite)}", path=path)


# ---------------------------------------------------------------------------------- official encoders
def check_official_layout(path: str | Path) -> None:
    """Raise WeightsError unless ``path`` is laid out exactly as an official PulpBio/LuMamba file.

    Exactly: safetensors, every key prefixed ``model.``, the 142 tensors of the tiny pre-training model with
    their shapes, all float32. Reads only the header.
    """
    path = Path(path)
    info = read_safetensors_header(path, what="encoder file").tensors
    unprefixed = sorted(k for k in info if not k.startswith(PREFIX))
    if unprefixed:
        raise WeightsError(f"{len(unprefixed)} keys lack the '{PREFIX}' prefix ({_first(unprefixed)})", path=path)
    found = {k[len(PREFIX):]: shape for k, (shape, _) in info.items()}
    problem = coverage_problems(found, official_key_shapes())
    if problem:
        raise WeightsError(f"does not match the official LuMamba layout: {problem}", path=path)
    not_f32 = sorted(k for k, (_, dtype) in info.items() if dtype.upper() not in ("F32", "FLOAT32"))
    if not_f32:
        raise WeightsError(f"{len(not_f32)} tensors are not float32 ({_first(not_f32)})", path=path)


def load_official_encoder(path: str | Path, *, reconstruction: bool = True,
                          config: LuMambaConfig | None = None) -> dict[str, torch.Tensor]:
    """State dict (no prefix) of an official encoder file, or of a Lightning ``.ckpt`` of the same model.

    The file must hold exactly the pre-training model of ``config`` (default LuMamba-tiny): 142 tensors.
    ``reconstruction=True`` keeps ``decoder_head.*`` and ``channel_emb.*`` (for ``num_classes == 0``); False
    drops them, leaving the encoder for a classification model. Tensors are returned as float32.
    """
    path = Path(path)
    state = strip_prefix(read_tensors(path), path)
    expected = official_key_shapes(config)
    problem = coverage_problems({k: tuple(v.shape) for k, v in state.items()}, expected)
    if problem:
        raise WeightsError(f"does not cover the LuMamba pre-training model: {problem}", path=path)
    _check_values(state, path)
    return {
        key: value.float()
        for key, value in state.items()
        if reconstruction or not key.startswith(RECONSTRUCTION_PREFIXES)
    }


def infer_classification_config(shapes: Mapping[str, tuple[int, ...]], classification_type: str | None = None,
                                path: Path | str | None = None) -> LuMambaConfig:
    """The configuration of a fine-tuned classification model from its keys and shapes (no prefix), e.g. a
    BioFoundation checkpoint. Everything but the attention head count is read off the shapes; that count changes
    no shape, so upstream's (2, the released encoders') is assumed. A Mamba head's outputs are per-window classes
    or per channel, which the shapes cannot tell: ``classification_type`` must then be given."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise WeightsError(f"not a LuMamba classification model: no {key}", path=path)
        return tuple(shapes[key])

    if any(k.startswith(RECONSTRUCTION_PREFIXES) for k in shapes):
        raise WeightsError("holds the pre-training model (reconstruction decoder), not a classification head",
                           path=path)
    _, num_queries, embed_dim = shape("cross_attn.query_embed")
    n_features = shape("freq_embed.frequency_to_embed.fc1.weight")[1]
    blocks = {int(k.split(".")[1]) for k in shapes if k.startswith("mamba_blocks.")}
    d_inner, d_state = shape("mamba_blocks.0.mamba_fwd.A_log")
    d_model = num_queries * embed_dim
    kwargs: dict = dict(
        patch_size=n_features - 2, num_queries=num_queries, embed_dim=embed_dim, num_blocks=len(blocks),
        d_state=d_state, d_conv=shape("mamba_blocks.0.mamba_fwd.conv1d.weight")[-1], expand=d_inner // d_model,
        mlp_ratio=shape("cross_attn.ffn.fc1.weight")[0] / embed_dim,
        query_self_attn_layers=len({k.split(".")[3] for k in shapes if k.startswith("cross_attn.query_self_attn.")}),
    )
    if blocks != set(range(len(blocks))):
        raise WeightsError(f"mamba_blocks are numbered {sorted(blocks)}, not 0..{len(blocks) - 1}", path=path)
    if "classifier.decoder_attn.in_proj_weight" in shapes:
        option, outputs = None, shape("classifier.decoder_ffn.fc2.weight")[0]
    elif "classifier.mamba_1.A_log" in shapes:
        option, outputs = "mamba", shape("classifier.fc3.weight")[0]
        kwargs["mamba_head_dim"] = shape("classifier.fc1.weight")[0]
    elif "classifier.fc1.weight" in shapes:
        option, outputs = "linear", shape("classifier.fc1.weight")[0]
    else:
        raise WeightsError("holds no classifier.* weights (an encoder only?)", path=path)
    kind = classification_type
    if kind is None:
        if option == "mamba":
            raise WeightsError(
                f"its Mamba head emits {outputs} outputs: per-window classes (bc/mcc) or per channel (mc/mmc)? "
                "The weights cannot tell; give the task (or a config with classification_type)", path=path)
        kind = "bc" if outputs == 2 else "mcc"
    if kind == "mc":
        kwargs.update(classification_num_channels=outputs, num_classes=2)
    elif kind == "mmc":
        channels = outputs // 6
        if channels * 6 != outputs:
            raise WeightsError(f"an mmc head emits 22 channels × 6 classes, this one {outputs} outputs", path=path)
        kwargs.update(classification_num_channels=channels, num_classes=6)
    else:
        kwargs["num_classes"] = outputs
    try:
        config = LuMambaConfig(classifier_option=option, classification_type=kind, **kwargs)
    except ValueError as exc:
        raise WeightsError(f"its shapes give no valid configuration ({exc})", path=path) from None
    problem = coverage_problems(shapes, model_key_shapes(config))
    if problem:
        raise WeightsError(f"its keys do not fit the LuMamba model its shapes describe: {problem}", path=path)
    return config


def read_classification_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict (no prefix, float32) of a fine-tuned classification model in upstream form: a Lightning
    ``.ckpt`` (read with ``weights_only=True``) or its ``ckpt_to_safetensor.py`` conversion."""
    path = Path(path)
    raw = read_tensors(path)
    model_keys = {k: v for k, v in raw.items() if k.startswith(PREFIX)}
    others = sorted(set(raw) - set(model_keys))
    if model_keys and others:
        raise WeightsError(f"holds tensors outside the model ({_first(others)}): not a LuMamba task checkpoint",
                           path=path)
    state = strip_prefix(raw, path)
    _check_values(state, path)
    return {k: v.float() for k, v in state.items()}


def load_model(path: str | Path, config: LuMambaConfig | None = None, *, encoder_path=None,
               allow_new_head: bool = False, backend: str = "torch") -> LuMamba:
    """A model in eval mode from an official encoder file, a Lightning ``.ckpt`` or a lumamba head file.

    Official files hold the pre-training model; without ``config`` that is what you get. A fine-tuned
    classification model (a BioFoundation ``.ckpt`` or its safetensors conversion) is loaded strictly with the
    configuration its shapes describe (or ``config``). A config with a classifier that an encoder file does not
    contain is refused unless ``allow_new_head`` (fine-tuning starts from a fresh head)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path=path)
    if is_safetensors(path) and HEAD_METADATA_KEY in read_safetensors_header(path).metadata:
        model, metadata = load_head(path, encoder_path=encoder_path, backend=backend)
        if config is not None and config.to_dict() != metadata.config:
            raise WeightsError("the head file's configuration differs from the one requested", path=path)
        return model
    state = read_classification_state(path)
    if any(k.startswith(CLASSIFIER_PREFIX) for k in state) and not allow_new_head:
        inferred = infer_classification_config({k: tuple(v.shape) for k, v in state.items()},
                                               config.classification_type if config else None, path)
        if config is not None and config.to_dict() != inferred.to_dict():
            raise WeightsError("the checkpoint's shapes describe another configuration than the one given "
                               f"({coverage_problems(model_key_shapes(config), model_key_shapes(inferred)) or 'sizes'})",
                               path=path)
        model = LuMamba(inferred, backend=backend)
        model.load_state_dict(state, strict=True)
        return model.eval()
    config = config or LuMambaConfig.tiny()
    reconstruction = config.num_classes == 0
    state = load_official_encoder(path, reconstruction=reconstruction, config=config)
    model = LuMamba(config, backend=backend)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing and not allow_new_head:
        raise WeightsError(
            f"holds no weights for the {config.head} head ({_first(missing)}); load a trained head file "
            "instead, or fine-tune one",
            path=path,
        )
    incompatible = model.load_state_dict(state, strict=False)
    if incompatible.unexpected_keys or any(not k.startswith(CLASSIFIER_PREFIX) for k in incompatible.missing_keys):
        raise WeightsError(f"keys do not fit the model: {incompatible}", path=path)  # a bug if it ever happens
    return model.eval()


# ----------------------------------------------------------------------------------------- head files
def save_head(path: str | Path, model: LuMamba, metadata: HeadMetadata) -> Path:
    """Write ``model`` (whole, or only its ``classifier.*`` tensors) with its metadata, atomically."""
    from safetensors.torch import save

    path = Path(path)
    cfg = model.config
    if cfg.num_classes == 0:
        raise ValueError("a head file needs a classification model (num_classes > 0)")
    config_dict = cfg.to_dict()
    if metadata.config and metadata.config != config_dict:
        raise ValueError("metadata.config differs from the model's configuration")
    mismatched = [
        name for name, ours, theirs in (
            ("num_classes", cfg.num_classes, metadata.num_classes),
            ("classification_type", cfg.classification_type, metadata.classification_type),
            ("head_option", cfg.classifier_option, metadata.head_option),
        ) if ours != theirs
    ]
    if mismatched:
        raise ValueError(f"metadata disagrees with the model on {', '.join(mismatched)}")
    if not metadata.contains_encoder and metadata.encoder is None:
        raise ValueError("a head-only file must name the encoder (sha256) it was trained on")
    metadata = metadata.model_copy(update={"config": config_dict})
    state = {
        key: value.detach().to("cpu").contiguous()
        for key, value in model.state_dict().items()
        if metadata.contains_encoder or key.startswith(CLASSIFIER_PREFIX)
    }
    # Serialised in memory (a head file is at most the whole model, a few MB) so that the one atomic writer is used.
    # One metadata entry only: safetensors stores its metadata map in hash order, so a second key would make the
    # bytes of identical heads differ from run to run.
    atomic_write_bytes(path, save(state, metadata={HEAD_METADATA_KEY: metadata.model_dump_json()}))
    return path


def head_config(path: Path, metadata: HeadMetadata) -> LuMambaConfig:
    """A head file's configuration, checked (sane bounds, and its tensors' names and shapes, from the header only)
    before any tensor is built."""
    try:
        config = LuMambaConfig.from_dict(metadata.config)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"invalid model configuration in the head metadata ({exc})", path=path) from None
    if config.num_classes == 0:
        raise WeightsError("the head metadata describes a model without a classifier", path=path)
    found = {k.removeprefix(PREFIX): shape for k, (shape, _) in read_safetensors_header(path).tensors.items()}
    expected = model_key_shapes(config)
    if not metadata.contains_encoder:
        expected = {k: v for k, v in expected.items() if k.startswith(CLASSIFIER_PREFIX)}
    problem = coverage_problems(found, expected)
    if problem:
        raise WeightsError(f"does not cover its model: {problem}", path=path)
    return config


def load_head(path: str | Path, encoder_path: str | Path | None = None, *,
              backend: str = "torch") -> tuple[LuMamba, HeadMetadata]:
    """Model (eval mode) and metadata of a head file; head-only files need the matching ``encoder_path``."""
    path = Path(path)
    metadata = read_head_metadata(path)
    config = head_config(path, metadata)
    state = strip_prefix(_load_safetensors(path), path)
    if not metadata.contains_encoder:
        stray = sorted(k for k in state if not k.startswith(CLASSIFIER_PREFIX))
        if stray:
            raise WeightsError(f"head-only file holds non-head tensors ({_first(stray)})", path=path)
        if encoder_path is None:
            raise WeightsError(
                f"holds only the head; it needs the encoder '{metadata.encoder.name}' "
                f"(sha256 {metadata.encoder.sha256[:12]}…)", path=path,
            )
        digest = sha256_file(encoder_path, cached=True)
        if digest != metadata.encoder.sha256:
            raise WeightsError(
                f"encoder sha256 {digest[:12]}… is not the {metadata.encoder.sha256[:12]}… this head was trained on "
                f"({path.name})", path=encoder_path,
            )
        state.update(load_official_encoder(encoder_path, reconstruction=False, config=config))
    expected = model_key_shapes(config)
    problem = coverage_problems({k: tuple(v.shape) for k, v in state.items()}, expected)
    if problem:
        raise WeightsError(f"does not cover its model: {problem}", path=path)
    _check_values(state, path)
    model = LuMamba(config, backend=backend)
    model.load_state_dict(state, strict=True)
    return model.eval(), metadata
