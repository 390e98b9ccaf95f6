"""GPT-2-shaped and other classic families, each a spec + HF names + switches:
GPT-2 (DialoGPT, GPT-Sw3 checkpoints), GPTBigCode, OPT, GPT-NeoX (Pythia), GPT-J, Falcon, BLOOM."""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import DecoderSpec, value
from keras_models.models.decoder.llama import NAMES, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _bool_to(true, false):
    """A config.json boolean read as one of two option values (and written back)."""
    return dict(read=lambda b: true if b else false, write=lambda v: v == true)


def _four_times_hidden(cls, values):
    if values.get("intermediate_size") is None:
        values["intermediate_size"] = 4 * value(cls, values, "hidden_size")
    return values


@dataclass(frozen=True, kw_only=True)
class LayerNormDecoderSpec(DecoderSpec):
    """Classic decoders: LayerNorm blocks with biases, a plain (ungated) MLP."""

    norm_type: str = const("layer")
    norm_eps: float = hf("layer_norm_epsilon", 1e-5)
    mlp_gated: bool = const(False)
    qkv_bias: bool = const(True)
    out_bias: bool = const(True)
    mlp_bias: bool = const(True)


# --- GPT-2 ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GPT2Spec(LayerNormDecoderSpec):
    unsupported: ClassVar[dict] = {"scale_attn_by_inverse_layer_idx": (False, None)}

    vocab_size: int = dim("vocab_size", 50257)
    hidden_size: int = dim("n_embd", 768)
    num_layers: int = dim("n_layer", 12)
    num_heads: int = dim("n_head", 12)
    intermediate_size: int | None = dim("n_inner", None, doc="None: 4 * hidden_size")
    activation: str = hf("activation_function", "gelu_new")
    max_position_embeddings: int = dim("n_positions", 1024)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    bos_token_id: int | tuple | None = hf("bos_token_id", 50256)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50256)
    position_type: str = const("learned")
    fused_qkv: bool = const(True)
    attn_scale: float | None = hf("scale_attn_weights", None, **_bool_to(None, 1.0))

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        return _four_times_hidden(cls, super().adjust_from_hf(config, values, source))


GPT2_NAMES = {**NAMES, "layer": "h.{i}.", "attn": "attn.", "qkv": "c_attn", "o": "c_proj",
              "attn_norm": "ln_1", "mlp_norm": "ln_2", "up": "c_fc", "down": "c_proj",
              "final_norm": "ln_f", "embed": "wte", "pos_embed": "wpe"}


# --- GPTBigCode: GPT-2 with Linear weights and multi-query attention ------------------------------
@dataclass(frozen=True, kw_only=True)
class GPTBigCodeSpec(GPT2Spec):
    activation: str = hf("activation_function", "gelu_pytorch_tanh")
    num_kv_heads: int | None = const(None, doc="multi_query: 1, else num_heads")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        values["num_kv_heads"] = 1 if config.get("multi_query", True) else value(cls, values, "num_heads")
        return values

    def adjust_to_hf(self, out):
        out["multi_query"] = self.num_kv_heads == 1
        return super().adjust_to_hf(out)


# --- OPT -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class OPTSpec(LayerNormDecoderSpec):
    unsupported: ClassVar[dict] = {"layer_norm_elementwise_affine": (True, None)}

    vocab_size: int = dim("vocab_size", 50272)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("ffn_dim", 3072)
    activation: str = hf("activation_function", "relu")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    embed_proj_dim: int | None = dim("word_embed_proj_dim", None, doc="None: hidden_size")
    initializer_range: float = hf("init_std", 0.02)
    pad_token_id: int | tuple | None = hf("pad_token_id", 1)
    bos_token_id: int | tuple | None = hf("bos_token_id", 2)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    position_type: str = const("learned")
    position_offset: int = const(2)
    norm_eps: float = const(1e-5)
    qkv_bias: bool = hf("enable_bias", True)
    out_bias: bool = hf("enable_bias", True)
    mlp_bias: bool = hf("enable_bias", True)
    norm_position: str = hf("do_layer_norm_before", "pre", **_bool_to("pre", "post"))
    final_norm: bool = const(True, doc="do_layer_norm_before and not _remove_final_layer_norm")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        pre = value(cls, values, "norm_position") == "pre"
        values["final_norm"] = bool(pre and not config.get("_remove_final_layer_norm", False))
        return values

    def adjust_to_hf(self, out):
        out["_remove_final_layer_norm"] = self.norm_position == "pre" and not self.final_norm
        out["word_embed_proj_dim"] = self.embed_proj_dim or self.hidden_size
        return super().adjust_to_hf(out)


