"""More Llama-named families, each a table + switches: Gemma, Gemma 2, Phi, StableLM, Starcoder2."""

from keras_models.errors import ConfigError
from keras_models.models.decoder.hf_config import REQUIRED
from keras_models.models.decoder.llama import BASE_TABLE, NAMES, SLIDING, family

# --- Gemma: unit-offset RMSNorm, embeddings scaled by sqrt(hidden), tied head ---------------------
GEMMA_TABLE = BASE_TABLE + [
    ("activation", "hidden_act", "gelu_pytorch_tanh"),
    ("qkv_bias", "attention_bias", False),
    ("out_bias", "attention_bias", False),
    ("tie_word_embeddings", "tie_word_embeddings", True),
    ("norm_unit_offset", None, True),
]


def _gemma_from_hf(cls, hf, kw):
    if kw["activation"] == "gelu":  # legacy Gemma configs mean the tanh approximation
        kw["activation"] = "gelu_pytorch_tanh"
    kw["embedding_scale"] = float(kw["hidden_size"]) ** 0.5
    return kw


GemmaBackbone, GemmaCausalLM = family(
    "gemma", "Gemma", GEMMA_TABLE, module=__name__,
    adjust_from_hf=classmethod(_gemma_from_hf))

# --- Gemma 2: sandwich norms, soft-capping, query_pre_attn_scalar, alternating sliding window -----
GEMMA2_TABLE = [r for r in GEMMA_TABLE if r[0] != "activation"] + SLIDING + [
    ("activation", "hidden_activation", "gelu_pytorch_tanh"),
    ("softcap", "attn_logit_softcapping", None),
    ("final_logit_softcap", "final_logit_softcapping", None),
    ("layer_types", "layer_types", None),
    ("sandwich_norms", None, True),
]


def _gemma2_from_hf(cls, hf, kw):
    kw = _gemma_from_hf(cls, hf, kw)
    kw["attn_scale"] = float(hf.get("query_pre_attn_scalar", 256)) ** -0.5
    if kw["layer_types"] is None:
        kw["layer_types"] = ["sliding_attention" if (i + 1) % 2 else "full_attention"
                             for i in range(kw["num_layers"])]
    return kw


def _gemma2_to_hf(self, hf):
    scalar = self.options["attn_scale"] ** -2
    hf["query_pre_attn_scalar"] = int(round(scalar)) if abs(scalar - round(scalar)) < 1e-6 else scalar
    return hf


Gemma2Backbone, Gemma2CausalLM = family(
    "gemma2", "Gemma2", GEMMA2_TABLE, module=__name__, adjust_from_hf=classmethod(_gemma2_from_hf),
    adjust_to_hf=_gemma2_to_hf,
    names={**NAMES, "attn_out_norm": "post_attention_layernorm",
           "mlp_norm": "pre_feedforward_layernorm", "mlp_out_norm": "post_feedforward_layernorm"},
)

# --- LayerNorm families --------------------------------------------------------------------------
LN_TABLE = [r for r in BASE_TABLE if r[0] not in ("norm_eps", "norm_type")] + [
    ("norm_type", None, "layer"),
    ("norm_eps", "layer_norm_eps", 1e-5),
]

# Phi: parallel residual with one shared LayerNorm, partial rotary, biases everywhere, lm_head bias.
PHI_TABLE = LN_TABLE + [
    ("activation", "hidden_act", "gelu_new"),
    ("qkv_bias", None, True), ("out_bias", None, True), ("mlp_bias", None, True),
    ("mlp_gated", None, False), ("residual", None, "parallel"), ("parallel_norms", None, 1),
    ("lm_head_bias", None, True),
]


def _phi_from_hf(cls, hf, kw):
    kw["qk_norm"] = "layer" if hf.get("qk_layernorm") else None
    return kw


def _phi_to_hf(self, hf):
    hf["qk_layernorm"] = self.options["qk_norm"] == "layer"
    return hf


PhiBackbone, PhiCausalLM = family(
    "phi", "Phi", PHI_TABLE, module=__name__, adjust_from_hf=classmethod(_phi_from_hf),
    adjust_to_hf=_phi_to_hf,
    names={**NAMES, "o": "dense", "up": "fc1", "down": "fc2", "final_norm": "final_layernorm",
           "q_norm": "q_layernorm", "k_norm": "k_layernorm"},
)

# StableLM: LayerNorm, partial rotary, optional qkv bias and parallel residual (one norm).
STABLELM_TABLE = LN_TABLE + [
    ("qkv_bias", "use_qkv_bias", False),
    ("out_bias", None, False),
]


def _stablelm_from_hf(cls, hf, kw):
    if hf.get("qk_layernorm"):
        raise ConfigError("config.json: StableLM qk_layernorm=True (per-head norms) is not supported yet")
    if hf.get("use_parallel_residual"):
        kw.update(residual="parallel", parallel_norms=1)
    return kw


def _stablelm_to_hf(self, hf):
    hf["use_parallel_residual"] = self.options["residual"] == "parallel"
    return hf


StableLmBackbone, StableLmCausalLM = family(
    "stablelm", "StableLm", STABLELM_TABLE, module=__name__,
    adjust_from_hf=classmethod(_stablelm_from_hf),
    adjust_to_hf=_stablelm_to_hf,
)

# Starcoder2: LayerNorm, biases everywhere (use_bias), plain MLP c_fc/c_proj, sliding window.
STARCODER2_TABLE = [r for r in LN_TABLE if r[0] != "norm_eps"] + SLIDING + [
    ("norm_eps", "norm_epsilon", 1e-5),
    ("activation", "hidden_act", "gelu_pytorch_tanh"),
    ("qkv_bias", "use_bias", True), ("out_bias", "use_bias", True), ("mlp_bias", "use_bias", True),
    ("mlp_gated", None, False),
    ("tie_word_embeddings", "tie_word_embeddings", True),
]

Starcoder2Backbone, Starcoder2CausalLM = family(
    "starcoder2", "Starcoder2", STARCODER2_TABLE, module=__name__,
    names={**NAMES, "up": "c_fc", "down": "c_proj"},
)

__all__ = [
    "GemmaBackbone", "GemmaCausalLM", "Gemma2Backbone", "Gemma2CausalLM", "PhiBackbone",
    "PhiCausalLM", "StableLmBackbone", "StableLmCausalLM", "Starcoder2Backbone",
    "Starcoder2CausalLM", "REQUIRED",
]
