"""Switch Transformers: T5 (v1.0 layout, ``mlp.wi`` / ``mlp.wo`` names) in which every
``encoder_sparse_step``-th / ``decoder_sparse_step``-th feed-forward is a sparse mixture of
``num_experts`` experts with top-1 routing (output scaled by the router probability) and
``expert_capacity`` tokens per expert along each sequence (later tokens skip the experts).
"""

import keras

from keras_models.models.registry import register_backbone, register_task
from keras_models.models.t5.backbone import T5_NAMES, T5Backbone
from keras_models.models.t5.tasks import T5Seq2SeqLM

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


@_ser
@register_backbone("switch_transformers")
class SwitchTransformersBackbone(T5Backbone):
    hf_architecture = "SwitchTransformersModel"
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

    @classmethod
    def config_from_hf(cls, hf):
        c = super().config_from_hf(hf)
        c.update(num_experts=hf.get("num_experts", 8), expert_capacity=hf.get("expert_capacity", 64),
                 router_bias=hf.get("router_bias", False),
                 num_sparse_encoder_layers=hf.get("num_sparse_encoder_layers", 3),
                 num_sparse_decoder_layers=hf.get("num_sparse_decoder_layers", 3))
        return c

    def config_to_hf(self):
        c = super().config_to_hf()
        for key in ("feed_forward_proj", "is_gated_act"):
            c.pop(key, None)
        c.update({name: getattr(self, name) for name in SWITCH_FIELDS})
        return c

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