OPT_NAMES = {**NAMES, "layer": "decoder.layers.{i}.", "attn": "self_attn.", "o": "out_proj",
             "attn_norm": "self_attn_layer_norm", "mlp_norm": "final_layer_norm", "mlp": "",
             "up": "fc1", "down": "fc2", "final_norm": "decoder.final_layer_norm",
             "embed": "decoder.embed_tokens", "pos_embed": "decoder.embed_positions",
             "project_in": "decoder.project_in", "project_out": "decoder.project_out"}


# --- GPT-NeoX (Pythia) ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GPTNeoXSpec(LayerNormDecoderSpec):
    rope: ClassVar[bool] = True
    partial_rotary_default: ClassVar[float] = 0.25

    vocab_size: int = dim("vocab_size", 50432)
    hidden_size: int = dim("hidden_size", 6144)
    num_layers: int = dim("num_hidden_layers", 44)
    num_heads: int = dim("num_attention_heads", 64)
    intermediate_size: int = dim("intermediate_size", 24576)
    activation: str = hf("hidden_act", "gelu")
    norm_eps: float = hf("layer_norm_eps", 1e-5)
    bos_token_id: int | tuple | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    fused_qkv: bool = const(True)
    qkv_bias: bool = hf("attention_bias", True)
    out_bias: bool = hf("attention_bias", True)
    residual: str = hf("use_parallel_residual", "parallel", **_bool_to("parallel", "serial"))
    parallel_norms: int = const(1, doc="2 with the parallel residual")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if value(cls, values, "residual") == "parallel":
            values["parallel_norms"] = 2
        return values


# --- GPT-J: parallel residual, one norm, interleaved partial rotary, lm_head bias ----------------
@dataclass(frozen=True, kw_only=True)
class GPTJSpec(GPT2Spec):
    rope: ClassVar[bool] = True
    unsupported: ClassVar[dict] = {}

    vocab_size: int = dim("vocab_size", 50400)
    hidden_size: int = dim("n_embd", 4096)
    num_layers: int = dim("n_layer", 28)
    num_heads: int = dim("n_head", 16)
    max_position_embeddings: int = dim("n_positions", 2048)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    rotary_dim: int | None = dim("rotary_dim", 64, doc="null: head_dim")
    position_type: str = const("rope")
    fused_qkv: bool = const(False)
    attn_scale: float | None = const(None)
    rotary_interleaved: bool = const(True)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    residual: str = const("parallel")
    lm_head_bias: bool = const(True)


