"""Further classic families as tables + names: GPT Neo (local attention), OpenAI GPT (post-norm),
Persimmon (qk LayerNorm, relu2), CodeGen (model-parallel qkv layout), BioGPT."""

from keras_models.errors import ConfigError
from keras_models.models.decoder.gpt import BIASES, GPT2_NAMES, GPT2_TABLE, SPECIAL, ClassicBackbone, _ln
from keras_models.models.decoder.hf_config import REQUIRED
from keras_models.models.decoder.llama import NAMES, TableBackbone, family
from keras_models.models.decoder.gemma_phi import LN_TABLE

# --- GPT Neo: global/local (sliding window) layers, unscaled attention ---------------------------
NEO_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_layers", REQUIRED), ("num_heads", "num_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", None), ("activation", "activation_function", "gelu_new"),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", True), ("sliding_window", "window_size", 256),
    ("position_type", None, "learned"), ("mlp_gated", None, False), ("attn_scale", None, 1.0),
    ("qkv_bias", None, False), ("out_bias", None, True), ("mlp_bias", None, True),
] + _ln("layer_norm_epsilon") + SPECIAL
_NEO_TYPES = {"local": "sliding_attention", "global": "full_attention"}


def _neo_from_hf(cls, hf, kw):
    kw["intermediate_size"] = kw["intermediate_size"] or 4 * kw["hidden_size"]
    layers = hf.get("attention_layers")
    if layers is None:
        layers = [t for pattern, n in hf.get("attention_types", [[["global", "local"], 1]])
                  for _ in range(n) for t in pattern]
    if any(t not in _NEO_TYPES for t in layers):
        raise ConfigError(f"config.json: unsupported GPT Neo attention types {sorted(set(layers))}")
    kw["layer_types"] = [_NEO_TYPES[t] for t in layers]
    return kw


def _neo_to_hf(self, hf):
    back = {v: k for k, v in _NEO_TYPES.items()}
    types = [back[t] for t in self.options["layer_types"]]
    hf.update(attention_types=[[types, 1]], attention_layers=types)
    return hf


GPTNeoBackbone, GPTNeoCausalLM = family(
    "gpt_neo", "GPTNeo", NEO_TABLE, module=__name__, base=ClassicBackbone,
    base_model_prefix="transformer",
    names={**GPT2_NAMES, "attn": "attn.attention.", "q": "q_proj", "k": "k_proj", "v": "v_proj",
           "o": "out_proj"},
    hf_ignore=("*attn.attention.bias", "*attn.attention.masked_bias"),
    adjust_from_hf=classmethod(_neo_from_hf), adjust_to_hf=_neo_to_hf,
)

# --- OpenAI GPT: post-norm blocks, learned positions, no final norm ------------------------------
_AFN = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}
OPENAI_TABLE = [r for r in GPT2_TABLE if r[0] not in ("activation", "intermediate_size")] + [
    ("norm_position", None, "post"), ("final_norm", None, False)]


def _openai_from_hf(cls, hf, kw):
    afn = hf.get("afn", "gelu")
    if afn not in _AFN:
        raise ConfigError(f"config.json: unsupported afn {afn!r}")
    kw.update(activation=_AFN[afn], intermediate_size=4 * kw["hidden_size"])
    return kw


def _openai_to_hf(self, hf):
    hf["afn"] = {v: k for k, v in _AFN.items() if k != "swish"}[self.options["activation"]]
    return hf


OpenAIGPTBackbone, OpenAIGPTCausalLM = family(
    "openai-gpt", "OpenAIGPT", OPENAI_TABLE, module=__name__, base=ClassicBackbone, conv1d=True,
    base_model_prefix="transformer", names={**GPT2_NAMES, "embed": "tokens_embed",
                                            "pos_embed": "positions_embed"},
    hf_ignore=("*attn.bias",), lm_archs=("OpenAIGPTLMHeadModel",),
    adjust_from_hf=classmethod(_openai_from_hf), adjust_to_hf=_openai_to_hf,
)

# --- Persimmon -----------------------------------------------------------------------------------
PERSIMMON_TABLE = LN_TABLE + [
    ("activation", "hidden_act", "relu2"), ("fused_qkv", None, True), ("mlp_gated", None, False),
    ("qkv_bias", None, True), ("out_bias", None, True), ("mlp_bias", None, True),
]


