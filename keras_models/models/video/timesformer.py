"""TimeSformer (model_type ``timesformer``): per-frame patch embedding, [CLS], spatial position
embeddings shared by every frame plus one time embedding per frame, then blocks of
``attention_type``:

* ``"divided_space_time"`` (every released checkpoint): temporal attention over each patch's
  frames (own norm, attention and a ``temporal_fc`` dense on its output, added to the patch
  tokens), then spatial attention over each frame's patches with [CLS] prepended to every frame
  (the per-frame [CLS] outputs are averaged), then the MLP;
* ``"joint_space_time"``: one attention over [CLS] and every (patch, frame) token.

``"space_only"`` (a per-frame model whose classifier scores every frame) is refused with a
ConfigError naming the key. Tokens after [CLS] are ordered patch-major, frame-minor (as the
checkpoints were trained). ``drop_path_rate`` (stochastic depth) is kept for config.json but not
applied in training.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.registry import register_backbone
from keras_models.models.video.common import VideoBackbone, VideoSpec, one_or_pair, pair
from keras_models.presets.weight_map import Rule
from keras_models.spec import hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
ATTENTION_TYPES = ("divided_space_time", "joint_space_time")


@dataclass(frozen=True, kw_only=True)
class TimesformerSpec(VideoSpec):
    unsupported = {"attention_type": ATTENTION_TYPES}

    num_frames: int = hf("num_frames", 8, dim=True)
    patch_size: tuple = hf("patch_size", (16, 16), read=pair, write=one_or_pair)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-6)
    qkv_bias: bool = hf("qkv_bias", True)
    attention_type: str = hf("attention_type", "divided_space_time")
    drop_path_rate: float = hf("drop_path_rate", 0.0, doc="stochastic depth: kept, not applied")


@_ser
class TimesformerBlock(keras.layers.Layer):
    """One TimeSformer layer on (batch, 1 + patches * frames, hidden) tokens."""

    def __init__(self, hidden_size, num_heads, intermediate_size, num_frames, num_patches, hidden_act="gelu",
                 layer_norm_eps=1e-6, qkv_bias=True, attention_type="divided_space_time", dropout=0.0,
                 attention_dropout=0.0, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.num_frames, self.num_patches, self.hidden_act = num_frames, num_patches, hidden_act
        self.layer_norm_eps, self.qkv_bias, self.attention_type = layer_norm_eps, qkv_bias, attention_type
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)
        attn = dict(use_bias=qkv_bias, output_bias=True, fused_qkv=True, dropout=attention_dropout, **dense)
        norm = dict(epsilon=layer_norm_eps, **common)
        self.divided = attention_type == "divided_space_time"
        if self.divided:
            self.temporal_norm = keras.layers.LayerNormalization(name="temporal_norm", **norm)
            self.temporal_attention = Attention(hidden_size, num_heads, name="temporal_attention", **attn)
            self.temporal_fc = keras.layers.Dense(hidden_size, name="temporal_fc", **dense)
        self.norm1 = keras.layers.LayerNormalization(name="norm1", **norm)
        self.attention = Attention(hidden_size, num_heads, name="attention", **attn)
        self.norm2 = keras.layers.LayerNormalization(name="norm2", **norm)
        self.fc1 = keras.layers.Dense(intermediate_size, name="fc1", **dense)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **dense)
        self.act = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        d = (None, None, self.hidden_size)
        layers = [self.norm1, self.attention, self.norm2, self.fc1]
        if self.divided:
            layers += [self.temporal_norm, self.temporal_attention, self.temporal_fc]
        for layer in layers:
            layer.build(d)
        self.fc2.build((None, None, self.intermediate_size))
        self.built = True

    def attend(self, attention, x, training):
        q, k, v = attention.project_qkv(x)
        return self.dropout(attention.output_dense(attention.attend(q, k, v, training=training)), training=training)

    def call(self, x, training=False):
        t, p, d = self.num_frames, self.num_patches, self.hidden_size
        if self.divided:
            cls, tokens = x[:, :1], x[:, 1:]
            # temporal attention: each patch over its frames
            h = self.attend(self.temporal_attention, self.temporal_norm(ops.reshape(tokens, (-1, t, d))), training)
            tokens = tokens + self.temporal_fc(ops.reshape(h, (-1, p * t, d)))
            # spatial attention: each frame over its patches, [CLS] prepended to every frame
            frames = ops.reshape(ops.transpose(ops.reshape(tokens, (-1, p, t, d)), (0, 2, 1, 3)), (-1, p, d))
            frame_cls = ops.reshape(ops.repeat(cls, t, axis=1), (-1, 1, d))
            h = self.attend(self.attention, self.norm1(ops.concatenate([frame_cls, frames], axis=1)), training)
            cls_out = ops.mean(ops.reshape(h[:, 0], (-1, t, d)), axis=1, keepdims=True)
            patches = ops.reshape(ops.transpose(ops.reshape(h[:, 1:], (-1, t, p, d)), (0, 2, 1, 3)), (-1, p * t, d))
            x = ops.concatenate([cls + cls_out, tokens + patches], axis=1)
        else:
            x = x + self.attend(self.attention, self.norm1(x), training)
        y = self.dropout(self.act(self.fc1(self.norm2(x))), training=training)
        return x + self.dropout(self.fc2(y), training=training)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 num_frames=self.num_frames, num_patches=self.num_patches, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias, attention_type=self.attention_type,
                 dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c


@_ser
@register_backbone("timesformer")
class TimesformerBackbone(VideoBackbone):
    spec_cls = TimesformerSpec
    base_model_prefix = "timesformer"
    hf_architecture = "TimesformerModel"
    lora_targets = ("qkv",)  # fused query/key/value projections (spatial and temporal attention)
    verified_backends = ("jax", "torch", "tensorflow")  # tests/video/test_video_models.py

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, init = self.spec, self.kernel_init()
        common = dict(dtype=self.dtype_policy)
        self.patch_size = tuple(s.patch_size)
        self.grid = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.num_patches = self.grid[0] * self.grid[1]
        self.patch_embedding = PatchEmbedding(s.hidden_size, self.patch_size, s.num_channels, kernel_initializer=init,
                                              name="patch_embedding", **common)
        self.blocks = [
            TimesformerBlock(s.hidden_size, s.num_heads, s.intermediate_size, s.num_frames, self.num_patches,
                             hidden_act=s.hidden_act, layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias,
                             attention_type=s.attention_type, dropout=s.dropout,
                             attention_dropout=s.attention_dropout, kernel_initializer=init, name=f"block_{i}",
                             **common)
            for i in range(s.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        self.embedding_dropout = keras.layers.Dropout(s.dropout, **common)

    def build(self, input_shape):
        d, init = self.hidden_size, self.kernel_init()
        self.cls_token = self.add_weight(name="cls_token", shape=(1, 1, d), initializer=init)
        self.position_embedding = self.add_weight(name="position_embedding", shape=(1, self.num_patches + 1, d),
                                                  initializer=init)
        self.time_embedding = self.add_weight(name="time_embedding", shape=(1, self.num_frames, d), initializer="zeros")
        self.patch_embedding.build((None, None, None, self.num_channels))
        for b in self.blocks:
            b.build((None, None, d))
        self.final_norm.build((None, None, d))
        self.built = True

    def call(self, inputs, training=False):
        x = self.video_input(inputs)
        t, p, d = self.num_frames, self.num_patches, self.hidden_size
        x = self.patch_embedding(ops.reshape(x, (-1,) + tuple(x.shape[2:])))  # (batch * frames, gh, gw, hidden)
        pos = ops.cast(self.position_embedding, x.dtype)
        x = ops.reshape(x, (-1, t, p, d)) + pos[:, None, 1:]
        x = ops.transpose(x, (0, 2, 1, 3)) + ops.cast(self.time_embedding, x.dtype)[:, None]  # (batch, p, t, d)
        x = ops.reshape(x, (-1, p * t, d))
        cls = ops.cast(self.cls_token, x.dtype) + pos[:, :1]
        x = ops.concatenate([ops.broadcast_to(cls, (ops.shape(x)[0], 1, d)), x], axis=1)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.final_norm(x)

    def weight_rules(self):
        r = [Rule("embeddings.cls_token", self.cls_token),
             Rule("embeddings.position_embeddings", self.position_embedding),
             Rule("embeddings.time_embeddings", self.time_embedding)]
        r += conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            parts = [("attention", b.attention)] + ([("temporal_attention", b.temporal_attention)] if b.divided else [])
            for name, a in parts:
                r += dense_rules(f"{p}{name}.attention.qkv", a.qkv)
                r += dense_rules(f"{p}{name}.output.dense", a.output_dense)
            if b.divided:
                r += norm_rules(p + "temporal_layernorm", b.temporal_norm)
                r += dense_rules(p + "temporal_dense", b.temporal_fc)
            r += norm_rules(p + "layernorm_before", b.norm1) + norm_rules(p + "layernorm_after", b.norm2)
            r += dense_rules(p + "intermediate.dense", b.fc1) + dense_rules(p + "output.dense", b.fc2)
        return r + norm_rules("layernorm", self.final_norm)


__all__ = ["TimesformerSpec", "TimesformerBlock", "TimesformerBackbone"]
