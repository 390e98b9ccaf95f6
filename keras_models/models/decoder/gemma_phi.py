"""More Llama-named families, each a spec + HF names: Gemma, Gemma 2, Gemma 3 (text), Phi, StableLM,
Starcoder2."""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import rope_from_hf, rope_to_hf, value
from keras_models.models.decoder.llama import NAMES, LlamaSpec, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import REQUIRED, const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _gemma_act(act):
    return "gelu_pytorch_tanh" if act == "gelu" else act  # legacy Gemma configs mean the tanh approximation


def _bool_to(true, false):
    """A config.json boolean read as one of two option values (and written back)."""
    return dict(read=lambda b: true if b else false, write=lambda v: v == true)


# --- Gemma: unit-offset RMSNorm, embeddings scaled by sqrt(hidden), tied head ---------------------
@dataclass(frozen=True, kw_only=True)
class GemmaSpec(LlamaSpec):
    vocab_size: int = dim("vocab_size", 256000)
    hidden_size: int = dim("hidden_size", 3072)
    intermediate_size: int = dim("intermediate_size", 24576)
    num_layers: int = dim("num_hidden_layers", 28)
    num_heads: int = dim("num_attention_heads", 16)
    num_kv_heads: int | None = hf("num_key_value_heads", 16)
    head_dim: int | None = hf("head_dim", 256)
    activation: str = hf("hidden_act", "gelu_pytorch_tanh", read=_gemma_act)
    max_position_embeddings: int = dim("max_position_embeddings", 8192)
    pad_token_id: int | tuple | None = hf("pad_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 1)
    bos_token_id: int | tuple | None = hf("bos_token_id", 2)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    mlp_bias: bool = const(False)
    norm_unit_offset: bool = const(True)
    embedding_scale: float | None = const(None, doc="sqrt(hidden_size)")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        values["embedding_scale"] = float(value(cls, values, "hidden_size")) ** 0.5
        return values


def _scalar_to_hf(scale):
    scalar = scale ** -2
    return int(round(scalar)) if abs(scalar - round(scalar)) < 1e-6 else scalar


# --- Gemma 2: sandwich norms, soft-capping, query_pre_attn_scalar, alternating sliding window -----
@dataclass(frozen=True, kw_only=True)
class Gemma2Spec(GemmaSpec):
    hidden_size: int = dim("hidden_size", 2304)
    intermediate_size: int = dim("intermediate_size", 9216)
    num_layers: int = dim("num_hidden_layers", 26)
    num_heads: int = dim("num_attention_heads", 8)
    num_kv_heads: int | None = hf("num_key_value_heads", 4)
    activation: str = hf("hidden_activation", "gelu_pytorch_tanh", read=_gemma_act)
    sliding_window: int | None = hf("sliding_window", 4096)
    softcap: float | None = hf("attn_logit_softcapping", 50.0)
    final_logit_softcap: float | None = hf("final_logit_softcapping", 30.0)
    layer_types: tuple | None = hf("layer_types", None, doc="None: sliding, full, sliding, ...")
    attn_scale: float | None = hf("query_pre_attn_scalar", 256 ** -0.5, read=lambda s: float(s) ** -0.5,
                                  write=_scalar_to_hf)
    sandwich_norms: bool = const(True)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if values.get("layer_types") is None:
            values["layer_types"] = tuple("sliding_attention" if (i + 1) % 2 else "full_attention"
                                          for i in range(value(cls, values, "num_layers")))
        return values


# --- Gemma 3 (text): Gemma 2 + q/k norm, a local rope table for sliding layers, optional caps -------
@dataclass(frozen=True, kw_only=True)
class Gemma3TextSpec(Gemma2Spec):
    """Gemma 3's text decoder: Gemma 2's sandwich norms and query_pre_attn_scalar, per-head q/k
    RMSNorm (unit offset), every ``sliding_window_pattern``-th layer global (default 6, or as
    ``layer_types`` says), sliding layers on their own rope table (``rope_parameters``
    per layer type, or the older ``rope_theta`` / ``rope_local_base_freq`` / ``rope_scaling`` keys:
    the scaling applies to the global layers), final logit soft-capping only where configured."""

    rope_theta_default: ClassVar[float] = 1_000_000.0
    local_rope_theta_default: ClassVar[float] = 10_000.0
    unsupported: ClassVar[dict] = {"use_bidirectional_attention": (False, None)}

    vocab_size: int = dim("vocab_size", 262_208)
    max_position_embeddings: int = dim("max_position_embeddings", 131_072)
    # Transformers' Gemma 3 attention never applies attn_logit_softcapping (the key is read into
    # its config only); checkpoints leave it null. Parity with Transformers: not applied here.
    softcap: float | None = const(None, doc="attn_logit_softcapping is not applied (as Transformers)")
    final_logit_softcap: float | None = hf("final_logit_softcapping", None)
    layer_types: tuple | None = hf("layer_types", None, doc="None: every sliding_window_pattern-th layer full")
    qk_norm: str | None = const("rms")
    local_rope_theta: float | None = const(None, doc="from rope_parameters['sliding_attention']")
    local_rope_scaling: dict | None = const(None, doc="from rope_parameters['sliding_attention']")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("layer_types") is None:
            pattern = config.get("sliding_window_pattern") or 6
            values["layer_types"] = tuple("sliding_attention" if (i + 1) % pattern else "full_attention"
                                          for i in range(value(cls, values, "num_layers")))
        params = config.get("rope_parameters") or {}
        per_type = bool(params) and all(isinstance(v, dict) for v in params.values())
        local = {}
        if per_type:
            config = {**config, "rope_parameters": params.get("full_attention") or {}}
            local = params.get("sliding_attention") or {}
        values = super().adjust_from_hf(config, values, source)
        theta, scaling, _ = rope_from_hf({"rope_parameters": local}, source,
                                         config.get("rope_local_base_freq") or cls.local_rope_theta_default)
        values.update(local_rope_theta=theta, local_rope_scaling=scaling)
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        local = self.local_rope_theta or self.local_rope_theta_default
        out["rope_parameters"] = {"full_attention": out["rope_parameters"],
                                  "sliding_attention": rope_to_hf(local, self.local_rope_scaling)["rope_parameters"]}
        return out


# --- LayerNorm families --------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LayerNormSpec(LlamaSpec):
    """Llama-named keys with LayerNorm (``layer_norm_eps``) instead of RMSNorm."""

    norm_type: str = const("layer")
    norm_eps: float = hf("layer_norm_eps", 1e-5)


# Phi: parallel residual with one shared LayerNorm, partial rotary, biases everywhere, lm_head bias.
@dataclass(frozen=True, kw_only=True)
class PhiSpec(LayerNormSpec):
    partial_rotary_default: ClassVar[float] = 0.5

    vocab_size: int = dim("vocab_size", 51200)
    hidden_size: int = dim("hidden_size", 2048)
    intermediate_size: int = dim("intermediate_size", 8192)
    num_layers: int = dim("num_hidden_layers", 24)
    activation: str = hf("hidden_act", "gelu_new")
    qkv_bias: bool = const(True)
    out_bias: bool = const(True)
    mlp_bias: bool = const(True)
    mlp_gated: bool = const(False)
    residual: str = const("parallel")
    parallel_norms: int = const(1)
    lm_head_bias: bool = const(True)
    qk_norm: str | None = hf("qk_layernorm", None, **_bool_to("layer", None))


# StableLM: LayerNorm, partial rotary, optional qkv bias and parallel residual (one norm).
@dataclass(frozen=True, kw_only=True)
class StableLmSpec(LayerNormSpec):
    partial_rotary_default: ClassVar[float] = 0.25
    unsupported: ClassVar[dict] = {"qk_layernorm": (False, None)}  # per-head norms: not implemented

    vocab_size: int = dim("vocab_size", 50304)
    hidden_size: int = dim("hidden_size", 2560)
    intermediate_size: int = dim("intermediate_size", 6912)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    bos_token_id: int | tuple | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 0)
    qkv_bias: bool = hf("use_qkv_bias", False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)
    residual: str = hf("use_parallel_residual", "serial", **_bool_to("parallel", "serial"))
    parallel_norms: int = const(1)


