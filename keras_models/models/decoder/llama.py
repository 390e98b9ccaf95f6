"""Llama-shaped families (HF names ``model.layers.N.self_attn.q_proj`` ...): Llama / Llama 2 /
Code Llama, Mistral, Mixtral, Qwen2. Each is a config table + the shared weight map."""

import keras

from keras_models.models.decoder.backbone import DecoderBackbone
from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import (
    REQUIRED, rope_from_hf, rope_to_hf, translate, untranslate,
)
from keras_models.models.decoder.weights import attention, embedding, linear, mlp, norm
from keras_models.models.registry import register_backbone, register_task
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")

BASE_TABLE = [
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("num_kv_heads", "num_key_value_heads", None),
    ("head_dim", "head_dim", None),
    ("activation", "hidden_act", "silu"),
    ("norm_eps", "rms_norm_eps", 1e-6),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", False),
    ("initializer_range", "initializer_range", 0.02),
    ("pad_token_id", "pad_token_id", None),
    ("bos_token_id", "bos_token_id", None),
    ("eos_token_id", "eos_token_id", None),
    ("norm_type", None, "rms"),
]
LLAMA_TABLE = BASE_TABLE + [
    ("qkv_bias", "attention_bias", False),
    ("out_bias", "attention_bias", False),
    ("mlp_bias", "mlp_bias", False),
]
SLIDING = [("sliding_window", "sliding_window", None)]

NAMES = dict(
    attn="self_attn.", q="q_proj", k="k_proj", v="v_proj", o="o_proj", q_norm="q_norm",
    k_norm="k_norm", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    mlp="mlp.", gate="gate_proj", up="up_proj", down="down_proj", final_norm="norm",
    embed="embed_tokens", moe="block_sparse_moe.", router="gate", experts="experts",
    e_gate="w1", e_up="w3", e_down="w2", layer="layers.{i}.", pos_embed=None, embed_norm=None,
    project_in=None, project_out=None,
)


class TableBackbone(DecoderBackbone):
    """Translator + weight map driven by data: ``table`` (config rows), ``names`` (HF tensor
    names), ``conv1d`` (GPT-2 style (in, out) weights), ``qkv_layout`` (fused qkv row order)."""

    base_model_prefix = "model"
    hf_ignore = ("*rotary_emb.inv_freq",)
    # every registered decoder family has CausalLM logits parity tests (tests/models/test_decoders.py)
    verified_backends = ("jax", "torch", "tensorflow")
    table = LLAMA_TABLE
    names = NAMES
    conv1d = False
    qkv_layout = "concat"

    @classmethod
    def config_from_hf(cls, hf):
        kw = translate(hf, cls.table)
        theta, scaling, partial = rope_from_hf(hf)
        head_dim = kw["head_dim"] or kw["hidden_size"] // kw["num_heads"]
        kw.update(rope_theta=theta, rope_scaling=scaling, rotary_dim=int(head_dim * partial))
        return cls.adjust_from_hf(hf, kw)

    @classmethod
    def adjust_from_hf(cls, hf, kw):
        return kw

    def config_to_hf(self):
        o = self.options
        hf = {"model_type": self.model_types[0], "architectures": [self.hf_architecture]}
        hf.update(untranslate(self, self.table))
        hf["head_dim"] = self.head_dim
        hf["num_key_value_heads"] = self.num_kv_heads
        partial = (o["rotary_dim"] or self.head_dim) / self.head_dim
        hf.update(rope_to_hf(o["rope_theta"], o["rope_scaling"], partial))
        return self.adjust_to_hf(hf)

    def adjust_to_hf(self, hf):
        return hf

    def block_names(self, blk):
        return self.names

    def block_rules(self, i, blk):
        n = self.block_names(blk)
        p = n["layer"].format(i=i)
        a = p + n["attn"]
        r = attention(a, blk.attention, n, self.conv1d, self.qkv_layout)
        r += norm(p + n["attn_norm"], blk.attention_norm)
        if blk.mlp_norm is not None:
            r += norm(p + n["mlp_norm"], blk.mlp_norm)
        if blk.options["sandwich_norms"]:
            r += norm(p + n["attn_out_norm"], blk.attention_out_norm)
            r += norm(p + n["mlp_out_norm"], blk.mlp_out_norm)
        if blk.options["num_experts"]:
            m = p + n["moe"]
            r += linear(m + n["router"], blk.mlp.router)
            for e, expert in enumerate(blk.mlp.experts):
                r += mlp(f"{m}{n['experts']}.{e}.", expert,
                         {"gate": n["e_gate"], "up": n["e_up"], "down": n["e_down"]})
        else:
            r += mlp(p + n["mlp"], blk.mlp, n, self.conv1d)
        return r

    def weight_rules(self):
        n = self.names
        r = embedding(n["embed"], self.token_embedding)
        if self.position_embedding is not None:
            r += embedding(n["pos_embed"], self.position_embedding)
        if self.embedding_norm is not None:
            r += norm(n["embed_norm"], self.embedding_norm)
        if self.project_in is not None:
            r += linear(n["project_in"], self.project_in) + linear(n["project_out"], self.project_out)
        for i, blk in enumerate(self.blocks):
            r += self.block_rules(i, blk)
        if self.final_norm is not None:
            r += norm(n["final_norm"], self.final_norm)
        return r


