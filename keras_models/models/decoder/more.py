"""Further classic families as specs + names: GPT Neo (local attention), OpenAI GPT (post-norm),
Persimmon (qk LayerNorm, relu2), CodeGen (model-parallel qkv layout), BioGPT, MPT, XGLM, CTRL,
GPT NeoX Japanese."""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.gemma_phi import LayerNormSpec
from keras_models.models.decoder.gpt import GPT2_NAMES, GPT2Spec, GPTJSpec, LayerNormDecoderSpec, _bool_to
from keras_models.models.decoder.hf_config import value
from keras_models.models.decoder.llama import NAMES, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _scaled_embeddings(cls, config, values):
    """``scale_embedding`` (default true): token embeddings times sqrt(hidden_size)."""
    scale = config.get("scale_embedding", True)
    values["embedding_scale"] = float(value(cls, values, "hidden_size")) ** 0.5 if scale else None
    return values


# --- GPT Neo: global/local (sliding window) layers, unscaled attention ---------------------------
_NEO_TYPES = {"local": "sliding_attention", "global": "full_attention"}


@dataclass(frozen=True, kw_only=True)
class GPTNeoSpec(LayerNormDecoderSpec):
    vocab_size: int = dim("vocab_size", 50257)
    hidden_size: int = dim("hidden_size", 2048)
    num_layers: int = dim("num_layers", 24)
    num_heads: int = dim("num_heads", 16)
    intermediate_size: int | None = dim("intermediate_size", None, doc="None: 4 * hidden_size")
    activation: str = hf("activation_function", "gelu_new")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    bos_token_id: int | tuple | None = hf("bos_token_id", 50256)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50256)
    sliding_window: int | None = dim("window_size", 256)
    position_type: str = const("learned")
    attn_scale: float | None = const(1.0)
    qkv_bias: bool = const(False)
    layer_types: tuple | None = const(None, doc="from attention_layers / attention_types")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        if values.get("intermediate_size") is None:
            values["intermediate_size"] = 4 * value(cls, values, "hidden_size")
        layers = config.get("attention_layers")
        if layers is None:
            types = config.get("attention_types") or [[["global", "local"], 12]]
            layers = [t for pattern, n in types for _ in range(n) for t in pattern]
        if any(t not in _NEO_TYPES for t in layers):
            raise ConfigError(f"{source}: unsupported GPT Neo attention types {sorted(set(layers))}")
        values["layer_types"] = tuple(_NEO_TYPES[t] for t in layers)
        return values

    def validate(self, source="config.json"):
        if self.layer_types is not None and len(self.layer_types) != self.num_layers:
            raise ConfigError(f"{source}: GPT Neo attention_layers has {len(self.layer_types)} entries "
                              f"for num_layers={self.num_layers}")

    def adjust_to_hf(self, out):
        back = {v: k for k, v in _NEO_TYPES.items()}
        types = [back[t] for t in self.layer_types]
        out.update(attention_types=[[types, 1]], attention_layers=types)
        return super().adjust_to_hf(out)


# --- OpenAI GPT: post-norm blocks, learned positions, no final norm ------------------------------
_AFN = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}
_AFN_BACK = {v: k for k, v in _AFN.items() if k != "swish"}


@dataclass(frozen=True, kw_only=True)
class OpenAIGPTSpec(GPT2Spec):
    unsupported: ClassVar[dict] = {}

    vocab_size: int = dim("vocab_size", 40478)
    max_position_embeddings: int = dim("n_positions", 512)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", None)
    intermediate_size: int | None = const(None, doc="4 * hidden_size")
    activation: str = hf("afn", "gelu_new", read=lambda a: _AFN[a], write=lambda v: _AFN_BACK[v])
    attn_scale: float | None = const(None)
    norm_position: str = const("post")
    final_norm: bool = const(False)


# --- Persimmon -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PersimmonSpec(LayerNormSpec):
    partial_rotary_default: ClassVar[float] = 0.5

    vocab_size: int = dim("vocab_size", 262144)
    intermediate_size: int = dim("intermediate_size", 16384)
    num_layers: int = dim("num_hidden_layers", 36)
    num_heads: int = dim("num_attention_heads", 64)
    max_position_embeddings: int = dim("max_position_embeddings", 16384)
    activation: str = hf("hidden_act", "relu2")
    fused_qkv: bool = const(True)
    mlp_gated: bool = const(False)
    qkv_bias: bool = const(True)
    out_bias: bool = const(True)
    mlp_bias: bool = const(True)
    qk_norm: str | None = hf("qk_layernorm", "layer", **_bool_to("layer", None))