# Starcoder2: LayerNorm, biases everywhere (use_bias), plain MLP c_fc/c_proj, sliding window.
@dataclass(frozen=True, kw_only=True)
class Starcoder2Spec(LayerNormSpec):
    vocab_size: int = dim("vocab_size", 49152)
    hidden_size: int = dim("hidden_size", 3072)
    intermediate_size: int = dim("intermediate_size", 12288)
    num_layers: int = dim("num_hidden_layers", 30)
    num_heads: int = dim("num_attention_heads", 24)
    num_kv_heads: int | None = hf("num_key_value_heads", 2)
    activation: str = hf("hidden_act", "gelu_pytorch_tanh")
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    initializer_range: float = hf("initializer_range", 0.018042)
    norm_eps: float = hf("norm_epsilon", 1e-5)
    bos_token_id: int | tuple | None = hf("bos_token_id", 50256)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50256)
    sliding_window: int | None = hf("sliding_window", None)
    qkv_bias: bool = hf("use_bias", True)
    out_bias: bool = hf("use_bias", True)
    mlp_bias: bool = hf("use_bias", True)
    mlp_gated: bool = const(False)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)


@_ser
@register_backbone("gemma")
class GemmaBackbone(TableBackbone):
    spec_cls = GemmaSpec
    hf_architecture = "GemmaModel"