def _persimmon_from_hf(cls, hf, kw):
    kw["qk_norm"] = "layer" if hf.get("qk_layernorm", True) else None
    return kw


def _persimmon_to_hf(self, hf):
    hf["qk_layernorm"] = self.options["qk_norm"] == "layer"
    return hf


PersimmonBackbone, PersimmonCausalLM = family(
    "persimmon", "Persimmon", PERSIMMON_TABLE, module=__name__, qkv_layout="per_head",
    names={**NAMES, "qkv": "query_key_value", "o": "dense", "q_norm": "q_layernorm",
           "k_norm": "k_layernorm", "up": "dense_h_to_4h", "down": "dense_4h_to_h",
           "final_norm": "final_layernorm"},
    adjust_from_hf=classmethod(_persimmon_from_hf), adjust_to_hf=_persimmon_to_hf,
)

# --- CodeGen: GPT-J block with a model-parallel fused qkv ----------------------------------------
CODEGEN_TABLE = [r for r in GPT2_TABLE if r[0] not in ("position_type", "qkv_bias", "out_bias",
                                                        "tie_word_embeddings")] + [
    ("rotary_dim", "rotary_dim", None), ("rotary_interleaved", None, True),
    ("qkv_bias", None, False), ("out_bias", None, False), ("residual", None, "parallel"),
    ("lm_head_bias", None, True), ("tie_word_embeddings", "tie_word_embeddings", False),
]


def _codegen_from_hf(cls, hf, kw):
    kw["intermediate_size"] = kw["intermediate_size"] or 4 * kw["hidden_size"]
    if kw["hidden_size"] % 4:
        raise ConfigError("config.json: CodeGen n_embd must be divisible by its 4 qkv groups")
    return kw


CodeGenBackbone, CodeGenCausalLM = family(
    "codegen", "CodeGen", CODEGEN_TABLE, module=__name__, base=ClassicBackbone, rope=True,
    qkv_layout="codegen_mp4", base_model_prefix="transformer", classifier=False,
    names={**GPT2_NAMES, "qkv": "qkv_proj", "o": "out_proj", "up": "fc_in", "down": "fc_out"},
    hf_ignore=("*attn.causal_mask", "*attn.bias", "*attn.masked_bias"),
    adjust_from_hf=classmethod(_codegen_from_hf),
)

# --- BioGPT: OPT-like pre-norm block, scaled embeddings, learned positions (offset 2) ------------
BIOGPT_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED), ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED), ("activation", "hidden_act", "gelu"),
    ("max_position_embeddings", "max_position_embeddings", 1024),
    ("tie_word_embeddings", "tie_word_embeddings", True), ("position_type", None, "learned"),
    ("position_offset", None, 2), ("mlp_gated", None, False),
    # BioGPT's LayerNorms use torch's default eps; config.layer_norm_eps is not read by the model
    ("norm_type", None, "layer"), ("norm_eps", None, 1e-5),
] + BIASES + SPECIAL


def _biogpt_from_hf(cls, hf, kw):
    kw["embedding_scale"] = float(kw["hidden_size"]) ** 0.5 if hf.get("scale_embedding", True) else None
    return kw


def _biogpt_to_hf(self, hf):
    hf["scale_embedding"] = self.options["embedding_scale"] is not None
    return hf


BioGptBackbone, BioGptCausalLM = family(
    "biogpt", "BioGpt", BIOGPT_TABLE, module=__name__, base=ClassicBackbone,
    base_model_prefix="biogpt",
    names={**NAMES, "o": "out_proj", "attn_norm": "self_attn_layer_norm",
           "mlp_norm": "final_layer_norm", "mlp": "", "up": "fc1", "down": "fc2",
           "final_norm": "layer_norm", "pos_embed": "embed_positions"},
    lm_attrs=dict(hf_lm_head="output_projection", hf_head_patterns=("output_projection.*",)),
    adjust_from_hf=classmethod(_biogpt_from_hf), adjust_to_hf=_biogpt_to_hf,
)

