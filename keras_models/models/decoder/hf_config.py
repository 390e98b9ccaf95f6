"""The typed spec shared by the decoder families (see :mod:`keras_models.spec`).

:class:`DecoderSpec` holds what every decoder reads (the five sizes, special tokens, tied
embeddings, initializer range) and the rope parameters. Its field names are DecoderBackbone's
constructor arguments; each family's spec (``LlamaSpec``, ``GPT2Spec``...) subclasses it, naming
its own config.json keys and Transformers' defaults, and variants subclass the family's spec.

Rope (``rope = True`` families): ``rope_theta``, ``rope_scaling`` and ``rotary_dim`` come from
Transformers 5 ``rope_parameters`` or the older ``rope_theta`` / ``rope_scaling`` /
``partial_rotary_factor`` keys (:func:`rope_from_hf`), and are written back as
``rope_parameters`` (:func:`rope_to_hf`).
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from keras_models.errors import ConfigError
from keras_models.spec import REQUIRED, Spec, const, dim, hf


def rope_from_hf(config, source="config.json", theta=10000.0, partial=1.0):
    """(theta, scaling dict or None, partial_rotary_factor) from Transformers 5 ``rope_parameters``
    or the older keys; ``theta`` / ``partial`` are the family's defaults."""
    params = dict(config.get("rope_parameters") or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        raise ConfigError(f"{source}: per-layer-type rope_parameters are not supported")
    legacy = dict(config.get("rope_scaling") or {})
    merged = {**legacy, **params}
    theta = merged.pop("rope_theta", None) or config.get("rope_theta") or theta
    partial = merged.pop("partial_rotary_factor", None) or config.get("partial_rotary_factor") or partial
    kind = merged.pop("rope_type", merged.pop("type", "default")) or "default"
    scaling = None if kind == "default" else {"rope_type": kind, **merged}
    try:
        return float(theta), scaling, float(partial)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: invalid rope parameters ({e})") from e


def rope_to_hf(theta, scaling, partial=1.0):
    params = {"rope_type": "default", "rope_theta": theta}
    if scaling:
        params.update(scaling)
    if partial != 1.0:
        params["partial_rotary_factor"] = partial
    return {"rope_parameters": params}


def _defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not REQUIRED}


def value(cls, values, name):
    """A field's value while reading config.json: what was read, else the field's default."""
    return values[name] if name in values else _defaults(cls).get(name)


def head_dim_of(cls, values):
    return value(cls, values, "head_dim") or value(cls, values, "hidden_size") // value(cls, values, "num_heads")


@dataclass(frozen=True, kw_only=True)
class DecoderSpec(Spec):
    """Fields every decoder family has (Llama's key names; families override keys and defaults)."""

    rope: ClassVar[bool] = False  # read/write rope_parameters (rope_theta, rope_scaling, rotary_dim)
    rope_theta_default: ClassVar[float] = 10000.0
    partial_rotary_default: ClassVar[float] = 1.0

    vocab_size: int = dim("vocab_size")
    hidden_size: int = dim("hidden_size")
    num_layers: int = dim("num_hidden_layers")
    num_heads: int = dim("num_attention_heads")
    intermediate_size: int = dim("intermediate_size")
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    initializer_range: float = hf("initializer_range", 0.02)
    pad_token_id: int | tuple | None = hf("pad_token_id", None)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", None)
    rope_theta: float = const(10000.0, doc="rope families: from rope_parameters (adjust_from_hf)")
    rope_scaling: dict | None = const(None, doc="rope families: rope_parameters without theta")
    rotary_dim: int | None = const(None, doc="rope families: head_dim * partial_rotary_factor")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if cls.rope:
            theta, scaling, partial = rope_from_hf(config, source, cls.rope_theta_default,
                                                   cls.partial_rotary_default)
            rotary = values.get("rotary_dim")
            if rotary is None and "rotary_dim" not in config:
                rotary = _defaults(cls).get("rotary_dim")
            values.update(rope_theta=theta, rope_scaling=scaling,
                          rotary_dim=rotary or int(head_dim_of(cls, values) * partial))
        return values

    def adjust_to_hf(self, out):
        if self.rope:
            head_dim = getattr(self, "head_dim", None) or self.hidden_size // self.num_heads
            out.update(rope_to_hf(self.rope_theta, self.rope_scaling, (self.rotary_dim or head_dim) / head_dim))
        return out


__all__ = ["DecoderSpec", "rope_from_hf", "rope_to_hf", "value", "head_dim_of", "REQUIRED"]