# --- Falcon (old and new decoder architectures; rotary or bfloat16 ALiBi) -------------------------
@dataclass(frozen=True, kw_only=True)
class FalconSpec(LayerNormDecoderSpec):
    rope: ClassVar[bool] = True

    vocab_size: int = dim("vocab_size", 65024)
    hidden_size: int = dim("hidden_size", 4544)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 71)
    intermediate_size: int | None = dim("ffn_hidden_size", None, doc="None: 4 * hidden_size")
    activation: str = hf("activation", "gelu")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    bos_token_id: int | tuple | None = hf("bos_token_id", 11)
    eos_token_id: int | tuple | None = hf("eos_token_id", 11)
    fused_qkv: bool = const(True)
    qkv_bias: bool = hf("bias", False)
    out_bias: bool = hf("bias", False)
    mlp_bias: bool = hf("bias", False)
    # from alibi / new_decoder_architecture / num_kv_heads / multi_query / parallel_attn /
    # num_ln_in_parallel_attn (adjust_from_hf)
    position_type: str = const("rope")
    alibi_bfloat16: bool = const(False)
    alibi_scale: float | None = const(None)
    num_kv_heads: int | None = const(None)
    residual: str = const("parallel")
    parallel_norms: int = const(1)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = _four_times_hidden(cls, super().adjust_from_hf(config, values, source))
        hidden, heads = value(cls, values, "hidden_size"), value(cls, values, "num_heads")
        if config.get("alibi"):
            # Falcon adds ALiBi (computed in bfloat16) before the 1/sqrt(head_dim) scaling
            values.update(position_type="alibi", alibi_bfloat16=True, alibi_scale=(hidden // heads) ** -0.5)
        if config.get("new_decoder_architecture"):
            values["num_kv_heads"] = config.get("num_kv_heads") or heads
            values["residual"] = "parallel"
            values["parallel_norms"] = config.get("num_ln_in_parallel_attn") or 2
        else:
            values["num_kv_heads"] = 1 if config.get("multi_query", True) else heads
            values["residual"] = "parallel" if config.get("parallel_attn", True) else "serial"
        return values

    def adjust_to_hf(self, out):
        kv = self.num_kv_heads or self.num_heads
        new = self.parallel_norms == 2 or kv not in (1, self.num_heads)
        out.update(new_decoder_architecture=new, alibi=self.position_type == "alibi", num_kv_heads=kv,
                   multi_query=kv == 1, parallel_attn=self.residual == "parallel")
        if new:
            out["num_ln_in_parallel_attn"] = self.parallel_norms
        return super().adjust_to_hf(out)


# --- BLOOM: ALiBi, embedding LayerNorm, per-head fused qkv ----------------------------------------
@dataclass(frozen=True, kw_only=True)
class BloomSpec(LayerNormDecoderSpec):
    vocab_size: int = dim("vocab_size", 250880)
    hidden_size: int = dim(("hidden_size", "n_embed"), 64)
    num_layers: int = dim(("n_layer", "num_hidden_layers"), 2)
    num_heads: int = dim(("n_head", "num_attention_heads"), 8)
    intermediate_size: int | None = const(None, doc="4 * hidden_size")
    max_position_embeddings: int = const(2048, doc="ALiBi: no position table")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    bos_token_id: int | tuple | None = hf("bos_token_id", 1)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    activation: str = const("gelu_fast")
    position_type: str = const("alibi")
    embedding_norm: bool = const(True)
    fused_qkv: bool = const(True)
    residual_from_norm: bool = hf("apply_residual_connection_post_layernorm", False)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if (config.get("pretraining_tp") or 1) > 1 and config.get("slow_but_exact"):
            raise ConfigError(f"{source}: BLOOM slow_but_exact tensor-parallel emulation is not supported")
        values = super().adjust_from_hf(config, values, source)
        values["intermediate_size"] = 4 * value(cls, values, "hidden_size")
        return values


@_ser
@register_backbone("gpt2")
class GPT2Backbone(TableBackbone):
    spec_cls = GPT2Spec
    checkpoint_families = ("DialoGPT", "Megatron-GPT2", "GPT-Sw3", "CPM")  # checkpoint-only rows (docs/models.md)
    hf_architecture = "GPT2Model"
    names = GPT2_NAMES
    conv1d = True
    base_model_prefix = "transformer"
    hf_ignore = ("*attn.bias", "*attn.masked_bias")


@_ser
@register_task(GPT2Backbone, "CausalLM", ("GPT2LMHeadModel",))
class GPT2CausalLM(CausalLM):
    pass


@_ser
@register_task(GPT2Backbone, "TextClassifier", ("GPT2ForSequenceClassification",))
class GPT2TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("gpt_bigcode")
class GPTBigCodeBackbone(TableBackbone):
    spec_cls = GPTBigCodeSpec
    hf_architecture = "GPTBigCodeModel"
    names = GPT2_NAMES
    base_model_prefix = "transformer"

    @property
    def qkv_layout(self):
        return "concat" if self.num_kv_heads == 1 else "per_head"


@_ser
@register_task(GPTBigCodeBackbone, "CausalLM", ("GPTBigCodeForCausalLM",))
class GPTBigCodeCausalLM(CausalLM):
    pass


@_ser
@register_task(GPTBigCodeBackbone, "TextClassifier", ("GPTBigCodeForSequenceClassification",))
class GPTBigCodeTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("opt")
class OPTBackbone(TableBackbone):
    spec_cls = OPTSpec
    hf_architecture = "OPTModel"
    names = OPT_NAMES


@_ser
@register_task(OPTBackbone, "CausalLM", ("OPTForCausalLM",))
class OPTCausalLM(CausalLM):
    pass


@_ser
@register_task(OPTBackbone, "TextClassifier", ("OPTForSequenceClassification",))
class OPTTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("gpt_neox")
class GPTNeoXBackbone(TableBackbone):
    spec_cls = GPTNeoXSpec
    hf_architecture = "GPTNeoXModel"
    qkv_layout = "per_head"
    base_model_prefix = "gpt_neox"
    names = {**NAMES, "attn": "attention.", "qkv": "query_key_value", "o": "dense",
             "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "final_layer_norm",
             "embed": "embed_in"}
    hf_ignore = ("*attention.bias", "*attention.masked_bias", "*rotary_emb.inv_freq")


@_ser
@register_task(GPTNeoXBackbone, "CausalLM", ("GPTNeoXForCausalLM",))
class GPTNeoXCausalLM(CausalLM):
    hf_lm_head = "embed_out"
    hf_head_patterns = ("embed_out.*",)


@_ser
@register_task(GPTNeoXBackbone, "TextClassifier", ("GPTNeoXForSequenceClassification",))
class GPTNeoXTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("gptj")
class GPTJBackbone(TableBackbone):
    spec_cls = GPTJSpec
    hf_architecture = "GPTJModel"
    base_model_prefix = "transformer"
    names = {**GPT2_NAMES, "o": "out_proj", "up": "fc_in", "down": "fc_out"}
    hf_ignore = ("*attn.bias", "*attn.masked_bias")


@_ser
@register_task(GPTJBackbone, "CausalLM", ("GPTJForCausalLM",))
class GPTJCausalLM(CausalLM):
    pass


@_ser
@register_task(GPTJBackbone, "TextClassifier", ("GPTJForSequenceClassification",))
class GPTJTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("falcon")
class FalconBackbone(TableBackbone):
    """qkv rows are grouped per kv head (kv, heads/kv + 2, head_dim): that covers the new decoder
    architecture and, with kv = 1 or kv = heads, the old multi-query and multi-head layouts."""

    spec_cls = FalconSpec
    hf_architecture = "FalconModel"
    qkv_layout = "grouped"
    base_model_prefix = "transformer"
    names = {**NAMES, "layer": "h.{i}.", "attn": "self_attention.", "qkv": "query_key_value",
             "o": "dense", "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "ln_f",
             "embed": "word_embeddings"}

    def block_names(self, blk):
        if blk.options["residual"] == "parallel" and blk.options["parallel_norms"] == 2:
            return {**self.names, "attn_norm": "ln_attn", "mlp_norm": "ln_mlp"}
        return self.names


@_ser
@register_task(FalconBackbone, "CausalLM", ("FalconForCausalLM",))
class FalconCausalLM(CausalLM):
    pass


@_ser
@register_task(FalconBackbone, "TextClassifier", ("FalconForSequenceClassification",))
class FalconTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("bloom")
class BloomBackbone(TableBackbone):
    spec_cls = BloomSpec
    hf_architecture = "BloomModel"
    qkv_layout = "per_head"
    base_model_prefix = "transformer"
    names = {**NAMES, "layer": "h.{i}.", "attn": "self_attention.", "qkv": "query_key_value",
             "o": "dense", "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "ln_f",
             "embed": "word_embeddings", "embed_norm": "word_embeddings_layernorm"}


@_ser
@register_task(BloomBackbone, "CausalLM", ("BloomForCausalLM",))
class BloomCausalLM(CausalLM):
    pass


@_ser
@register_task(BloomBackbone, "TextClassifier", ("BloomForSequenceClassification",))
class BloomTextClassifier(DecoderTextClassifier):
    pass


__all__ = [
    "GPT2Backbone", "GPT2CausalLM", "GPTBigCodeBackbone", "GPTBigCodeCausalLM", "OPTBackbone",
    "OPTCausalLM", "GPTNeoXBackbone", "GPTNeoXCausalLM", "GPTJBackbone", "GPTJCausalLM",
    "FalconBackbone", "FalconCausalLM", "BloomBackbone", "BloomCausalLM",
]