def family(model_type, prefix, table=LLAMA_TABLE, lm_archs=None, lm_attrs=None, classifier=True,
           **attrs):
    """Register a table-driven family: ``<prefix>Backbone`` + ``<prefix>CausalLM`` (+
    ``<prefix>TextClassifier`` for ``<prefix>ForSequenceClassification`` checkpoints)."""
    attrs.setdefault("hf_architecture", f"{prefix}Model")
    module = attrs.pop("module", __name__)
    bb = type(f"{prefix}Backbone", (attrs.pop("base", TableBackbone),),
              dict(table=table, __module__=module, **attrs))
    bb = _ser(register_backbone(model_type)(bb))
    lm = type(f"{prefix}CausalLM", (CausalLM,), dict(__module__=module, **(lm_attrs or {})))
    lm = _ser(register_task(bb, "CausalLM", tuple(lm_archs or (f"{prefix}ForCausalLM",)))(lm))
    if classifier:
        tc = type(f"{prefix}TextClassifier", (DecoderTextClassifier,), dict(__module__=module))
        tc = _ser(register_task(bb, "TextClassifier", (f"{prefix}ForSequenceClassification",))(tc))
        globals_ = __import__(module, fromlist=["_"]).__dict__
        globals_[tc.__name__] = tc
    return bb, lm


LlamaBackbone, LlamaCausalLM = family("llama", "Llama")
MistralBackbone, MistralCausalLM = family("mistral", "Mistral", BASE_TABLE + SLIDING)


def _qwen2_from_hf(cls, hf, kw):
    layer_types = hf.get("layer_types")
    if not hf.get("use_sliding_window"):
        kw["sliding_window"] = None
    elif layer_types is None:
        mwl = hf.get("max_window_layers", kw["num_layers"])
        layer_types = ["full_attention" if i < mwl else "sliding_attention" for i in range(kw["num_layers"])]
    kw["layer_types"] = layer_types
    return kw


def _qwen2_to_hf(self, hf):
    hf["use_sliding_window"] = self.options["sliding_window"] is not None
    hf["layer_types"] = self.options["layer_types"] or ["full_attention"] * self.num_layers
    return hf


Qwen2Backbone, Qwen2CausalLM = family(
    "qwen2", "Qwen2",
    BASE_TABLE + SLIDING + [("qkv_bias", None, True), ("out_bias", None, False)],
    adjust_from_hf=classmethod(_qwen2_from_hf), adjust_to_hf=_qwen2_to_hf,
)


MixtralBackbone, MixtralCausalLM = family(
    "mixtral", "Mixtral",
    BASE_TABLE + SLIDING + [
        ("num_experts", "num_local_experts", 8),
        ("experts_per_token", "num_experts_per_tok", 2),
        ("norm_eps", "rms_norm_eps", 1e-5),
    ],
)

__all__ = [ "LlamaBackbone", "LlamaCausalLM", "MistralBackbone", "MistralCausalLM",
    "Qwen2Backbone", "Qwen2CausalLM", "MixtralBackbone", "MixtralCausalLM",
]