# --- CodeGen: GPT-J block with a model-parallel fused qkv ----------------------------------------
@dataclass(frozen=True, kw_only=True)
class CodeGenSpec(GPTJSpec):
    fused_qkv: bool = const(True)

    def validate(self, source="config.json"):
        if self.hidden_size % 4:
            raise ConfigError(f"{source}: CodeGen n_embd must be divisible by its 4 qkv groups")


# --- BioGPT: OPT-like pre-norm block, scaled embeddings, learned positions (offset 2) ------------
@dataclass(frozen=True, kw_only=True)
class BioGptSpec(LayerNormDecoderSpec):
    vocab_size: int = dim("vocab_size", 42384)
    hidden_size: int = dim("hidden_size", 1024)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    intermediate_size: int = dim("intermediate_size", 4096)
    activation: str = hf("hidden_act", "gelu")
    max_position_embeddings: int = dim("max_position_embeddings", 1024)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    pad_token_id: int | tuple | None = hf("pad_token_id", 1)
    bos_token_id: int | tuple | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    position_type: str = const("learned")
    position_offset: int = const(2)
    # BioGPT's LayerNorms use torch's default eps; config.layer_norm_eps is not read by the model
    norm_eps: float = const(1e-5)
    embedding_scale: float | None = const(None, doc="scale_embedding: sqrt(hidden_size)")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        return _scaled_embeddings(cls, config, super().adjust_from_hf(config, values, source))

    def adjust_to_hf(self, out):
        out["scale_embedding"] = self.embedding_scale is not None
        return super().adjust_to_hf(out)


# --- MPT: ALiBi (MPT slopes), no biases (LayerNorm without beta), fused Wqkv -----------------------
_MPT_ATTN_DEFAULTS = (("clip_qkv", None), ("qk_ln", False), ("prefix_lm", False), ("attn_uses_sequence_id", False))


@dataclass(frozen=True, kw_only=True)
class MptSpec(LayerNormDecoderSpec):
    unsupported: ClassVar[dict] = {"logit_scale": (None,)}

    vocab_size: int = dim("vocab_size", 50368)
    hidden_size: int = dim("d_model", 2048)
    num_layers: int = dim("n_layers", 24)
    num_heads: int = dim("n_heads", 16)
    intermediate_size: int | None = const(None, doc="4 * d_model (Transformers' MptMLP)")
    max_position_embeddings: int = dim("max_seq_len", 2048)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    activation: str = const("gelu")
    position_type: str = const("alibi")
    fused_qkv: bool = const(True)
    # from attn_config and no_bias (adjust_from_hf)
    alibi_bias_max: float | None = const(8)
    attn_scale: float | None = const(None)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)
    norm_bias: bool = const(False)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        attn = dict(config.get("attn_config") or {})
        for key, ok in _MPT_ATTN_DEFAULTS:
            if attn.get(key) not in (ok, None):
                raise ConfigError(f"{source}: MPT attn_config.{key}={attn.get(key)!r} is not supported yet")
        if not attn.get("alibi", True):
            raise ConfigError(f"{source}: MPT without ALiBi (learned positions) is not supported yet")
        bias = not config.get("no_bias", True)
        values.update(intermediate_size=4 * value(cls, values, "hidden_size"),
                      alibi_bias_max=attn.get("alibi_bias_max", 8), attn_scale=attn.get("softmax_scale"),
                      qkv_bias=bias, out_bias=bias, mlp_bias=bias, norm_bias=bias)
        return values

    def adjust_to_hf(self, out):
        if self.intermediate_size != 4 * self.hidden_size:
            raise ConfigError("MPT exports need intermediate_size == 4 * hidden_size (Transformers' MptMLP)")
        out.update(expansion_ratio=4, no_bias=not self.qkv_bias,
                   attn_config={"alibi": True, "alibi_bias_max": self.alibi_bias_max,
                                "softmax_scale": self.attn_scale, "clip_qkv": None, "qk_ln": False})
        return super().adjust_to_hf(out)


# --- XGLM: fixed sinusoidal positions (offset 2), scaled embeddings, OPT-like pre-norm block ------
@dataclass(frozen=True, kw_only=True)
class XGLMSpec(BioGptSpec):
    vocab_size: int = dim("vocab_size", 256008)
    hidden_size: int = dim("d_model", 1024)
    num_layers: int = dim("num_layers", 24)
    num_heads: int = dim("attention_heads", 16)
    intermediate_size: int = dim("ffn_dim", 4096)
    activation: str = hf("activation_function", "gelu")
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    initializer_range: float = hf("init_std", 0.02)
    position_type: str = const("sinusoidal")


