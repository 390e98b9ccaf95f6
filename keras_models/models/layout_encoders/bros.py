"""BROS (model_type ``bros``): BERT whose attention also scores each query against the 2D offset
to every key's box.

``bbox`` is (batch, seq, 4) boxes (x0, y0, x1, y1) or (batch, seq, 8) quadrilaterals, as floats
normalised to 0..1; four coordinates become the eight corners (x0, y0, x1, y0, x1, y1, x0, y1).
The boxes are scaled by ``bbox_scale``; for every (query i, key j) pair the offsets box_j - box_i of
the first ``dim_bbox`` coordinates each get sinusoidal features (x and y frequencies), which are
concatenated and projected (no bias) to one head's width. Attention scores are
(q_i . k_j + q_i . p_ij) / sqrt(head_dim); the rest is BERT. ``bbox`` is required, as in
Transformers.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.tasks import family_task
from keras_models.models.layout_encoders.lilt import _merge, _split
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import dim, hf
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import TokenClassifier

QUAD = [0, 1, 2, 1, 2, 3, 0, 3]  # (x0, y0, x1, y1) -> the four corners


@dataclass(frozen=True, kw_only=True)
class BrosSpec(EncoderSpec):
    """BrosConfig: BERT's keys plus the box features (``dim_bbox``, ``bbox_scale``) and the SPADE
    heads' settings (read and written back; the token classifier does not use them)."""

    dim_bbox: int = dim("dim_bbox", 8)
    bbox_scale: float = hf("bbox_scale", 100.0)
    n_relations: int = dim("n_relations", 1)
    classifier_dropout_prob: float = hf("classifier_dropout_prob", 0.1)

    def validate(self, source="config.json"):
        super().validate(source)
        width = self.hidden_size // 4
        per = width // self.dim_bbox
        if self.dim_bbox > 8:
            raise ConfigError(f"{source}: dim_bbox={self.dim_bbox}: a box has at most 8 coordinates")
        if per == 0 or per % 2 or per * self.dim_bbox != width:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} // 4 must split into dim_bbox="
                              f"{self.dim_bbox} even-sized sinusoid blocks")
        if not math.isfinite(self.bbox_scale):
            raise ConfigError(f"{source}: bbox_scale={self.bbox_scale} is not finite")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["bbox"] = np.zeros(inputs["input_ids"].shape + (4,), "float32")
        return inputs


