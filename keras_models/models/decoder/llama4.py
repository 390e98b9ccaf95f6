"""Llama 4 text (``llama4_text``), a spec of the one DecoderBackbone.

What differs from Llama 3:

* rotary positions on complex pairs (interleaved), skipped on the NoPE layers that
  ``no_rope_layers`` marks 0 (default: every ``no_rope_layer_interval``-th layer);
* on the rope layers, ``use_qk_norm`` adds a weightless RMS norm on each query / key head, after
  the rotary positions, and ``layer_types`` "chunked_attention" limits attention to chunks of
  ``attention_chunk_size`` tokens (default: every rope layer when a chunk size is set);
* on the NoPE layers, ``attn_temperature_tuning`` scales the queries at buffer slot ``p`` by
  ``1 + attn_scale * log(1 + floor((p + 1) / floor_scale))``;
* the layers ``moe_layers`` lists (default: every ``interleave_moe_layer_step``-th) are a mixture of
  ``num_local_experts`` stacked experts (width ``intermediate_size``; top ``num_experts_per_tok`` by
  router logit, weighted by the sigmoid of that logit, which scales each expert's *input*) plus an
  always-on shared expert of the same width; the other layers are a gated MLP of width
  ``intermediate_size_mlp``.

The multimodal ``llama4`` checkpoints (Llama4ForConditionalGeneration) are not covered here.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.decoder.hf_config import value
from keras_models.models.decoder.llama import NAMES, LlamaSpec, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class Llama4TextSpec(LlamaSpec):
    """Llama4TextConfig (see the module docstring)."""

    rope_theta_default: ClassVar[float] = 500000.0

    vocab_size: int = dim("vocab_size", 202048)
    hidden_size: int = dim("hidden_size", 5120)
    intermediate_size: int = dim("intermediate_size_mlp", 16384, doc="the dense (non-MoE) layers' MLP width")
    num_layers: int = dim("num_hidden_layers", 48)
    num_heads: int = dim("num_attention_heads", 40)
    num_kv_heads: int | None = hf("num_key_value_heads", 8)
    head_dim: int | None = hf("head_dim", 128)
    max_position_embeddings: int = dim("max_position_embeddings", 4096 * 32)
    norm_eps: float = hf("rms_norm_eps", 1e-5)
    pad_token_id: int | tuple | None = hf("pad_token_id", None)
    rotary_interleaved: bool = const(True)
    num_experts: int = dim("num_local_experts", 16)
    experts_per_token: int = dim("num_experts_per_tok", 1)
    moe_intermediate_size: int = dim("intermediate_size", 8192, doc="each expert's width")
    shared_expert_size: int = dim("intermediate_size", 8192)
    normalize_top_k: bool = const(False)
    router_score: str = const("sigmoid")
    moe_stacked_experts: bool = const(True)
    moe_weight_inputs: bool = const(True)
    moe_layers: tuple | None = const(None, doc="from moe_layers or interleave_moe_layer_step")
    nope_layers: tuple | None = const(None, doc="the layers no_rope_layers marks 0")
    qk_norm: str | None = const(None, doc="'rms_unscaled' with use_qk_norm")
    qk_norm_after_rope: bool = const(True)
    nope_qk_norm: bool = const(False)
    nope_query_temperature: tuple | None = const(None, doc="(floor_scale, attn_scale) with attn_temperature_tuning")
    attention_chunk_size: int | None = hf("attention_chunk_size", 8192)
    layer_types: tuple | None = hf("layer_types", None)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        n = value(cls, values, "num_layers")
        flags = config.get("no_rope_layers")
        if not flags:
            interval = config.get("no_rope_layer_interval", 4)
            flags = [int((i + 1) % interval != 0) for i in range(n)]
        if len(flags) != n:
            raise ConfigError(f"{source}: no_rope_layers has {len(flags)} entries for {n} layers")
        values["nope_layers"] = tuple(i for i, f in enumerate(flags) if not f)
        moe = config.get("moe_layers")
        if moe is None:
            step = config.get("interleave_moe_layer_step", 1)
            if not isinstance(step, int) or step < 1:
                raise ConfigError(f"{source}: interleave_moe_layer_step={step!r} must be a positive integer")
            moe = range(step - 1, n, step)
        values["moe_layers"] = tuple(int(i) for i in moe)
        if bad := [i for i in values["moe_layers"] if not 0 <= i < n]:
            raise ConfigError(f"{source}: moe_layers {bad} are outside the {n} layers")
        values["qk_norm"] = "rms_unscaled" if config.get("use_qk_norm", True) else None
        if config.get("attn_temperature_tuning", True):
            floor_scale = config.get("floor_scale", 8192)
            if not floor_scale or floor_scale <= 0:
                raise ConfigError(f"{source}: floor_scale={floor_scale!r} must be positive")
            values["nope_query_temperature"] = (float(floor_scale), float(config.get("attn_scale", 0.1)))
        chunk = values.get("attention_chunk_size")
        if values.get("layer_types") is None:
            values["layer_types"] = tuple("chunked_attention" if f and chunk is not None else "full_attention"
                                          for f in flags)
        kinds = set(values["layer_types"]) - {"chunked_attention", "full_attention"}
        if kinds or len(values["layer_types"]) != n:
            raise ConfigError(f"{source}: layer_types must be {n} of 'chunked_attention' / 'full_attention'"
                              + (f", got {sorted(kinds)}" if kinds else ""))
        if chunk is None and "chunked_attention" in values["layer_types"]:
            raise ConfigError(f"{source}: layer_types has chunked_attention layers but attention_chunk_size is null")
        return values

    def adjust_to_hf(self, out):
        nope = set(self.nope_layers or ())
        out["no_rope_layers"] = [0 if i in nope else 1 for i in range(self.num_layers)]
        out["moe_layers"] = list(self.moe_layers if self.moe_layers is not None else range(self.num_layers))
        out["use_qk_norm"] = self.qk_norm is not None
        out["attn_temperature_tuning"] = self.nope_query_temperature is not None
        if self.nope_query_temperature is not None:
            out["floor_scale"], out["attn_scale"] = self.nope_query_temperature
            out["floor_scale"] = int(out["floor_scale"]) if float(out["floor_scale"]).is_integer() else out["floor_scale"]
        out["layer_types"] = list(self.layer_types or ["full_attention"] * self.num_layers)
        return super().adjust_to_hf(out)


LLAMA4_NAMES = {**NAMES, "mlp": "feed_forward.", "moe": "feed_forward.", "router": "router"}


@_ser
@register_backbone("llama4_text")
class Llama4TextBackbone(TableBackbone):
    spec_cls = Llama4TextSpec
    hf_architecture = "Llama4TextModel"
    names = LLAMA4_NAMES
    checkpoint_stacked_experts = True


@_ser
@register_task(Llama4TextBackbone, "CausalLM", ("Llama4ForCausalLM",))
class Llama4CausalLM(CausalLM):
    pass


__all__ = ["Llama4TextSpec", "Llama4TextBackbone", "Llama4CausalLM"]
