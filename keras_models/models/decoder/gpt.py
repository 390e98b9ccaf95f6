"""GPT-2-shaped and other classic families, each a config table + HF names + switches:
GPT-2 (DialoGPT, GPT-Sw3 checkpoints), GPTBigCode, OPT, GPT-NeoX (Pythia), GPT-J, Falcon, BLOOM."""

from keras_models.errors import ConfigError
from keras_models.models.decoder.hf_config import REQUIRED, rope_from_hf, rope_to_hf, translate, untranslate
from keras_models.models.decoder.llama import NAMES, TableBackbone, family


class ClassicBackbone(TableBackbone):
    """Families whose rope (if any) is described by their own keys (``rope_keys``)."""

    rope = False

    @classmethod
    def config_from_hf(cls, hf):
        kw = translate(hf, cls.table)
        if cls.rope:
            theta, scaling, partial = rope_from_hf(hf)
            head_dim = kw.get("head_dim") or kw["hidden_size"] // kw["num_heads"]
            kw.update(rope_theta=theta, rope_scaling=scaling)
            kw.setdefault("rotary_dim", None)
            kw["rotary_dim"] = kw["rotary_dim"] or int(head_dim * partial)
        return cls.adjust_from_hf(hf, kw)

    def config_to_hf(self):
        hf = {"model_type": self.model_types[0], "architectures": [self.hf_architecture]}
        hf.update(untranslate(self, self.table))
        if self.rope:
            o = self.options
            hf.update(rope_to_hf(o["rope_theta"], o["rope_scaling"], (o["rotary_dim"] or self.head_dim) / self.head_dim))
        return self.adjust_to_hf(hf)


def _ln(eps_key, eps=1e-5):
    return [("norm_type", None, "layer"), ("norm_eps", eps_key, eps)]


SPECIAL = [("pad_token_id", "pad_token_id", None), ("bos_token_id", "bos_token_id", None),
           ("eos_token_id", "eos_token_id", None), ("initializer_range", "initializer_range", 0.02)]
BIASES = [("qkv_bias", None, True), ("out_bias", None, True), ("mlp_bias", None, True)]

# --- GPT-2 ---------------------------------------------------------------------------------------
GPT2_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "n_embd", REQUIRED),
    ("num_layers", "n_layer", REQUIRED), ("num_heads", "n_head", REQUIRED),
    ("intermediate_size", "n_inner", None), ("activation", "activation_function", "gelu_new"),
    ("max_position_embeddings", "n_positions", 1024), ("tie_word_embeddings", "tie_word_embeddings", True),
    ("position_type", None, "learned"), ("fused_qkv", None, True), ("mlp_gated", None, False),
] + _ln("layer_norm_epsilon") + BIASES + SPECIAL
GPT2_NAMES = {**NAMES, "layer": "h.{i}.", "attn": "attn.", "qkv": "c_attn", "o": "c_proj",
              "attn_norm": "ln_1", "mlp_norm": "ln_2", "up": "c_fc", "down": "c_proj",
              "final_norm": "ln_f", "embed": "wte", "pos_embed": "wpe"}


def _gpt2_from_hf(cls, hf, kw):
    if hf.get("scale_attn_by_inverse_layer_idx"):
        raise ConfigError("config.json: scale_attn_by_inverse_layer_idx=True is not supported yet")
    if hf.get("scale_attn_weights", True) is False:
        kw["attn_scale"] = 1.0
    kw["intermediate_size"] = kw["intermediate_size"] or 4 * kw["hidden_size"]
    return kw


def _gpt2_to_hf(self, hf):
    hf["scale_attn_weights"] = self.options["attn_scale"] != 1.0
    return hf


GPT2Backbone, GPT2CausalLM = family(
    "gpt2", "GPT2", GPT2_TABLE, module=__name__, base=ClassicBackbone, names=GPT2_NAMES,
    conv1d=True, base_model_prefix="transformer", hf_architecture="GPT2Model",
    hf_ignore=("*attn.bias", "*attn.masked_bias"), lm_archs=("GPT2LMHeadModel",),
    adjust_from_hf=classmethod(_gpt2_from_hf), adjust_to_hf=_gpt2_to_hf,
)

# --- GPTBigCode: GPT-2 with Linear weights and multi-query attention ------------------------------


class _BigCode(ClassicBackbone):
    @property
    def qkv_layout(self):
        return "concat" if self.num_kv_heads == 1 else "per_head"


def _bigcode_from_hf(cls, hf, kw):
    kw = _gpt2_from_hf(cls, hf, kw)
    kw["num_kv_heads"] = 1 if hf.get("multi_query", True) else kw["num_heads"]
    return kw


def _bigcode_to_hf(self, hf):
    hf = _gpt2_to_hf(self, hf)
    hf["multi_query"] = self.num_kv_heads == 1
    return hf


GPTBigCodeBackbone, GPTBigCodeCausalLM = family(
    "gpt_bigcode", "GPTBigCode", [r for r in GPT2_TABLE if r[0] != "activation"] + [
        ("activation", "activation_function", "gelu_pytorch_tanh")],
    module=__name__, base=_BigCode, names=GPT2_NAMES, base_model_prefix="transformer",
    adjust_from_hf=classmethod(_bigcode_from_hf), adjust_to_hf=_bigcode_to_hf,
)