# --- CTRL: fixed sinusoidal positions (CTRL layout), scaled embeddings, tied head with a bias ------
@dataclass(frozen=True, kw_only=True)
class CTRLSpec(LayerNormDecoderSpec):
    vocab_size: int = dim("vocab_size", 246534)
    hidden_size: int = dim("n_embd", 1280)
    num_layers: int = dim("n_layer", 48)
    num_heads: int = dim("n_head", 16)
    intermediate_size: int = dim("dff", 8192)
    max_position_embeddings: int = dim("n_positions", 256)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    activation: str = const("relu")
    position_type: str = const("sinusoidal")
    sinusoidal_style: str = const("ctrl")
    # block norms use a fixed 1e-6; only the final norm reads layer_norm_epsilon
    norm_eps: float = const(1e-6)
    final_norm_eps: float | None = hf("layer_norm_epsilon", 1e-6)
    lm_head_bias: bool = const(True)
    embedding_scale: float | None = const(None, doc="sqrt(hidden_size)")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        values["embedding_scale"] = float(value(cls, values, "hidden_size")) ** 0.5
        return values


# --- GPT NeoX Japanese: serial GPT-NeoX block without biases, except the last layer's attention
# output bias (stored as attention.dense_bias) --------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class GPTNeoXJapaneseSpec(LayerNormSpec):
    vocab_size: int = dim("vocab_size", 32000)
    hidden_size: int = dim("hidden_size", 2560)
    intermediate_size: int | None = const(None, doc="hidden_size * intermediate_multiple_size")
    activation: str = hf("hidden_act", "gelu")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    bos_token_id: int | tuple | None = hf("bos_token_id", 31996)
    eos_token_id: int | tuple | None = hf("eos_token_id", 31999)
    fused_qkv: bool = const(True)
    mlp_gated: bool = const(False)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)
    out_bias_layers: tuple | None = const(None, doc="the last layer")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        hidden, n = value(cls, values, "hidden_size"), value(cls, values, "num_layers")
        values["intermediate_size"] = int(hidden * (config.get("intermediate_multiple_size") or 4))
        values["out_bias_layers"] = (n - 1,)
        return values

    def adjust_to_hf(self, out):
        multiple = self.intermediate_size / self.hidden_size
        out["intermediate_multiple_size"] = int(multiple) if float(multiple).is_integer() else multiple
        return super().adjust_to_hf(out)


@_ser
@register_backbone("gpt_neo")
class GPTNeoBackbone(TableBackbone):
    spec_cls = GPTNeoSpec
    hf_architecture = "GPTNeoModel"
    base_model_prefix = "transformer"
    names = {**GPT2_NAMES, "attn": "attn.attention.", "q": "q_proj", "k": "k_proj", "v": "v_proj",
             "o": "out_proj"}
    hf_ignore = ("*attn.attention.bias", "*attn.attention.masked_bias")


@_ser
@register_task(GPTNeoBackbone, "CausalLM", ("GPTNeoForCausalLM",))
class GPTNeoCausalLM(CausalLM):
    pass


@_ser
@register_task(GPTNeoBackbone, "TextClassifier", ("GPTNeoForSequenceClassification",))
class GPTNeoTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("openai-gpt")
class OpenAIGPTBackbone(TableBackbone):
    spec_cls = OpenAIGPTSpec
    hf_architecture = "OpenAIGPTModel"
    conv1d = True
    base_model_prefix = "transformer"
    names = {**GPT2_NAMES, "embed": "tokens_embed", "pos_embed": "positions_embed"}
    hf_ignore = ("*attn.bias",)


@_ser
@register_task(OpenAIGPTBackbone, "CausalLM", ("OpenAIGPTLMHeadModel",))
class OpenAIGPTCausalLM(CausalLM):
    pass


@_ser
@register_task(OpenAIGPTBackbone, "TextClassifier", ("OpenAIGPTForSequenceClassification",))
class OpenAIGPTTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("persimmon")
class PersimmonBackbone(TableBackbone):
    spec_cls = PersimmonSpec
    hf_architecture = "PersimmonModel"
    qkv_layout = "per_head"
    names = {**NAMES, "qkv": "query_key_value", "o": "dense", "q_norm": "q_layernorm",
             "k_norm": "k_layernorm", "up": "dense_h_to_4h", "down": "dense_4h_to_h",
             "final_norm": "final_layernorm"}


@_ser
@register_task(PersimmonBackbone, "CausalLM", ("PersimmonForCausalLM",))
class PersimmonCausalLM(CausalLM):
    pass


@_ser
@register_task(PersimmonBackbone, "TextClassifier", ("PersimmonForSequenceClassification",))
class PersimmonTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("codegen")
class CodeGenBackbone(TableBackbone):
    spec_cls = CodeGenSpec
    hf_architecture = "CodeGenModel"
    qkv_layout = "codegen_mp4"
    base_model_prefix = "transformer"
    names = {**GPT2_NAMES, "qkv": "qkv_proj", "o": "out_proj", "up": "fc_in", "down": "fc_out"}
    hf_ignore = ("*attn.causal_mask", "*attn.bias", "*attn.masked_bias")


