"""NLLB-MoE: the pre-norm M2M100 / NLLB layout in which every ``encoder_sparse_step``-th /
``decoder_sparse_step``-th feed-forward is a mixture of ``num_experts`` plain experts with top-2
routing (weights renormalised over the two), scaled by ``1 - moe_token_dropout`` at inference.

Inference with ``moe_eval_capacity_token_fraction >= 1`` (the checkpoints' setting) never drops a
token, so routing is per token. The router also skips padding tokens in Transformers; that only
changes the (masked) padded positions, so it is not reproduced.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.bart.backbone import BartBackbone
from keras_models.models.bart.families import M2M100Spec
from keras_models.models.bart.tasks import BartLikeSeq2SeqLM
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
NLLB_MOE_FIELDS = ("num_experts", "encoder_sparse_step", "decoder_sparse_step", "router_bias",
                   "moe_token_dropout")
_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
NLLB_MOE_NAMES = {
    "self_attention": ("self_attn", _ATTENTION),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("cross_attention", _ATTENTION),
    "cross_attention_norm": "cross_attention_layer_norm",
    "ffn_in": "ffn.fc1",
    "ffn_out": "ffn.fc2",
    "ffn_norm": "ff_layer_norm",
    "moe_router": "ffn.router.classifier",
    "moe_expert": "ffn.experts.expert_{e}",
    "moe_expert_dense": ("fc1", "fc2"),
}


@dataclass(frozen=True, kw_only=True)
class NllbMoeSpec(M2M100Spec):
    architecture: ClassVar[str] = "NllbMoeModel"
    unsupported: ClassVar[dict] = {"second_expert_policy": ("all",)}  # random second experts
    num_experts: int = dim("num_experts", 128)
    encoder_sparse_step: int = hf("encoder_sparse_step", 4)
    decoder_sparse_step: int = hf("decoder_sparse_step", 4)
    router_bias: bool = hf("router_bias", False)
    moe_token_dropout: float = hf("moe_token_dropout", 0.2)
    hf_model_type: str = const("nllb-moe")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if (config.get("moe_eval_capacity_token_fraction") or 1.0) < 1.0:
            raise ConfigError(f"{source}: moe_eval_capacity_token_fraction < 1 (tokens dropped "
                              "at inference across the batch) is not supported")
        return super().adjust_from_hf(config, values, source)


@_ser
@register_backbone("nllb-moe")
class NllbMoeBackbone(BartBackbone):
    base_model_prefix = "model"
    hf_architecture = "NllbMoeModel"
    spec_cls = NllbMoeSpec
    reads_untied_tables = True  # tie_word_embeddings false: own encoder / decoder / shared tables
    encoder_block_names = NLLB_MOE_NAMES
    decoder_block_names = NLLB_MOE_NAMES
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, num_experts=128, encoder_sparse_step=4, decoder_sparse_step=4,
                 router_bias=False, moe_token_dropout=0.2, hf_model_type="nllb-moe", **kwargs):
        self.num_experts = num_experts
        self.encoder_sparse_step = encoder_sparse_step
        self.decoder_sparse_step = decoder_sparse_step
        self.router_bias = router_bias
        self.moe_token_dropout = moe_token_dropout
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)
        self.hf_architecture = "NllbMoeModel"

    def block_extra_options(self, index, cross):
        options = super().block_extra_options(index, cross)
        step = self.decoder_sparse_step if cross else self.encoder_sparse_step
        if step > 0 and (index + 1) % step == 0:
            options.update(num_experts=self.num_experts, experts_per_token=2, normalize_top_k=True,
                           router_bias=self.router_bias, expert_scale=1.0 - self.moe_token_dropout)
        return options

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in NLLB_MOE_FIELDS})
        return config


@_ser
@register_task(NllbMoeBackbone, "Seq2SeqLM", ("NllbMoeForConditionalGeneration",))
class NllbMoeSeq2SeqLM(BartLikeSeq2SeqLM):
    hf_final_logits_bias = None
    hf_head_patterns = ("lm_head.*",)


__all__ = ["NllbMoeBackbone", "NllbMoeSeq2SeqLM"]