# --- OPT -----------------------------------------------------------------------------------------
OPT_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED), ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "ffn_dim", REQUIRED), ("activation", "activation_function", "relu"),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", True), ("embed_proj_dim", "word_embed_proj_dim", None),
    ("position_type", None, "learned"), ("position_offset", None, 2), ("mlp_gated", None, False),
    ("norm_type", None, "layer"), ("norm_eps", None, 1e-5),
    ("qkv_bias", "enable_bias", True), ("out_bias", "enable_bias", True), ("mlp_bias", "enable_bias", True),
    ("initializer_range", "init_std", 0.02),
] + SPECIAL[:3]
OPT_NAMES = {**NAMES, "layer": "decoder.layers.{i}.", "attn": "self_attn.", "o": "out_proj",
             "attn_norm": "self_attn_layer_norm", "mlp_norm": "final_layer_norm", "mlp": "",
             "up": "fc1", "down": "fc2", "final_norm": "decoder.final_layer_norm",
             "embed": "decoder.embed_tokens", "pos_embed": "decoder.embed_positions",
             "project_in": "decoder.project_in", "project_out": "decoder.project_out"}


def _opt_from_hf(cls, hf, kw):
    if hf.get("layer_norm_elementwise_affine", True) is False:
        raise ConfigError("config.json: OPT layer_norm_elementwise_affine=False is not supported yet")
    pre = hf.get("do_layer_norm_before", True)
    kw["norm_position"] = "pre" if pre else "post"
    kw["final_norm"] = bool(pre and not hf.get("_remove_final_layer_norm", False))
    return kw


def _opt_to_hf(self, hf):
    hf["do_layer_norm_before"] = self.options["norm_position"] == "pre"
    hf["_remove_final_layer_norm"] = hf["do_layer_norm_before"] and not self.options["final_norm"]
    hf["word_embed_proj_dim"] = self.options["embed_proj_dim"] or self.hidden_size
    return hf


OPTBackbone, OPTCausalLM = family(
    "opt", "OPT", OPT_TABLE, module=__name__, base=ClassicBackbone, names=OPT_NAMES,
    adjust_from_hf=classmethod(_opt_from_hf), adjust_to_hf=_opt_to_hf,
)

# --- GPT-NeoX (Pythia) ---------------------------------------------------------------------------
NEOX_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED), ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED), ("activation", "hidden_act", "gelu"),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", False), ("fused_qkv", None, True),
    ("qkv_bias", "attention_bias", True), ("out_bias", "attention_bias", True),
    ("mlp_bias", None, True), ("mlp_gated", None, False),
] + _ln("layer_norm_eps") + SPECIAL


def _neox_from_hf(cls, hf, kw):
    if hf.get("use_parallel_residual", True):
        kw.update(residual="parallel", parallel_norms=2)
    return kw


def _neox_to_hf(self, hf):
    hf["use_parallel_residual"] = self.options["residual"] == "parallel"
    return hf


GPTNeoXBackbone, GPTNeoXCausalLM = family(
    "gpt_neox", "GPTNeoX", NEOX_TABLE, module=__name__, base=ClassicBackbone, rope=True,
    qkv_layout="per_head", base_model_prefix="gpt_neox",
    names={**NAMES, "attn": "attention.", "qkv": "query_key_value", "o": "dense",
           "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "final_layer_norm",
           "embed": "embed_in"},
    hf_ignore=("*attention.bias", "*attention.masked_bias", "*rotary_emb.inv_freq"),
    lm_attrs=dict(hf_lm_head="embed_out", hf_head_patterns=("embed_out.*",)),
    adjust_from_hf=classmethod(_neox_from_hf), adjust_to_hf=_neox_to_hf,
)

# --- GPT-J: parallel residual, one norm, interleaved partial rotary, lm_head bias ----------------
GPTJ_TABLE = [r for r in GPT2_TABLE if r[0] not in ("position_type", "fused_qkv", "qkv_bias", "out_bias")] + [
    ("rotary_dim", "rotary_dim", None), ("rotary_interleaved", None, True),
    ("qkv_bias", None, False), ("out_bias", None, False), ("residual", None, "parallel"),
    ("lm_head_bias", None, True),
]
GPTJ_TABLE = [r for r in GPTJ_TABLE if r[0] != "tie_word_embeddings"] + [
    ("tie_word_embeddings", "tie_word_embeddings", False)]


def _gptj_from_hf(cls, hf, kw):
    kw["intermediate_size"] = kw["intermediate_size"] or 4 * kw["hidden_size"]
    return kw


GPTJBackbone, GPTJCausalLM = family(
    "gptj", "GPTJ", GPTJ_TABLE, module=__name__, base=ClassicBackbone, rope=True,
    base_model_prefix="transformer",
    names={**GPT2_NAMES, "o": "out_proj", "up": "fc_in", "down": "fc_out"},
    hf_ignore=("*attn.bias", "*attn.masked_bias"),
    adjust_from_hf=classmethod(_gptj_from_hf),
)