@keras.saving.register_keras_serializable(package="keras_models")
class BrosBlock(keras.layers.Layer):
    """BERT's post-norm block with BROS's box-offset term in the attention scores."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 dropout=0.0, attention_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        self.head_dim = hidden_size // num_heads
        c = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        n = dict(epsilon=layer_norm_eps, dtype=self.dtype_policy)
        D = keras.layers.Dense
        self.query, self.key, self.value = (D(hidden_size, name=k, **c) for k in ("query", "key", "value"))
        self.attn_out = D(hidden_size, name="attn_out", **c)
        self.attn_norm = keras.layers.LayerNormalization(name="attn_norm", **n)
        self.intermediate = D(intermediate_size, name="intermediate", **c)
        self.output_dense = D(hidden_size, name="output", **c)
        self.output_norm = keras.layers.LayerNormalization(name="output_norm", **n)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.attention_dropout_layer = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.attn_out, self.attn_norm, self.intermediate,
                      self.output_norm):
            layer.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.built = True

    def call(self, x, box_features, bias=None, training=False):
        q, k, v = (_split(d(x), self.num_heads) for d in (self.query, self.key, self.value))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) + ops.einsum("bnid,bijd->bnij", q, box_features)
        scores = scores / ops.cast(np.sqrt(self.head_dim), scores.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = self.attention_dropout_layer(ops.softmax(scores, axis=-1), training=training)
        a = self.attn_out(_merge(ops.matmul(probs, v)))
        x = self.attn_norm(x + self.dropout(a, training=training))
        f = self.output_dense(self.act(self.intermediate(x)))
        return self.output_norm(x + self.dropout(f, training=training))

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bros")
class BrosBackbone(EncoderBackbone):
    """Inputs: ``input_ids``, ``bbox`` (batch, seq, 4 or 8; floats in 0..1), ``attention_mask``,
    ``token_type_ids``."""

    spec_cls = BrosSpec
    base_model_prefix = "bros"
    hf_architecture = "BrosModel"
    hf_model_type = "bros"
    verified_backends = ("jax", "torch", "tensorflow")
    hf_known_unused = ()

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        c = dict(dtype=self.dtype_policy)
        per = self.hidden_size // 4 // self.dim_bbox
        freq = (1.0 / (10000 ** (np.arange(0.0, per, 2.0, dtype=np.float32) / per))).astype("float32")
        self.inv_freq = {}
        for axis in ("x", "y"):
            self.inv_freq[axis] = self.add_weight(shape=(per // 2,), name=f"{axis}_inv_freq", trainable=False,
                                                  initializer=keras.initializers.Constant(freq))
        self.box_projection = keras.layers.Dense(self.head_dim, use_bias=False, kernel_initializer=init,
                                                 name="box_projection", **c)
        self.box_projection.build((None, self.hidden_size // 4))
        # BrosModel's pooler: carried so that a checkpoint round-trips whole (the outputs do not use it)
        self.pooler = keras.layers.Dense(self.hidden_size, kernel_initializer=init, name="pooler", **c)
        self.pooler.build((None, self.hidden_size))

    def make_block(self, index, init):
        return BrosBlock(self.hidden_size, self.num_heads, self.intermediate_size, hidden_act=self.hidden_act,
                         layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                         attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
                         dtype=self.dtype_policy)

    def box_features(self, bbox, dtype):
        """(batch, seq, seq, head_dim): projected sinusoids of every key box minus query box."""
        bbox = ops.cast(bbox, dtype)
        if bbox.shape[-1] == 4:
            bbox = ops.take(bbox, np.array(QUAD, "int32"), axis=-1)
        bbox = bbox * ops.cast(self.bbox_scale, dtype)
        rel = bbox[:, None, :, :] - bbox[:, :, None, :]  # [b, i, j] = box_j - box_i
        parts = []
        for c in range(self.dim_bbox):
            angle = rel[..., c:c + 1] * ops.cast(self.inv_freq["x" if c % 2 == 0 else "y"], dtype)
            parts += [ops.sin(angle), ops.cos(angle)]
        return self.box_projection(ops.concatenate(parts, axis=-1))

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        boxes = self.box_features(inputs["bbox"], x.dtype)
        bias = self.attention_bias(inputs, x)
        for index in self.layer_schedule:
            x = self.blocks[index](x, boxes, bias, training=training)
        return x

    def check_host_inputs(self, inputs, where="call"):
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            return
        if inputs.get("bbox") is None:
            raise InputError(f"{where}: BROS needs 'bbox' (batch, seq, 4 or 8 coordinates in 0..1)")
        bbox = inputs["bbox"]
        if isinstance(bbox, (np.ndarray, list, tuple)):
            arr = np.asarray(bbox)
            if arr.ndim != 3 or arr.shape[-1] not in (4, 8):
                raise InputError(f"{where}: bbox must be (batch, seq, 4) or (batch, seq, 8), got shape {arr.shape}")
            if arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
                raise InputError(f"{where}: bbox must hold finite numbers (coordinates normalised to 0..1)")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def block_rules(self, prefix, block):
        r = []
        for name, layer in (("attention.self.query", block.query), ("attention.self.key", block.key),
                            ("attention.self.value", block.value), ("attention.output.dense", block.attn_out),
                            ("intermediate.dense", block.intermediate), ("output.dense", block.output_dense)):
            r += dense_rules(prefix + name, layer)
        r += norm_rules(prefix + "attention.output.LayerNorm", block.attn_norm)
        r += norm_rules(prefix + "output.LayerNorm", block.output_norm)
        return r

    def weight_rules(self):
        r = super().weight_rules()
        for axis in ("x", "y"):
            r.append(Rule(f"bbox_embeddings.bbox_sinusoid_emb.{axis}_pos_emb.inv_freq", self.inv_freq[axis],
                          optional=True))
        r += dense_rules("bbox_embeddings.bbox_projection", self.box_projection)
        r += [Rule(n, v, op, optional=True) for n, v, op in
              ((x.hf, x.variable, x.op) for x in dense_rules("pooler.dense", self.pooler))]
        return r


class _BrosBoxChecks:
    def __call__(self, inputs, *args, **kwargs):
        self.backbone.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)


@family_task(BrosBackbone, "TokenClassifier", "BrosForTokenClassification")
class BrosTokenClassifier(_BrosBoxChecks, TokenClassifier):
    pass


@family_task(BrosBackbone, "TextEmbedder", "BrosModel")
class BrosTextEmbedder(_BrosBoxChecks, TextEmbedder):
    pass


__all__ = ["BrosBackbone", "BrosTokenClassifier", "BrosTextEmbedder"]
