"""Llama-shaped families (HF names ``model.layers.N.self_attn.q_proj`` ...): Llama / Llama 2 /
Code Llama, Mistral, Mixtral, Qwen2. Each is a spec (LlamaSpec and subclasses) + the shared weight map."""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.models.decoder.backbone import DecoderBackbone
from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import DecoderSpec, value
from keras_models.models.decoder.weights import (attention, embedding, latent_attention, linear, mlp, norm,
                                                 per_expert_stacked, stacked_experts)
from keras_models.presets.weight_map import Rule
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class LlamaSpec(DecoderSpec):
    """Llama / Llama 2 / Code Llama / Llama 3 (config.json of ``LlamaConfig``)."""

    rope: ClassVar[bool] = True

    vocab_size: int = dim("vocab_size", 32000)
    hidden_size: int = dim("hidden_size", 4096)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 32)
    intermediate_size: int = dim("intermediate_size", 11008)
    num_kv_heads: int | None = hf("num_key_value_heads", None, doc="None: num_heads")
    head_dim: int | None = hf("head_dim", None, doc="None: hidden_size // num_heads")
    activation: str = hf("hidden_act", "silu")
    norm_type: str = const("rms")
    norm_eps: float = hf("rms_norm_eps", 1e-6)
    bos_token_id: int | tuple | None = hf("bos_token_id", 1)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    qkv_bias: bool = hf("attention_bias", False)
    out_bias: bool = hf("attention_bias", False)
    mlp_bias: bool = hf("mlp_bias", False)

    def adjust_to_hf(self, out):
        out["head_dim"] = self.head_dim or self.hidden_size // self.num_heads
        out["num_key_value_heads"] = self.num_kv_heads or self.num_heads
        return super().adjust_to_hf(out)


@dataclass(frozen=True, kw_only=True)
class MistralSpec(LlamaSpec):
    intermediate_size: int = dim("intermediate_size", 14336)
    num_kv_heads: int | None = hf("num_key_value_heads", 8)
    max_position_embeddings: int = dim("max_position_embeddings", 4096 * 32)
    sliding_window: int | None = hf("sliding_window", 4096)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)


@dataclass(frozen=True, kw_only=True)
class Qwen2Spec(MistralSpec):
    """Qwen2: qkv biases; sliding window only with ``use_sliding_window``, on the layers from
    ``max_window_layers`` on (or as ``layer_types`` says)."""

    vocab_size: int = dim("vocab_size", 151936)
    intermediate_size: int = dim("intermediate_size", 22016)
    num_kv_heads: int | None = hf("num_key_value_heads", None)
    max_position_embeddings: int = dim("max_position_embeddings", 32768)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", None)
    sliding_window: int | None = hf("sliding_window", None)
    layer_types: tuple | None = hf("layer_types", None)
    qkv_bias: bool = const(True)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        n = value(cls, values, "num_layers")
        if not config.get("use_sliding_window"):
            values["sliding_window"] = None
        elif values.get("layer_types") is None:
            mwl = config.get("max_window_layers", 28)
            values["layer_types"] = tuple("full_attention" if i < mwl else "sliding_attention" for i in range(n))
        return values

    def adjust_to_hf(self, out):
        out["use_sliding_window"] = self.sliding_window is not None
        out["layer_types"] = list(self.layer_types or ["full_attention"] * self.num_layers)
        return super().adjust_to_hf(out)


@dataclass(frozen=True, kw_only=True)
class MixtralSpec(MistralSpec):
    rope_theta_default: ClassVar[float] = 1e6

    head_dim: int | None = hf("head_dim", None)
    sliding_window: int | None = hf("sliding_window", None)
    norm_eps: float = hf("rms_norm_eps", 1e-5)
    num_experts: int = dim("num_local_experts", 8)
    experts_per_token: int = dim("num_experts_per_tok", 2)


NAMES = dict(
    attn="self_attn.", q="q_proj", k="k_proj", v="v_proj", o="o_proj", q_norm="q_norm",
    k_norm="k_norm", attn_norm="input_layernorm", mlp_norm="post_attention_layernorm",
    mlp="mlp.", gate="gate_proj", up="up_proj", down="down_proj", final_norm="norm",
    embed="embed_tokens", moe="block_sparse_moe.", router="gate", experts="experts",
    e_gate="w1", e_up="w3", e_down="w2", layer="layers.{i}.", pos_embed=None, embed_norm=None,
    project_in=None, project_out=None, shared_expert="shared_expert",
    shared_expert_gate="shared_expert_gate", sinks="sinks", correction_bias="e_score_correction_bias",
    e_gate_up="gate_up_proj", e_down_stacked="down_proj", q_a="q_a_proj", q_a_norm="q_a_layernorm",
    q_b="q_b_proj", kv_a="kv_a_proj_with_mqa", kv_a_norm="kv_a_layernorm", kv_b="kv_b_proj",
)


