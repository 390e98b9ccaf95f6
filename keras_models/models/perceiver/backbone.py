"""Perceiver IO (``model_type`` "perceiver") over text: learned latents read the inputs through one
cross-attention layer, then self-attention layers over the latents.

* Text input: byte embeddings (``vocab_size`` x ``d_model``) plus learned positions.
* ``num_latents`` latents of width ``d_latents`` (a learned table, the same for every example).
* Every layer (Transformers' ``PerceiverLayer``): LayerNorm of the queries (and, for
  cross-attention, of the keys / values), attention with its own q/k and v widths, an output
  projection, the query residual (optional for the encoder's cross-attention: ``use_query_residual``),
  then a pre-norm MLP widened by ``*_widening_factor`` with a residual. Its LayerNorms use torch's
  default epsilon (1e-5): config.json's ``layer_norm_eps`` is not read by Transformers' Perceiver.
* The ``num_self_attends_per_block`` self-attention layers run ``num_blocks`` times with shared
  weights. The backbone returns the latents (batch, num_latents, d_latents).

Images (the architectures named in config.json pick the input preprocessor, ``input_preprocessor``):
``PerceiverForImageClassificationLearned`` / ``...Fourier`` / ``...ConvProcessing`` and
``PerceiverForOpticalFlow`` read ``pixel_values`` through preprocessors.py instead of the byte
embeddings; the encoder's cross-attention then reads that preprocessor's channels (its q/k width
follows them when ``cross_attention_shape_for_attention`` is "kv"). ``d_model`` is not read then.

Decoders (the tasks' heads) are cross-attention layers whose queries are learned position tables
(or, for optical flow, the preprocessed input) and whose keys / values are the latents; see tasks.py.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.masks import padding_bias
from keras_models.models.backbone import SpecBackbone
from keras_models.models.perceiver.preprocessors import CHANNELS, PerceiverImagePreprocessor
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, const, dim, hf

TORCH_LN_EPS = 1e-5  # nn.LayerNorm's default, what Transformers' Perceiver layers use
# Transformers' architectures -> the input preprocessor their PerceiverModel is built with
PREPROCESSOR_BY_ARCHITECTURE = {
    "PerceiverForImageClassificationLearned": "conv1x1",
    "PerceiverForImageClassificationFourier": "pixels",
    "PerceiverForImageClassificationConvProcessing": "conv",
    "PerceiverForOpticalFlow": "patches",
}
UNSUPPORTED_ARCHITECTURES = ("PerceiverForMultimodalAutoencoding",)


def _size_pair(value):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError("expected [height, width], two positive integers")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class PerceiverSpec(Spec):
    """PerceiverConfig (Transformers' defaults); the input preprocessor from architectures."""

    num_latents: int = dim("num_latents", 256)
    d_latents: int = dim("d_latents", 1280)
    d_model: int = dim("d_model", 768)
    num_blocks: int = dim("num_blocks", 1)
    num_self_attends_per_block: int = dim("num_self_attends_per_block", 26)
    num_self_attention_heads: int = dim("num_self_attention_heads", 8)
    num_cross_attention_heads: int = dim("num_cross_attention_heads", 8)
    qk_channels: int | None = hf("qk_channels", None, doc="null: the attention's input width")
    v_channels: int | None = hf("v_channels", None, doc="null: qk_channels")
    cross_attention_shape_for_attention: str = hf("cross_attention_shape_for_attention", "kv")
    self_attention_widening_factor: int = dim("self_attention_widening_factor", 1)
    cross_attention_widening_factor: int = dim("cross_attention_widening_factor", 1)
    hidden_act: str = hf("hidden_act", "gelu")
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12, doc="not read by Transformers' Perceiver")
    use_query_residual: bool = hf("use_query_residual", True)
    vocab_size: int = dim("vocab_size", 262)
    max_position_embeddings: int = dim("max_position_embeddings", 2048)
    image_size: int = dim("image_size", 56, doc="the learned-position image classifier's square input")
    train_size: tuple = hf("train_size", (368, 496), read=_size_pair, write=list,
                           doc="optical flow's (height, width)")
    input_preprocessor: str = const("text", doc="text, conv1x1, pixels, conv or patches: from architectures")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        archs = config.get("architectures") or ()
        for arch in archs if isinstance(archs, (list, tuple)) else ():
            if arch in UNSUPPORTED_ARCHITECTURES:
                raise ConfigError(f"{source}: architectures={list(archs)}: {arch} is not implemented")
            if arch in PREPROCESSOR_BY_ARCHITECTURE:
                values["input_preprocessor"] = PREPROCESSOR_BY_ARCHITECTURE[arch]
        return values

    @property
    def kv_dim(self):
        """The width of what the encoder's cross-attention reads."""
        return self.d_model if self.input_preprocessor == "text" else CHANNELS[self.input_preprocessor]

    def validate(self, source="config.json"):
        shape = self.cross_attention_shape_for_attention
        if shape not in ("q", "kv"):
            raise ConfigError(f"{source}: cross_attention_shape_for_attention={shape!r}: expected 'q' or 'kv'")
        for key in ("qk_channels", "v_channels"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{source}: {key}={value!r}: expected a positive integer or null")
        for key in ("num_self_attention_heads", "num_cross_attention_heads"):
            if self.d_latents % getattr(self, key):
                raise ConfigError(f"{source}: d_latents={self.d_latents} is not divisible by {key}="
                                  f"{getattr(self, key)}")
        # the self-attention layers project their values back to v_channels and add the latents
        v = self.v_channels or self.qk_channels or self.d_latents
        if v != self.d_latents:
            raise ConfigError(f"{source}: v_channels={v} must equal d_latents={self.d_latents} "
                              "(the self-attention's residual)")
        for heads_key, channels in (("num_self_attention_heads", self.qk_channels or self.d_latents),
                                    ("num_cross_attention_heads", self.cross_qk_channels())):
            heads = getattr(self, heads_key)
            if channels % heads or (self.v_channels or channels) % heads:
                raise ConfigError(f"{source}: qk_channels / v_channels must be divisible by {heads_key}={heads}")

    def cross_qk_channels(self):
        if self.qk_channels is not None:
            return self.qk_channels
        return self.kv_dim if self.cross_attention_shape_for_attention == "kv" else self.d_latents


@keras.saving.register_keras_serializable(package="keras_models")
class PerceiverLayer(keras.layers.Layer):
    """Transformers' ``PerceiverLayer``: (cross- or self-) attention with q/k width ``qk_channels``
    and value width ``v_channels`` over ``num_heads`` heads, an output projection to ``out_dim``, the
    optional query residual, then LayerNorm + MLP (``widening`` x ``q_dim``) with a residual.
    ``kv_dim``: None for self-attention (no key / value LayerNorm)."""

    def __init__(self, q_dim, kv_dim=None, qk_channels=None, v_channels=None, num_heads=1, widening=1,
                 out_dim=None, query_residual=True, hidden_act="gelu", attention_dropout=0.0,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.q_dim, self.kv_dim, self.num_heads, self.widening = q_dim, kv_dim, num_heads, widening
        self.qk_channels = qk_channels or q_dim
        self.v_channels = v_channels or self.qk_channels
        self.out_dim = out_dim or q_dim
        self.query_residual, self.hidden_act = query_residual, hidden_act
        self.attention_dropout, self.initializer_range = attention_dropout, initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        common = dict(kernel_initializer=init, dtype=self.dtype_policy)

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=TORCH_LN_EPS, name=name, dtype=self.dtype_policy)

        self.query_norm = norm("query_norm")
        self.kv_norm = norm("kv_norm") if kv_dim is not None else None
        self.query = keras.layers.Dense(self.qk_channels, name="query", **common)
        self.key = keras.layers.Dense(self.qk_channels, name="key", **common)
        self.value = keras.layers.Dense(self.v_channels, name="value", **common)
        self.attn_out = keras.layers.Dense(self.out_dim, name="attn_out", **common)
        self.mlp_norm = norm("mlp_norm")
        self.mlp_in = keras.layers.Dense(widening * self.out_dim, name="mlp_in", **common)
        self.mlp_out = keras.layers.Dense(self.out_dim, name="mlp_out", **common)
        self.dropout = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)
        self.act = get_activation(hidden_act)

    def build(self, input_shape=None):
        kv = self.kv_dim or self.q_dim
        self.query_norm.build((None, None, self.q_dim))
        if self.kv_norm is not None:
            self.kv_norm.build((None, None, kv))
        self.query.build((None, None, self.q_dim))
        self.key.build((None, None, kv))
        self.value.build((None, None, kv))
        self.attn_out.build((None, None, self.v_channels))
        self.mlp_norm.build((None, None, self.out_dim))
        self.mlp_in.build((None, None, self.out_dim))
        self.mlp_out.build((None, None, self.widening * self.out_dim))
        self.built = True

    def _heads(self, x, width):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, t, self.num_heads, width // self.num_heads)), (0, 2, 1, 3))

    def call(self, x, inputs=None, bias=None, training=False):
        q_in = self.query_norm(x)
        kv_in = q_in if inputs is None else self.kv_norm(inputs)
        q = self._heads(self.query(q_in), self.qk_channels)
        k = self._heads(self.key(kv_in), self.qk_channels)
        v = self._heads(self.value(kv_in), self.v_channels)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / ops.sqrt(
            ops.cast(self.qk_channels // self.num_heads, q.dtype))
        if bias is not None:
            scores = scores + ops.cast(bias, scores.dtype)
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        ctx = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        b, t = ops.shape(ctx)[0], ops.shape(ctx)[1]
        h = self.attn_out(ops.reshape(ctx, (b, t, self.v_channels)))
        if self.query_residual:
            h = h + x
        return h + self.mlp_out(self.act(self.mlp_in(self.mlp_norm(h))))

    def rules(self, prefix):
        p = prefix
        r = [Rule(f"{p}attention.self.layernorm1.weight", self.query_norm.gamma),
             Rule(f"{p}attention.self.layernorm1.bias", self.query_norm.beta)]
        if self.kv_norm is not None:
            r += [Rule(f"{p}attention.self.layernorm2.weight", self.kv_norm.gamma),
                  Rule(f"{p}attention.self.layernorm2.bias", self.kv_norm.beta)]
        for name, dense in (("attention.self.query", self.query), ("attention.self.key", self.key),
                            ("attention.self.value", self.value), ("attention.output.dense", self.attn_out),
                            ("mlp.dense1", self.mlp_in), ("mlp.dense2", self.mlp_out)):
            r += [Rule(f"{p}{name}.weight", dense.kernel, TRANSPOSE), Rule(f"{p}{name}.bias", dense.bias)]
        return r + [Rule(f"{p}layernorm.weight", self.mlp_norm.gamma), Rule(f"{p}layernorm.bias", self.mlp_norm.beta)]

    def get_config(self):
        config = super().get_config()
        config.update(q_dim=self.q_dim, kv_dim=self.kv_dim, qk_channels=self.qk_channels,
                      v_channels=self.v_channels, num_heads=self.num_heads, widening=self.widening,
                      out_dim=self.out_dim, query_residual=self.query_residual, hidden_act=self.hidden_act,
                      attention_dropout=self.attention_dropout, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("perceiver")
class PerceiverBackbone(SpecBackbone):
    """Perceiver IO's encoder over text (Transformers' ``PerceiverModel`` with its
    ``PerceiverTextPreprocessor``): returns the latents (batch, num_latents, d_latents)."""

    spec_cls = PerceiverSpec
    base_model_prefix = "perceiver"
    hf_architecture = "PerceiverModel"
    hf_model_type = "perceiver"
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = 'PerceiverForMultimodalAutoencoding'  # shown beside the row in docs/models.md
    hf_ignore = ("*num_batches_tracked",)  # the conv preprocessor's BatchNorm counter

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        for name, value in s.kwargs().items():
            setattr(self, name, value)
        self.hidden_size = s.d_latents
        self.dropout_rate = 0.0  # Perceiver has attention dropout only
        init = keras.initializers.RandomNormal(stddev=s.initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.image_preprocessor = None
        if s.input_preprocessor == "text":
            self.token_embedding = keras.layers.Embedding(s.vocab_size, s.d_model, embeddings_initializer=init,
                                                          name="token_embedding", **common)
            self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.d_model,
                                                             embeddings_initializer=init, name="position_embedding",
                                                             **common)
        else:
            self.image_preprocessor = PerceiverImagePreprocessor(
                s.input_preprocessor, image_size=s.image_size, train_size=s.train_size,
                initializer_range=s.initializer_range, name="input_preprocessor", **common)
        layer = dict(hidden_act=s.hidden_act, attention_dropout=s.attention_dropout,
                     initializer_range=s.initializer_range, **common)
        self.cross_attention = PerceiverLayer(
            s.d_latents, kv_dim=s.kv_dim, qk_channels=s.cross_qk_channels(), v_channels=s.v_channels,
            num_heads=s.num_cross_attention_heads, widening=s.cross_attention_widening_factor,
            query_residual=s.use_query_residual, name="cross_attention", **layer)
        self.self_attends = [
            PerceiverLayer(s.d_latents, qk_channels=s.qk_channels, v_channels=s.v_channels,
                           num_heads=s.num_self_attention_heads, widening=s.self_attention_widening_factor,
                           name=f"self_attend_{i}", **layer)
            for i in range(s.num_self_attends_per_block)]

    def build(self, input_shape=None):
        if self.image_preprocessor is None:
            self.token_embedding.build((None, None))
            self.position_embedding.build((None, None))
        else:
            self.image_preprocessor.build()
        self.latents = self.add_weight(shape=(self.num_latents, self.d_latents), name="latents",
                                       initializer=keras.initializers.RandomNormal(stddev=self.initializer_range))
        self.cross_attention.build()
        for layer in self.self_attends:
            layer.build()
        self.built = True

    def embed(self, inputs, training=False):
        """The encoder's inputs (batch, positions, kv channels): byte + position embeddings, or the
        image preprocessor's output on ``pixel_values``."""
        if self.image_preprocessor is not None:
            if not isinstance(inputs, dict) or "pixel_values" not in inputs:
                raise InputError(f"Perceiver ({self.input_preprocessor} input preprocessor) takes "
                                 "{'pixel_values': ...}")
            return self.image_preprocessor(inputs["pixel_values"], training=training)
        if "input_ids" not in inputs:
            raise InputError("Perceiver over text takes {'input_ids': ..., 'attention_mask': ...}")
        ids = inputs["input_ids"]
        t = ids.shape[1]
        if t is not None and t > self.max_position_embeddings:
            raise ValueError(f"Perceiver takes at most max_position_embeddings={self.max_position_embeddings} "
                             f"tokens, got {t}")
        x = self.token_embedding(ids)
        return x + self.position_embedding(ops.arange(ops.shape(ids)[1], dtype="int32"))[None]

    def encode(self, inputs, training=False, hidden_states=False, return_inputs=False):
        """The latents after the encoder; with ``hidden_states``, also Transformers' ``hidden_states``
        (the latents before each self-attention layer of each block and after each block); with
        ``return_inputs``, also the preprocessed inputs (what optical flow's decoder queries with)."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids" if self.image_preprocessor is None else "pixel_values": inputs}
        x = self.embed(inputs, training=training)
        mask = inputs.get("attention_mask")
        bias = None if mask is None else padding_bias(mask, x.dtype)
        b = ops.shape(x)[0]
        latents = ops.broadcast_to(ops.cast(self.latents, x.dtype)[None], (b, self.num_latents, self.d_latents))
        z = self.cross_attention(latents, inputs=x, bias=bias, training=training)
        states = []
        for _ in range(self.num_blocks):
            for layer in self.self_attends:
                states.append(z)
                z = layer(z, training=training)
            states.append(z)
        out = (z, states) if hidden_states else z
        return (out, x) if return_inputs else out

    def dummy_inputs(self):
        import numpy as np

        kind = self.input_preprocessor
        if kind == "text":
            return super().dummy_inputs()
        if kind == "patches":
            return {"pixel_values": np.zeros((1, 2, *self.train_size, 27), "float32")}
        n = self.image_size if kind == "conv1x1" else 8
        return {"pixel_values": np.zeros((1, n, n, 3), "float32")}

    def config_to_hf(self):
        out = super().config_to_hf()
        for arch, kind in PREPROCESSOR_BY_ARCHITECTURE.items():
            if kind == self.input_preprocessor:  # what tells the reader the input preprocessor
                out["architectures"] = [arch]
        return out

    def call(self, inputs, training=False):
        return self.encode(inputs, training=training)

    def weight_rules(self):
        if self.image_preprocessor is None:
            r = [Rule("input_preprocessor.embeddings.weight", self.token_embedding.embeddings),
                 Rule("input_preprocessor.position_embeddings.weight", self.position_embedding.embeddings)]
        else:
            r = self.image_preprocessor.rules("input_preprocessor.")
        r.append(Rule("embeddings.latents", self.latents))
        r += self.cross_attention.rules("encoder.cross_attention.")
        for i, layer in enumerate(self.self_attends):
            r += layer.rules(f"encoder.self_attends.{i}.")
        return r


__all__ = ["PerceiverBackbone", "PerceiverLayer"]
