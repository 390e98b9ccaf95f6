"""LiLT (model_type ``lilt``): a RoBERTa-shaped text stream beside a narrow layout stream.

The layout stream (width ``hidden_size // channel_shrink_ratio``) starts from each token's box:
x0, y0, x1, y1, height and width tables (``hidden_size // 6`` wide each), concatenated, projected
(``box_linear_embeddings``) and added to a 1D position table indexed like the text positions
(RoBERTa's pad-aware ids), then normalised. Every layer runs both streams through one shared
attention map ("bi-directional attention complementation"): the text and layout query-key scores,
each scaled by its own head width, are summed, and the same softmax weights mix the text values
and the layout values; each stream then has its own output projection, LayerNorms and feed-forward
(the layout one ``intermediate_size // channel_shrink_ratio`` wide). The model returns the text
stream. ``bbox`` is (batch, seq, 4) integer boxes in 0..1000; absent, every box is [0, 0, 0, 0].
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.activations import get_activation
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec, dense_rules, norm_rules
from keras_models.models.encoder.layoutlm import BOX_MAX, _BoxChecks, check_boxes
from keras_models.models.encoder.tasks import RobertaShapedTextClassifier, family_task
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import const, dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import QuestionAnswerer, TokenClassifier


@dataclass(frozen=True, kw_only=True)
class LiltSpec(EncoderSpec):
    """LiltConfig: BERT's keys (pad 0), ``channel_shrink_ratio`` and ``max_2d_position_embeddings``;
    text positions counted from ``pad_token_id + 1`` as in RoBERTa."""

    channel_shrink_ratio: int = dim("channel_shrink_ratio", 4)
    max_2d_position_embeddings: int = dim("max_2d_position_embeddings", 1024)
    position_mode: str = const("padding_offset")

    def validate(self, source="config.json"):
        super().validate(source)
        r, h = self.channel_shrink_ratio, self.hidden_size
        if h % 6:
            raise ConfigError(f"{source}: hidden_size={h} must be a multiple of 6 (six box tables of "
                              "hidden_size // 6 make the layout input)")
        head = h // self.num_heads
        if (h // r) != self.num_heads * (head // r) or head // r == 0:
            raise ConfigError(f"{source}: channel_shrink_ratio={r} does not split hidden_size={h} into "
                              f"num_attention_heads={self.num_heads} layout heads")
        if self.intermediate_size // r == 0:
            raise ConfigError(f"{source}: intermediate_size={self.intermediate_size} is smaller than "
                              f"channel_shrink_ratio={r}")

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["bbox"] = np.zeros(inputs["input_ids"].shape + (4,), "int32")
        return inputs


def _split(x, heads):
    b, s = ops.shape(x)[0], ops.shape(x)[1]
    return ops.transpose(ops.reshape(x, (b, s, heads, -1)), (0, 2, 1, 3))


def _merge(x):
    x = ops.transpose(x, (0, 2, 1, 3))
    b, s = ops.shape(x)[0], ops.shape(x)[1]
    return ops.reshape(x, (b, s, -1))


@keras.saving.register_keras_serializable(package="keras_models")
class LiltBlock(keras.layers.Layer):
    """One LiLT layer: text and layout streams over one shared attention map (post-norm)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, shrink, hidden_act="gelu",
                 layer_norm_eps=1e-12, dropout=0.0, attention_dropout=0.0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.shrink, self.hidden_act, self.layer_norm_eps = shrink, hidden_act, layer_norm_eps
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        self.head_dim = hidden_size // num_heads
        self.layout_size = hidden_size // shrink
        self.layout_head_dim = self.head_dim // shrink
        c = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        n = dict(epsilon=layer_norm_eps, dtype=self.dtype_policy)
        D = keras.layers.Dense
        self.query, self.key, self.value = (D(hidden_size, name=k, **c) for k in ("query", "key", "value"))
        self.layout_query, self.layout_key, self.layout_value = (
            D(self.layout_size, name=f"layout_{k}", **c) for k in ("query", "key", "value"))
        self.attn_out = D(hidden_size, name="attn_out", **c)
        self.layout_attn_out = D(self.layout_size, name="layout_attn_out", **c)
        self.attn_norm = keras.layers.LayerNormalization(name="attn_norm", **n)
        self.layout_attn_norm = keras.layers.LayerNormalization(name="layout_attn_norm", **n)
        self.intermediate = D(intermediate_size, name="intermediate", **c)
        self.output_dense = D(hidden_size, name="output", **c)
        self.output_norm = keras.layers.LayerNormalization(name="output_norm", **n)
        self.layout_intermediate = D(intermediate_size // shrink, name="layout_intermediate", **c)
        self.layout_output = D(self.layout_size, name="layout_output", **c)
        self.layout_output_norm = keras.layers.LayerNormalization(name="layout_output_norm", **n)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.attention_dropout_layer = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        text = tuple(input_shape[:-1]) + (self.hidden_size,)
        layout = tuple(input_shape[:-1]) + (self.layout_size,)
        for layer in (self.query, self.key, self.value, self.attn_out, self.attn_norm, self.intermediate,
                      self.output_norm):
            layer.build(text)
        for layer in (self.layout_query, self.layout_key, self.layout_value, self.layout_attn_out,
                      self.layout_attn_norm, self.layout_intermediate, self.layout_output_norm):
            layer.build(layout)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.layout_output.build(tuple(input_shape[:-1]) + (self.intermediate_size // self.shrink,))
        self.built = True

    def call(self, x, layout, bias=None, training=False):
        h = self.num_heads
        q, k, v = (_split(d(x), h) for d in (self.query, self.key, self.value))
        lq, lk, lv = (_split(d(layout), h) for d in (self.layout_query, self.layout_key, self.layout_value))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / ops.cast(np.sqrt(self.head_dim), x.dtype)
        scores = scores + ops.matmul(lq, ops.transpose(lk, (0, 1, 3, 2))) / ops.cast(
            np.sqrt(self.layout_head_dim), x.dtype)
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = self.attention_dropout_layer(ops.softmax(scores, axis=-1), training=training)
        a = self.attn_out(_merge(ops.matmul(probs, v)))
        la = self.layout_attn_out(_merge(ops.matmul(probs, lv)))
        x = self.attn_norm(x + self.dropout(a, training=training))
        layout = self.layout_attn_norm(layout + self.dropout(la, training=training))
        f = self.output_dense(self.act(self.intermediate(x)))
        lf = self.layout_output(self.act(self.layout_intermediate(layout)))
        x = self.output_norm(x + self.dropout(f, training=training))
        layout = self.layout_output_norm(layout + self.dropout(lf, training=training))
        return x, layout

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 shrink=self.shrink, hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps,
                 dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("lilt")
class LiltBackbone(EncoderBackbone):
    """Inputs: ``input_ids``, ``bbox`` (batch, seq, 4), ``attention_mask``, ``token_type_ids``."""

    spec_cls = LiltSpec
    base_model_prefix = "lilt"
    hf_architecture = "LiltModel"
    hf_model_type = "lilt"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        c = dict(dtype=self.dtype_policy)
        self.layout_size = self.hidden_size // self.channel_shrink_ratio
        self.box_tables = {
            axis: keras.layers.Embedding(self.max_2d_position_embeddings, self.hidden_size // 6,
                                         embeddings_initializer=init, name=f"layout_{axis}_embedding", **c)
            for axis in ("x", "y", "h", "w")
        }
        self.box_position_embedding = keras.layers.Embedding(
            self.max_position_embeddings, self.layout_size, embeddings_initializer=init,
            name="layout_position_embedding", **c)
        self.box_linear = keras.layers.Dense(self.layout_size, kernel_initializer=init, name="layout_linear", **c)
        self.layout_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_eps, name="layout_norm", **c)

    def make_block(self, index, init):
        return LiltBlock(self.hidden_size, self.num_heads, self.intermediate_size, self.channel_shrink_ratio,
                         hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                         attention_dropout=self.attention_dropout, kernel_initializer=init, name=f"block_{index}",
                         dtype=self.dtype_policy)

    def layout_embed(self, inputs, positions, training=False):
        bbox = inputs.get("bbox")
        if bbox is None:
            x0 = y0 = x1 = y1 = ops.zeros_like(ops.cast(inputs["input_ids"], "int32"))
        else:
            bbox = ops.cast(bbox, "int32")
            x0, y0, x1, y1 = bbox[..., 0], bbox[..., 1], bbox[..., 2], bbox[..., 3]
        t = self.box_tables
        parts = [t["x"](x0), t["y"](y0), t["x"](x1), t["y"](y1), t["h"](y1 - y0), t["w"](x1 - x0)]
        e = self.box_linear(ops.concatenate(parts, axis=-1)) + self.box_position_embedding(positions)
        return self.embeddings_dropout(self.layout_norm(e), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        positions = inputs.get("position_ids")
        if positions is None:
            positions = self.position_ids(inputs["input_ids"])
        layout = self.layout_embed(inputs, positions, training=training)
        bias = self.attention_bias(inputs, x)
        for index in self.layer_schedule:
            x, layout = self.blocks[index](x, layout, bias, training=training)
        return x

    def check_host_inputs(self, inputs, where="call"):
        if isinstance(inputs, dict) and isinstance(inputs.get("bbox"), (np.ndarray, list, tuple)):
            check_boxes(inputs["bbox"], min(BOX_MAX, self.max_2d_position_embeddings - 1), f"{where}: bbox")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    hf_known_unused = ("*pooler.dense.*",)

    def block_rules(self, prefix, block):
        r = []
        for name, layer in (("attention.self.query", block.query), ("attention.self.key", block.key),
                            ("attention.self.value", block.value),
                            ("attention.self.layout_query", block.layout_query),
                            ("attention.self.layout_key", block.layout_key),
                            ("attention.self.layout_value", block.layout_value),
                            ("attention.output.dense", block.attn_out),
                            ("attention.layout_output.dense", block.layout_attn_out),
                            ("intermediate.dense", block.intermediate), ("output.dense", block.output_dense),
                            ("layout_intermediate.dense", block.layout_intermediate),
                            ("layout_output.dense", block.layout_output)):
            r += dense_rules(prefix + name, layer)
        for name, norm in (("attention.output.LayerNorm", block.attn_norm),
                           ("attention.layout_output.LayerNorm", block.layout_attn_norm),
                           ("output.LayerNorm", block.output_norm),
                           ("layout_output.LayerNorm", block.layout_output_norm)):
            r += norm_rules(prefix + name, norm)
        return r

    def weight_rules(self):
        r = super().weight_rules()
        r += [Rule(f"layout_embeddings.{axis}_position_embeddings.weight", layer.embeddings)
              for axis, layer in self.box_tables.items()]
        r.append(Rule("layout_embeddings.box_position_embeddings.weight", self.box_position_embedding.embeddings))
        r += dense_rules("layout_embeddings.box_linear_embeddings", self.box_linear)
        r += norm_rules("layout_embeddings.LayerNorm", self.layout_norm)
        return r


@family_task(LiltBackbone, "TextClassifier", "LiltForSequenceClassification")
class LiltTextClassifier(_BoxChecks, RobertaShapedTextClassifier):
    pass


@family_task(LiltBackbone, "TokenClassifier", "LiltForTokenClassification")
class LiltTokenClassifier(_BoxChecks, TokenClassifier):
    pass


@family_task(LiltBackbone, "QuestionAnswerer", "LiltForQuestionAnswering")
class LiltQuestionAnswerer(_BoxChecks, QuestionAnswerer):
    pass


@family_task(LiltBackbone, "TextEmbedder", "LiltModel")
class LiltTextEmbedder(_BoxChecks, TextEmbedder):
    pass


__all__ = ["LiltBackbone", "LiltTextClassifier", "LiltTokenClassifier", "LiltQuestionAnswerer",
           "LiltTextEmbedder"]
