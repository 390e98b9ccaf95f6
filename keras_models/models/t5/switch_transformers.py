"""Switch Transformers: T5 (v1.0 layout, ``mlp.wi`` / ``mlp.wo`` names) in which every
``encoder_sparse_step``-th / ``decoder_sparse_step``-th feed-forward is a sparse mixture of
``num_experts`` experts with top-1 routing (output scaled by the router probability) and
``expert_capacity`` tokens per expert along each sequence (later tokens skip the experts).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.models.registry import register_backbone, register_task
from keras_models.models.t5.backbone import T5_NAMES, T5Backbone, T5Spec
from keras_models.models.t5.tasks import T5Seq2SeqLM
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
SWITCH_FIELDS = ("num_experts", "expert_capacity", "router_bias", "num_sparse_encoder_layers",
                 "num_sparse_decoder_layers")
SWITCH_NAMES = {
    **T5_NAMES,
    "ffn_in": "{ffn}.mlp.wi",
    "ffn_out": "{ffn}.mlp.wo",
    "moe_router": "{ffn}.mlp.router.classifier",
    "moe_expert": "{ffn}.mlp.experts.expert_{e}",
    "moe_expert_dense": ("wi", "wo"),
}


def sparse_step(num_layers, num_sparse):
    return num_layers // num_sparse if num_sparse > 0 else num_layers


def is_sparse(index, step):
    """Transformers' rule (with its quirk: ``num_sparse=0`` on 2+ layers still makes layer 1 sparse)."""
    return (index % step == 1 or step == 1) if step > 0 else False


@dataclass(frozen=True, kw_only=True)
class SwitchTransformersSpec(T5Spec):
    feed_forward_proj: ClassVar[str | None] = None  # not read: plain dense_act_fn MLPs
    gated_ffn: bool = const(False)
    num_experts: int = dim("num_experts", 8)
    expert_capacity: int = dim("expert_capacity", 64)
    router_bias: bool = hf("router_bias", False)
    num_sparse_encoder_layers: int = hf("num_sparse_encoder_layers", 3)
    num_sparse_decoder_layers: int = hf("num_sparse_decoder_layers", 3)
    hf_model_type: str = const("switch_transformers")


@_ser
@register_backbone("switch_transformers")
class SwitchTransformersBackbone(T5Backbone):
    hf_architecture = "SwitchTransformersModel"
    spec_cls = SwitchTransformersSpec
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, num_experts=8, expert_capacity=64, router_bias=False,
                 num_sparse_encoder_layers=3, num_sparse_decoder_layers=3,
                 hf_model_type="switch_transformers", **kwargs):
        self.num_experts = num_experts
        self.expert_capacity = expert_capacity
        self.router_bias = router_bias
        self.num_sparse_encoder_layers = num_sparse_encoder_layers
        self.num_sparse_decoder_layers = num_sparse_decoder_layers
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)

    def block_extra_options(self, index, cross):
        options = super().block_extra_options(index, cross)
        layers, sparse = ((self.num_decoder_layers, self.num_sparse_decoder_layers) if cross
                          else (self.num_encoder_layers, self.num_sparse_encoder_layers))
        if is_sparse(index, sparse_step(layers, sparse)):
            options.update(num_experts=self.num_experts, experts_per_token=1, normalize_top_k=False,
                           expert_capacity=self.expert_capacity, router_bias=self.router_bias)
        return options

    def t5_names(self, side):
        return SWITCH_NAMES

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in SWITCH_FIELDS})
        return config


@_ser
@register_task(SwitchTransformersBackbone, "Seq2SeqLM", ("SwitchTransformersForConditionalGeneration",))
class SwitchTransformersSeq2SeqLM(T5Seq2SeqLM):
    pass


__all__ = ["SwitchTransformersBackbone", "SwitchTransformersSeq2SeqLM"]