# --- MPT: ALiBi (MPT slopes), no biases (LayerNorm without beta), fused Wqkv -----------------------
MPT_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "d_model", REQUIRED),
    ("num_layers", "n_layers", REQUIRED), ("num_heads", "n_heads", REQUIRED),
    ("max_position_embeddings", "max_seq_len", 2048), ("norm_type", None, "layer"),
    ("norm_eps", "layer_norm_epsilon", 1e-5), ("tie_word_embeddings", "tie_word_embeddings", True),
    ("activation", None, "gelu"), ("position_type", None, "alibi"), ("fused_qkv", None, True),
    ("mlp_gated", None, False),
] + SPECIAL


def _mpt_from_hf(cls, hf, kw):
    attn = dict(hf.get("attn_config") or {})
    for key, bad in (("clip_qkv", None), ("qk_ln", False), ("prefix_lm", False),
                     ("attn_uses_sequence_id", False)):
        if attn.get(key, bad) not in (bad, None) and attn.get(key) != bad:
            raise ConfigError(f"config.json: MPT attn_config.{key}={attn.get(key)!r} is not supported yet")
    if not attn.get("alibi", True):
        raise ConfigError("config.json: MPT without ALiBi (learned positions) is not supported yet")
    if hf.get("logit_scale") is not None:
        raise ConfigError("config.json: MPT logit_scale is not supported yet")
    bias = not hf.get("no_bias", True)
    # Transformers' MptMLP is 4 * d_model wide whatever expansion_ratio says
    kw.update(intermediate_size=4 * kw["hidden_size"],
              alibi_bias_max=attn.get("alibi_bias_max", 8), attn_scale=attn.get("softmax_scale"),
              qkv_bias=bias, out_bias=bias, mlp_bias=bias, norm_bias=bias)
    return kw


def _mpt_to_hf(self, hf):
    o = self.options
    if self.intermediate_size != 4 * self.hidden_size:
        raise ConfigError("MPT exports need intermediate_size == 4 * hidden_size (Transformers' MptMLP)")
    hf.update(expansion_ratio=4, no_bias=not o["qkv_bias"],
              attn_config={"alibi": True, "alibi_bias_max": o["alibi_bias_max"],
                           "softmax_scale": o["attn_scale"], "clip_qkv": None, "qk_ln": False})
    return hf


MptBackbone, MptCausalLM = family(
    "mpt", "Mpt", MPT_TABLE, module=__name__, base=ClassicBackbone, classifier=False,
    base_model_prefix="transformer",
    names={**NAMES, "layer": "blocks.{i}.", "attn": "attn.", "qkv": "Wqkv", "o": "out_proj",
           "attn_norm": "norm_1", "mlp_norm": "norm_2", "mlp": "ffn.", "final_norm": "norm_f",
           "embed": "wte"},
    adjust_from_hf=classmethod(_mpt_from_hf), adjust_to_hf=_mpt_to_hf,
)

# --- XGLM: fixed sinusoidal positions (offset 2), scaled embeddings, OPT-like pre-norm block ------
XGLM_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "d_model", REQUIRED),
    ("num_layers", "num_layers", REQUIRED), ("num_heads", "attention_heads", REQUIRED),
    ("intermediate_size", "ffn_dim", REQUIRED), ("activation", "activation_function", "gelu"),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", True), ("position_type", None, "sinusoidal"),
    ("position_offset", None, 2), ("mlp_gated", None, False), ("norm_type", None, "layer"),
    ("norm_eps", None, 1e-5), ("initializer_range", "init_std", 0.02),
] + BIASES + SPECIAL[:3]


def _xglm_from_hf(cls, hf, kw):
    kw["embedding_scale"] = float(kw["hidden_size"]) ** 0.5 if hf.get("scale_embedding", True) else None
    return kw


XGLMBackbone, XGLMCausalLM = family(
    "xglm", "XGLM", XGLM_TABLE, module=__name__, base=ClassicBackbone, classifier=False,
    names={**NAMES, "o": "out_proj", "attn_norm": "self_attn_layer_norm",
           "mlp_norm": "final_layer_norm", "mlp": "", "up": "fc1", "down": "fc2",
           "final_norm": "layer_norm"},
    adjust_from_hf=classmethod(_xglm_from_hf), adjust_to_hf=_biogpt_to_hf,
)

