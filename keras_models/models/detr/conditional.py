"""Conditional DETR (model_type ``conditional_detr``): DETR's ResNet, positions and encoder
(:class:`~keras_models.models.detr.backbone.DetrBackbone`) with a conditional decoder.

* Each query has a reference point: ``sigmoid(ref_point_head(query position))`` (a 2-layer MLP),
  embedded as a sine of its (x, y) (``[y | x]``, :func:`coordinate_sine`), scaled from the second
  layer on by ``query_scale(hidden)`` (a 2-layer MLP) and projected per layer (``ca_qpos_sine_proj``).
* Decoder self-attention: content and position projections summed (``sa_qcontent_proj`` +
  ``sa_qpos_proj`` ...). Cross-attention: per head, the content query (plus, in the first layer
  only, the projected query position) is concatenated with the projected sine embedding, the key
  (plus, first layer, the projected image position) with the projected image position, so scores
  are scaled by ``(2 * head_dim) ** -0.5``.
* Heads (:class:`ConditionalDetrObjectDetector`): sigmoid class logits without a "no object" class;
  the box MLP's centre is offset by the inverse sigmoid of the reference point.
* ``auxiliary_loss``: every decoder layer's output is LayerNormed before the next and returned
  (``intermediate_hidden_states``); the training loss scores the heads on each layer but the last
  (``loss_ce_0`` ...), all offset by the same reference points, as Transformers does.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.detr.backbone import DetrBackbone, DetrSpec
from keras_models.models.detr.layers import _Layer, attend, coordinate_sine, inverse_sigmoid, split_heads
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import dim
from keras_models.tasks.object_detector import ObjectDetector, PredictionMLP

_ser = keras.saving.register_keras_serializable(package="keras_models")
_SA = ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj")
_CA = ("ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj", "ca_qpos_sine_proj")


@_ser
class ConditionalDecoderLayer(_Layer):
    """Post-norm decoder layer with separate content / position projections; ``first``: the layer
    that also adds the query positions to the cross-attention's queries (``ca_qpos_proj``)."""

    def __init__(self, *args, first=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.first = first
        common = dict(dtype=self.dtype_policy)
        names = _SA + _CA + (("ca_qpos_proj",) if first else ()) + ("self_attn_out", "encoder_attn_out")
        self.proj = {n: keras.layers.Dense(self.hidden_size, name=n, **common) for n in names}
        self.drop_attn = keras.layers.Dropout(self.attention_dropout, **common)
        self.self_attn_layer_norm = self.norm("self_attn_layer_norm")
        self.encoder_attn_layer_norm = self.norm("encoder_attn_layer_norm")
        self.final_layer_norm = self.norm("final_layer_norm")

    def _sublayers(self):
        return tuple(self.proj.values()) + (self.self_attn_layer_norm, self.encoder_attn_layer_norm,
                                            self.final_layer_norm)

    def heads(self, x):
        return split_heads(x, self.num_heads)

    def call(self, x, query_pos, query_sine, memory, memory_pos, bias=None, training=False):
        p, h = self.proj, self.heads
        q = p["sa_qcontent_proj"](x) + p["sa_qpos_proj"](query_pos)
        k = p["sa_kcontent_proj"](x) + p["sa_kpos_proj"](query_pos)
        out = attend(h(q), h(k), h(p["sa_v_proj"](x)), None, self.drop_attn, training)
        x = self.self_attn_layer_norm(x + self.drop(p["self_attn_out"](out), training=training))

        q, k, k_pos = p["ca_qcontent_proj"](x), p["ca_kcontent_proj"](memory), p["ca_kpos_proj"](memory_pos)
        if self.first:
            q, k = q + p["ca_qpos_proj"](query_pos), k + k_pos
        q = ops.concatenate([h(q), h(p["ca_qpos_sine_proj"](query_sine))], axis=-1)
        k = ops.concatenate([h(k), h(k_pos)], axis=-1)
        out = attend(q, k, h(p["ca_v_proj"](memory)), bias, self.drop_attn, training)
        x = self.encoder_attn_layer_norm(x + self.drop(p["encoder_attn_out"](out), training=training))
        return self.final_layer_norm(x + self.mlp(x, training))

    def rules(self, prefix):
        hf = {"self_attn_out": "self_attn.out_proj", "encoder_attn_out": "encoder_attn.out_proj"}
        r = [rule for n, d in self.proj.items() for rule in dense_rules(f"{prefix}.{hf.get(n, n)}", d)]
        for name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            r += norm_rules(f"{prefix}.{name}", getattr(self, name))
        return r + self.mlp_rules(prefix)

    def get_config(self):
        c = super().get_config()
        c.update(first=self.first)
        return c


@dataclass(frozen=True, kw_only=True)
class ConditionalDetrSpec(DetrSpec):
    ignored = DetrSpec.ignored + ("cls_loss_coefficient", "focal_alpha")
    num_queries: int = dim("num_queries", 300)


@_ser
@register_backbone("conditional_detr")
class ConditionalDetrBackbone(DetrBackbone):
    """Adds ``reference_points`` (batch, queries, 2) to DETR's outputs."""

    spec_cls = ConditionalDetrSpec
    hf_architecture = "ConditionalDetrModel"

    def make_decoder_layer(self, index, **kwargs):
        s = self.spec
        return ConditionalDecoderLayer(s.d_model, s.decoder_attention_heads, s.decoder_ffn_dim, first=index == 0,
                                       **kwargs)

    def build_extra(self):
        d, common = self.spec.d_model, dict(dtype=self.dtype_policy)
        self.query_scale = PredictionMLP(d, d, 2, name="query_scale", **common)
        self.ref_point_head = PredictionMLP(d, 2, 2, name="ref_point_head", **common)
        self.query_scale.build((None, None, d))
        self.ref_point_head.build((None, None, d))

    def decode(self, memory, pos, bias, training=False):
        query_pos = ops.zeros_like(memory[:, :1, :]) + ops.cast(self.query_position_embeddings, memory.dtype)[None]
        reference = ops.sigmoid(self.ref_point_head(query_pos))
        sine = coordinate_sine(reference, self.spec.d_model // 2)
        x = ops.zeros_like(query_pos)
        states = []
        for i, layer in enumerate(self.decoder_layers):
            scaled = sine if i == 0 else sine * self.query_scale(x)
            x = layer(x, query_pos, scaled, memory, pos, bias, training=training)
            if self.spec.auxiliary_loss:
                x = self.decoder_norm(x)
                states.append(x)
        extra = {"reference_points": reference}
        if states:  # auxiliary_loss: every layer's (normalised) output, as Transformers' intermediate_hidden_states
            extra["intermediate_hidden_states"] = ops.stack(states)
        return self.decoder_norm(x), extra

    def extra_rules(self):
        return self.query_scale.rules("decoder.query_scale") + self.ref_point_head.rules("decoder.ref_point_head")


@_ser
@register_task(ConditionalDetrBackbone, "ObjectDetector", ("ConditionalDetrForObjectDetection",))
class ConditionalDetrObjectDetector(ObjectDetector):
    no_object_class = False
    loss_defaults = {"class_cost": 2}  # ConditionalDetrConfig's; the loss is the focal kind
    auxiliary_loss_supported = True  # every layer's boxes offset by the same (first) reference points

    def box_logits(self, states, outputs):
        ref = inverse_sigmoid(outputs["reference_points"])
        return self.bbox_head(states) + ops.concatenate([ref, ops.zeros_like(ref)], axis=-1)


__all__ = ["ConditionalDetrSpec", "ConditionalDetrBackbone", "ConditionalDetrObjectDetector"]