@_ser
@register_task(GemmaBackbone, "CausalLM", ("GemmaForCausalLM",))
class GemmaCausalLM(CausalLM):
    pass


@_ser
@register_task(GemmaBackbone, "TextClassifier", ("GemmaForSequenceClassification",))
class GemmaTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("gemma2")
class Gemma2Backbone(TableBackbone):
    spec_cls = Gemma2Spec
    hf_architecture = "Gemma2Model"
    names = {**NAMES, "attn_out_norm": "post_attention_layernorm",
             "mlp_norm": "pre_feedforward_layernorm", "mlp_out_norm": "post_feedforward_layernorm"}


@_ser
@register_task(Gemma2Backbone, "CausalLM", ("Gemma2ForCausalLM",))
class Gemma2CausalLM(CausalLM):
    pass


@_ser
@register_task(Gemma2Backbone, "TextClassifier", ("Gemma2ForSequenceClassification",))
class Gemma2TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("gemma3_text")
class Gemma3TextBackbone(Gemma2Backbone):
    spec_cls = Gemma3TextSpec
    hf_architecture = "Gemma3TextModel"


@_ser
@register_task(Gemma3TextBackbone, "CausalLM", ("Gemma3ForCausalLM",))
class Gemma3CausalLM(CausalLM):
    pass


@_ser
@register_task(Gemma3TextBackbone, "TextClassifier", ("Gemma3TextForSequenceClassification",))
class Gemma3TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("phi")
class PhiBackbone(TableBackbone):
    spec_cls = PhiSpec
    hf_architecture = "PhiModel"
    names = {**NAMES, "o": "dense", "up": "fc1", "down": "fc2", "final_norm": "final_layernorm",
             "q_norm": "q_layernorm", "k_norm": "k_layernorm"}


@_ser
@register_task(PhiBackbone, "CausalLM", ("PhiForCausalLM",))
class PhiCausalLM(CausalLM):
    pass


@_ser
@register_task(PhiBackbone, "TextClassifier", ("PhiForSequenceClassification",))
class PhiTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("stablelm")
class StableLmBackbone(TableBackbone):
    spec_cls = StableLmSpec
    hf_architecture = "StableLmModel"


@_ser
@register_task(StableLmBackbone, "CausalLM", ("StableLmForCausalLM",))
class StableLmCausalLM(CausalLM):
    pass


@_ser
@register_task(StableLmBackbone, "TextClassifier", ("StableLmForSequenceClassification",))
class StableLmTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("starcoder2")
class Starcoder2Backbone(TableBackbone):
    spec_cls = Starcoder2Spec
    hf_architecture = "Starcoder2Model"
    names = {**NAMES, "up": "c_fc", "down": "c_proj"}


@_ser
@register_task(Starcoder2Backbone, "CausalLM", ("Starcoder2ForCausalLM",))
class Starcoder2CausalLM(CausalLM):
    pass


@_ser
@register_task(Starcoder2Backbone, "TextClassifier", ("Starcoder2ForSequenceClassification",))
class Starcoder2TextClassifier(DecoderTextClassifier):
    pass


__all__ = [
    "GemmaBackbone", "GemmaCausalLM", "Gemma2Backbone", "Gemma2CausalLM", "Gemma3TextBackbone",
    "Gemma3CausalLM", "PhiBackbone",
    "PhiCausalLM", "StableLmBackbone", "StableLmCausalLM", "Starcoder2Backbone",
    "Starcoder2CausalLM", "REQUIRED",
]