# --- CTRL: fixed sinusoidal positions (CTRL layout), scaled embeddings, tied head with a bias ------
CTRL_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "n_embd", REQUIRED),
    ("num_layers", "n_layer", REQUIRED), ("num_heads", "n_head", REQUIRED),
    ("intermediate_size", "dff", REQUIRED), ("activation", None, "relu"),
    ("max_position_embeddings", "n_positions", 256), ("tie_word_embeddings", "tie_word_embeddings", True),
    ("position_type", None, "sinusoidal"), ("sinusoidal_style", None, "ctrl"), ("mlp_gated", None, False),
    # block norms use a fixed 1e-6; only the final norm reads layer_norm_epsilon
    ("norm_type", None, "layer"), ("norm_eps", None, 1e-6),
    ("final_norm_eps", "layer_norm_epsilon", 1e-6), ("lm_head_bias", None, True),
] + BIASES + SPECIAL


def _ctrl_from_hf(cls, hf, kw):
    kw["embedding_scale"] = float(kw["hidden_size"]) ** 0.5
    return kw


CTRLBackbone, CTRLCausalLM = family(
    "ctrl", "CTRL", CTRL_TABLE, module=__name__, base=ClassicBackbone, classifier=False,
    base_model_prefix="transformer", lm_archs=("CTRLLMHeadModel",),
    names={**NAMES, "layer": "h.{i}.", "attn": "multi_head_attention.", "q": "Wq", "k": "Wk",
           "v": "Wv", "o": "dense", "attn_norm": "layernorm1", "mlp_norm": "layernorm2",
           "mlp": "ffn.", "up": "0", "down": "2", "final_norm": "layernorm", "embed": "w"},
    adjust_from_hf=classmethod(_ctrl_from_hf),
)

# --- GPT NeoX Japanese: serial GPT-NeoX block without biases, except the last layer's attention
# output bias (stored as attention.dense_bias) --------------------------------------------------
NEOX_JA_TABLE = [r for r in LN_TABLE if r[0] != "intermediate_size"] + [
    ("intermediate_size", None, None),  # hidden_size * intermediate_multiple_size
    ("activation", "hidden_act", "gelu"), ("fused_qkv", None, True), ("mlp_gated", None, False),
    ("qkv_bias", None, False), ("out_bias", None, False), ("mlp_bias", None, False),
    ("tie_word_embeddings", "tie_word_embeddings", True),
]


class _NeoXJapanese(TableBackbone):
    qkv_layout = "per_head"

    @classmethod
    def adjust_from_hf(cls, hf, kw):
        kw["intermediate_size"] = int(kw["hidden_size"] * hf.get("intermediate_multiple_size", 4))
        kw["out_bias_layers"] = [kw["num_layers"] - 1]
        return kw

    def adjust_to_hf(self, hf):
        hf["intermediate_multiple_size"] = self.intermediate_size / self.hidden_size
        if float(hf["intermediate_multiple_size"]).is_integer():
            hf["intermediate_multiple_size"] = int(hf["intermediate_multiple_size"])
        return hf

    def block_rules(self, i, blk):
        rules = super().block_rules(i, blk)
        for r in rules:
            if r.hf.endswith(".attention.dense.bias"):
                r.hf = r.hf[: -len(".dense.bias")] + ".dense_bias"
        return rules


GPTNeoXJapaneseBackbone, GPTNeoXJapaneseCausalLM = family(
    "gpt_neox_japanese", "GPTNeoXJapanese", NEOX_JA_TABLE, module=__name__, base=_NeoXJapanese,
    classifier=False, base_model_prefix="gpt_neox_japanese",
    names={**NAMES, "attn": "attention.", "qkv": "query_key_value", "o": "dense",
           "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "final_layer_norm",
           "embed": "embed_in"},
    hf_ignore=("*rotary_emb.inv_freq", "*attention.bias", "*attention.masked_bias"),
    lm_attrs=dict(hf_lm_head="embed_out", hf_head_patterns=("embed_out.*",)),
)

__all__ = [
    "GPTNeoXJapaneseBackbone", "GPTNeoXJapaneseCausalLM", "CTRLBackbone", "CTRLCausalLM", "XGLMBackbone", "XGLMCausalLM", "MptBackbone", "MptCausalLM",
    "GPTNeoBackbone", "GPTNeoCausalLM", "OpenAIGPTBackbone", "OpenAIGPTCausalLM",
    "PersimmonBackbone", "PersimmonCausalLM", "CodeGenBackbone", "CodeGenCausalLM",
    "BioGptBackbone", "BioGptCausalLM",
]