# --- Falcon (old and new decoder architectures; rotary or bfloat16 ALiBi) -------------------------
FALCON_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED), ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "ffn_hidden_size", None), ("activation", "activation", "gelu"),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", True), ("fused_qkv", None, True),
    ("qkv_bias", "bias", False), ("out_bias", "bias", False), ("mlp_bias", "bias", False),
    ("mlp_gated", None, False),
] + _ln("layer_norm_epsilon") + SPECIAL


class _Falcon(ClassicBackbone):
    """qkv rows are grouped per kv head (kv, heads/kv + 2, head_dim): that covers the new decoder
    architecture and, with kv = 1 or kv = heads, the old multi-query and multi-head layouts."""

    rope = True
    qkv_layout = "grouped"

    def block_names(self, blk):
        if blk.options["residual"] == "parallel" and blk.options["parallel_norms"] == 2:
            return {**self.names, "attn_norm": "ln_attn", "mlp_norm": "ln_mlp"}
        return self.names


def _falcon_from_hf(cls, hf, kw):
    if hf.get("alibi"):
        # Falcon adds ALiBi (computed in bfloat16) before the 1/sqrt(head_dim) scaling
        head_dim = kw["hidden_size"] // kw["num_heads"]
        kw.update(position_type="alibi", alibi_bfloat16=True, alibi_scale=head_dim ** -0.5)
    kw["intermediate_size"] = kw["intermediate_size"] or 4 * kw["hidden_size"]
    heads = kw["num_heads"]
    if hf.get("new_decoder_architecture"):
        kw["num_kv_heads"] = hf.get("num_kv_heads") or heads
        kw["residual"] = "parallel"
        kw["parallel_norms"] = hf.get("num_ln_in_parallel_attn") or 2
    else:
        kw["num_kv_heads"] = 1 if hf.get("multi_query", True) else heads
        kw["residual"] = "parallel" if hf.get("parallel_attn", True) else "serial"
    return kw


def _falcon_to_hf(self, hf):
    o = self.options
    new = o["parallel_norms"] == 2 or self.num_kv_heads not in (1, self.num_heads)
    hf.update(new_decoder_architecture=new, alibi=o["position_type"] == "alibi",
              num_kv_heads=self.num_kv_heads, multi_query=self.num_kv_heads == 1, parallel_attn=o["residual"] == "parallel")
    if new:
        hf["num_ln_in_parallel_attn"] = o["parallel_norms"]
    return hf


FalconBackbone, FalconCausalLM = family(
    "falcon", "Falcon", FALCON_TABLE, module=__name__, base=_Falcon, base_model_prefix="transformer",
    names={**NAMES, "layer": "h.{i}.", "attn": "self_attention.", "qkv": "query_key_value",
           "o": "dense", "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "ln_f",
           "embed": "word_embeddings"},
    adjust_from_hf=classmethod(_falcon_from_hf), adjust_to_hf=_falcon_to_hf,
)

# --- BLOOM: ALiBi, embedding LayerNorm, per-head fused qkv ----------------------------------------
BLOOM_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED), ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "n_layer", REQUIRED), ("num_heads", "n_head", REQUIRED),
    ("activation", None, "gelu_fast"), ("position_type", None, "alibi"),
    ("embedding_norm", None, True), ("tie_word_embeddings", "tie_word_embeddings", True),
    ("fused_qkv", None, True), ("mlp_gated", None, False),
    ("residual_from_norm", "apply_residual_connection_post_layernorm", False),
] + _ln("layer_norm_epsilon") + BIASES + SPECIAL


def _bloom_from_hf(cls, hf, kw):
    if hf.get("pretraining_tp", 1) > 1 and hf.get("slow_but_exact"):
        raise ConfigError("config.json: BLOOM slow_but_exact tensor-parallel emulation is not supported")
    kw["intermediate_size"] = 4 * kw["hidden_size"]
    return kw


BloomBackbone, BloomCausalLM = family(
    "bloom", "Bloom", BLOOM_TABLE, module=__name__, base=ClassicBackbone, qkv_layout="per_head",
    base_model_prefix="transformer",
    names={**NAMES, "layer": "h.{i}.", "attn": "self_attention.", "qkv": "query_key_value",
           "o": "dense", "up": "dense_h_to_4h", "down": "dense_4h_to_h", "final_norm": "ln_f",
           "embed": "word_embeddings", "embed_norm": "word_embeddings_layernorm"},
    adjust_from_hf=classmethod(_bloom_from_hf),
)

__all__ = [
    "GPT2Backbone", "GPT2CausalLM", "GPTBigCodeBackbone", "GPTBigCodeCausalLM", "OPTBackbone",
    "OPTCausalLM", "GPTNeoXBackbone", "GPTNeoXCausalLM", "GPTJBackbone", "GPTJCausalLM",
    "FalconBackbone", "FalconCausalLM", "BloomBackbone", "BloomCausalLM",
]