@_ser
@register_task(CodeGenBackbone, "CausalLM", ("CodeGenForCausalLM",))
class CodeGenCausalLM(CausalLM):
    pass


@_ser
@register_backbone("biogpt")
class BioGptBackbone(TableBackbone):
    spec_cls = BioGptSpec
    hf_architecture = "BioGptModel"
    base_model_prefix = "biogpt"
    names = {**NAMES, "o": "out_proj", "attn_norm": "self_attn_layer_norm",
             "mlp_norm": "final_layer_norm", "mlp": "", "up": "fc1", "down": "fc2",
             "final_norm": "layer_norm", "pos_embed": "embed_positions"}


@_ser
@register_task(BioGptBackbone, "CausalLM", ("BioGptForCausalLM",))
class BioGptCausalLM(CausalLM):
    hf_lm_head = "output_projection"
    hf_head_patterns = ("output_projection.*",)


@_ser
@register_task(BioGptBackbone, "TextClassifier", ("BioGptForSequenceClassification",))
class BioGptTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("mpt")
class MptBackbone(TableBackbone):
    spec_cls = MptSpec
    hf_architecture = "MptModel"
    base_model_prefix = "transformer"
    names = {**NAMES, "layer": "blocks.{i}.", "attn": "attn.", "qkv": "Wqkv", "o": "out_proj",
             "attn_norm": "norm_1", "mlp_norm": "norm_2", "mlp": "ffn.", "final_norm": "norm_f",
             "embed": "wte"}


@_ser
@register_task(MptBackbone, "CausalLM", ("MptForCausalLM",))
class MptCausalLM(CausalLM):
    pass


@_ser
@register_backbone("xglm")
class XGLMBackbone(TableBackbone):
    spec_cls = XGLMSpec
    hf_architecture = "XGLMModel"
    names = {**NAMES, "o": "out_proj", "attn_norm": "self_attn_layer_norm",
             "mlp_norm": "final_layer_norm", "mlp": "", "up": "fc1", "down": "fc2",
             "final_norm": "layer_norm"}


@_ser
@register_task(XGLMBackbone, "CausalLM", ("XGLMForCausalLM",))
class XGLMCausalLM(CausalLM):
    pass


@_ser
@register_backbone("ctrl")
class CTRLBackbone(TableBackbone):
    spec_cls = CTRLSpec
    hf_architecture = "CTRLModel"
    base_model_prefix = "transformer"
    names = {**NAMES, "layer": "h.{i}.", "attn": "multi_head_attention.", "q": "Wq", "k": "Wk",
             "v": "Wv", "o": "dense", "attn_norm": "layernorm1", "mlp_norm": "layernorm2",
             "mlp": "ffn.", "up": "0", "down": "2", "final_norm": "layernorm", "embed": "w"}


@_ser
@register_task(CTRLBackbone, "CausalLM", ("CTRLLMHeadModel",))
class CTRLCausalLM(CausalLM):
    pass


@_ser
@register_backbone("gpt_neox_japanese")
class GPTNeoXJapaneseBackbone(TableBackbone):
    spec_cls = GPTNeoXJapaneseSpec
    hf_architecture = "GPTNeoXJapaneseModel"
    qkv_layout = "per_head"
    base_model_prefix = "gpt_neox_japanese"
    names = {**NAMES, "attn": "attention.", "qkv": "query_key_value", "o": "dense",
             "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "final_layer_norm",
             "embed": "embed_in"}
    hf_ignore = ("*rotary_emb.inv_freq", "*attention.bias", "*attention.masked_bias")

    def block_rules(self, i, blk):
        rules = super().block_rules(i, blk)
        for r in rules:
            if r.hf.endswith(".attention.dense.bias"):
                r.hf = r.hf[: -len(".dense.bias")] + ".dense_bias"
        return rules


@_ser
@register_task(GPTNeoXJapaneseBackbone, "CausalLM", ("GPTNeoXJapaneseForCausalLM",))
class GPTNeoXJapaneseCausalLM(CausalLM):
    hf_lm_head = "embed_out"
    hf_head_patterns = ("embed_out.*",)

__all__ = [
    "GPTNeoXJapaneseBackbone", "GPTNeoXJapaneseCausalLM", "CTRLBackbone", "CTRLCausalLM", "XGLMBackbone", "XGLMCausalLM", "MptBackbone", "MptCausalLM",
    "GPTNeoBackbone", "GPTNeoCausalLM", "OpenAIGPTBackbone", "OpenAIGPTCausalLM",
    "PersimmonBackbone", "PersimmonCausalLM", "CodeGenBackbone", "CodeGenCausalLM",
    "BioGptBackbone", "BioGptCausalLM",
]
