"""LongT5: T5 whose encoder self-attention is local (``encoder_attention_type="local"``: tokens
see ``local_radius`` neighbours each side) or transient-global (local plus attention to per-block
aggregates of ``global_block_size`` tokens, with their own bucketed relative bias and norm).
The decoder is T5's. Computed densely with additive biases, which gives LongT5's blocked result.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.bucketed_position_bias import BucketedPositionBias, relative_position_bucket
from keras_models.layers.masks import mask_value, padding_bias
from keras_models.layers.transient_global_attention import transient_global_blocks
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.t5.backbone import T5_NAMES, T5Backbone, T5Spec
from keras_models.models.t5.tasks import T5Seq2SeqLM
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
LONGT5_FIELDS = ("encoder_attention_type", "local_radius", "global_block_size")
_ATTENTION_NAMES = {"local": "0.LocalSelfAttention", "transient-global": "0.TransientGlobalSelfAttention"}


@dataclass(frozen=True, kw_only=True)
class LongT5Spec(T5Spec):
    unsupported: ClassVar[dict] = {"encoder_attention_type": tuple(_ATTENTION_NAMES)}
    encoder_attention_type: str = hf("encoder_attention_type", "local")
    local_radius: int = hf("local_radius", 127)
    global_block_size: int = dim("global_block_size", 16)
    hf_model_type: str = const("longt5")


@_ser
@register_backbone("longt5")
class LongT5Backbone(T5Backbone):
    hf_architecture = "LongT5Model"
    spec_cls = LongT5Spec
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, encoder_attention_type="local", local_radius=127, global_block_size=16,
                 hf_model_type="longt5", **kwargs):
        if encoder_attention_type not in _ATTENTION_NAMES:
            raise ConfigError(f"encoder_attention_type={encoder_attention_type!r} is not one of "
                              f"{sorted(_ATTENTION_NAMES)}")
        self.transient_global = encoder_attention_type == "transient-global"
        self.encoder_block_options = {"self_attention_kind": "transient_global"} if self.transient_global else {}
        super().__init__(*args, hf_model_type=hf_model_type, **kwargs)
        self.encoder_attention_type = encoder_attention_type
        self.local_radius = local_radius
        self.global_block_size = global_block_size
        self.global_relative_bias = None
        if self.transient_global:
            self.global_relative_bias = BucketedPositionBias(
                self.encoder_heads, self.relative_attention_num_buckets,
                self.relative_attention_max_distance, bidirectional=True,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=self.initializer_range),
                name="encoder_global_relative_bias", dtype=self.dtype_policy)
            self.global_relative_bias.build()

    def encoder_position_bias(self, seq_len, layer):
        """T5's bucketed bias, restricted to keys within ``local_radius`` of the query."""
        bias = super().encoder_position_bias(seq_len, layer)
        pos = ops.arange(seq_len, dtype="int32")
        near = ops.abs(pos[:, None] - pos[None, :]) <= self.local_radius
        return bias + ops.cast(ops.where(near, 0.0, mask_value(bias.dtype)), bias.dtype)[None, None]

    def encode(self, input_ids, attention_mask=None, training=False):
        if not self.transient_global:
            return super().encode(input_ids, attention_mask, training=training)
        x = self.embed_encoder(input_ids, training=training)
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        t = ops.shape(x)[1]
        bias = self.encoder_position_bias(t, 0) + padding_bias(attention_mask, x.dtype)
        num_blocks = t // self.global_block_size
        if num_blocks > 0:
            ids, valid = transient_global_blocks(attention_mask, self.global_block_size)
            relative = ops.arange(num_blocks, dtype="int32")[None, None, :] - ids[:, :, None]
            buckets = relative_position_bucket(relative, True, self.relative_attention_num_buckets,
                                               self.relative_attention_max_distance)
            side = ops.transpose(self.global_relative_bias(buckets), (0, 3, 1, 2))
            # real tokens see the aggregates that hold tokens (padding tokens: the others)
            allowed = ops.equal(ops.cast(attention_mask, "bool")[:, :, None], valid[:, None, :])
            side = side + ops.cast(ops.where(allowed, 0.0, mask_value(x.dtype)), side.dtype)[:, None]
            blocks = ops.cast(ops.equal(ids[:, :, None], ops.arange(num_blocks, dtype="int32")), x.dtype)
            bias = {"local": bias, "side": side, "blocks": blocks}
        for blk in self.encoder_blocks:
            x = blk(x, bias, training=training)
        x = self.encoder_final_norm(x)
        return self.embedding_dropout(x, training=training)

    # --- HF conversion (config.json: LongT5Spec) -------------------------------------------------
    def t5_names(self, side):
        if side == "decoder":
            return T5_NAMES
        return {**T5_NAMES, "self_attention": (_ATTENTION_NAMES[self.encoder_attention_type],
                                               ("q", "k", "v", "o"))}

    def weight_rules(self):
        r = super().weight_rules()
        if self.transient_global:
            prefix = "encoder.block.{}.layer.0.TransientGlobalSelfAttention"
            r.append(Rule(f"{prefix.format(0)}.global_relative_attention_bias.weight",
                          self.global_relative_bias.embeddings))
            for i, blk in enumerate(self.encoder_blocks):
                r.append(Rule(f"{prefix.format(i)}.global_input_layer_norm.weight",
                              blk.self_attention.global_input_norm.scale))
        return r

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in LONGT5_FIELDS})
        return config


@_ser
@register_task(LongT5Backbone, "Seq2SeqLM", ("LongT5ForConditionalGeneration",))
class LongT5Seq2SeqLM(T5Seq2SeqLM):
    pass


__all__ = ["LongT5Backbone", "LongT5Seq2SeqLM"]