class TableBackbone(DecoderBackbone):
    """Weight map driven by data: ``names`` (HF tensor names), ``conv1d`` (GPT-2 style (in, out)
    weights), ``qkv_layout`` (fused qkv row order), ``experts_interleaved`` (stacked experts
    whose gate / up columns alternate); config.json through ``spec_cls``."""

    base_model_prefix = "model"
    hf_ignore = ("*rotary_emb.inv_freq",)
    # every registered decoder family has CausalLM logits parity tests (tests/models/test_decoders.py)
    verified_backends = ("jax", "torch", "tensorflow")
    spec_cls = LlamaSpec
    names = NAMES
    conv1d = False
    qkv_layout = "concat"
    experts_interleaved = False
    # the checkpoint stores the experts stacked (GPT-OSS, Llama 4) rather than one MLP per expert;
    # either way our experts are stacked (keras_models.layers.moe), unless a .keras file saved them
    # as a list of MLPs (``moe_stacked_experts=False``)
    checkpoint_stacked_experts = False

    def block_names(self, blk):
        return self.names

    def block_rules(self, i, blk):
        n = self.block_names(blk)
        p = n["layer"].format(i=i)
        a = p + n["attn"]
        if blk.options["attention_type"] == "latent":
            r = latent_attention(a, blk.attention, n)
        else:
            r = attention(a, blk.attention, n, self.conv1d, self.qkv_layout)
        if blk.options["attention_sinks"]:
            r.append(Rule(a + n["sinks"], blk.attention.sinks))
        r += norm(p + n["attn_norm"], blk.attention_norm)
        if blk.mlp_norm is not None:
            r += norm(p + n["mlp_norm"], blk.mlp_norm)
        if blk.options["sandwich_norms"]:
            r += norm(p + n["attn_out_norm"], blk.attention_out_norm)
            r += norm(p + n["mlp_out_norm"], blk.mlp_out_norm)
        if blk.options["num_experts"]:
            m = p + n["moe"]
            r += linear(m + n["router"], blk.mlp.router)
            if blk.mlp.router_correction_bias:
                r.append(Rule(f"{m}{n['router']}.{n['correction_bias']}", blk.mlp.score_correction_bias))
            per_expert = {"gate": n["e_gate"], "up": n["e_up"], "down": n["e_down"]}
            if blk.mlp.stacked and self.checkpoint_stacked_experts:
                names = {"e_gate_up": n["e_gate_up"], "e_down": n["e_down_stacked"],
                         "e_gate_up_bias": n["e_gate_up"] + "_bias", "e_down_bias": n["e_down_stacked"] + "_bias"}
                r += stacked_experts(f"{m}{n['experts']}.", blk.mlp, names, self.experts_interleaved)
            elif blk.mlp.stacked:
                r += per_expert_stacked(f"{m}{n['experts']}.", blk.mlp, per_expert)
            for e, expert in enumerate(blk.mlp.experts):  # the list layout (.keras files saved before)
                r += mlp(f"{m}{n['experts']}.{e}.", expert, per_expert)
            if blk.mlp.shared_expert is not None:
                r += mlp(m + n["shared_expert"] + ".", blk.mlp.shared_expert, n)
            if blk.mlp.shared_gate is not None:
                r += linear(m + n["shared_expert_gate"], blk.mlp.shared_gate)
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


@_ser
@register_backbone("llama")
class LlamaBackbone(TableBackbone):
    spec_cls = LlamaSpec
    checkpoint_families = ("Llama2", "CodeLlama")  # checkpoint-only rows (docs/models.md)
    hf_architecture = "LlamaModel"


@_ser
@register_task(LlamaBackbone, "CausalLM", ("LlamaForCausalLM",))
class LlamaCausalLM(CausalLM):
    pass


@_ser
@register_task(LlamaBackbone, "TextClassifier", ("LlamaForSequenceClassification",))
class LlamaTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("mistral")
class MistralBackbone(TableBackbone):
    spec_cls = MistralSpec
    hf_architecture = "MistralModel"


@_ser
@register_task(MistralBackbone, "CausalLM", ("MistralForCausalLM",))
class MistralCausalLM(CausalLM):
    pass


@_ser
@register_task(MistralBackbone, "TextClassifier", ("MistralForSequenceClassification",))
class MistralTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("qwen2")
class Qwen2Backbone(TableBackbone):
    spec_cls = Qwen2Spec
    hf_architecture = "Qwen2Model"


@_ser
@register_task(Qwen2Backbone, "CausalLM", ("Qwen2ForCausalLM",))
class Qwen2CausalLM(CausalLM):
    pass


@_ser
@register_task(Qwen2Backbone, "TextClassifier", ("Qwen2ForSequenceClassification",))
class Qwen2TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("mixtral")
class MixtralBackbone(TableBackbone):
    spec_cls = MixtralSpec
    hf_architecture = "MixtralModel"


@_ser
@register_task(MixtralBackbone, "CausalLM", ("MixtralForCausalLM",))
class MixtralCausalLM(CausalLM):
    pass


@_ser
@register_task(MixtralBackbone, "TextClassifier", ("MixtralForSequenceClassification",))
class MixtralTextClassifier(DecoderTextClassifier):
    pass


__all__ = [ "LlamaBackbone", "LlamaCausalLM", "MistralBackbone", "MistralCausalLM",
    "Qwen2Backbone", "Qwen2CausalLM", "MixtralBackbone", "MixtralCausalLM",
]
