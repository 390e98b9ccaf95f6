"""Pre-norm vision transformer block: norm -> attention [-> layer scale] + residual,
norm -> MLP (plain or SwiGLU) [-> layer scale] + residual. Covers ViT, DeiT, DINOv2, BEiT, and
with ``neighborhood`` the (dilated) neighborhood-attention blocks of NAT / DiNAT on
(batch, H, W, C) maps."""

import keras
from keras import ops

from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.neighborhood_attention import NeighborhoodAttention


@keras.saving.register_keras_serializable(package="keras_models")
class LayerScale(keras.layers.Layer):
    def __init__(self, dim, init_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.init_value = dim, init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(self.dim,),
                                     initializer=keras.initializers.Constant(self.init_value))
        self.built = True

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def get_config(self):
        c = super().get_config()
        c.update(dim=self.dim, init_value=self.init_value)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class VisionBlock(keras.layers.Layer):
    """``mlp``: "plain" (fc1 -> act -> fc2) or "swiglu" (fc1 gives [gate, up] fused;
    silu(gate) * up -> fc2).
    ``layer_scale``: None, or the init value of per-channel residual scales.
    ``key_bias``: False for checkpoints without a key bias (BEiT). The variable is kept at zero
    and left out of weight maps: a key bias adds a per-query constant to the scores, which the
    softmax cancels, so it never changes the output.
    ``neighborhood``: None (full attention over tokens), or ``(kernel_size, dilation)``: 2-D
    neighborhood attention (:class:`NeighborhoodAttention`) on (batch, H, W, C) inputs.
    ``stacked_layer_scale``: both layer scales in one (2, hidden) variable ``layer_scale`` (row 0
    scales the attention branch, row 1 the MLP), as NAT / DiNAT checkpoints store them."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu",
                 layer_norm_eps=1e-12, qkv_bias=True, key_bias=True, mlp="plain", layer_scale=None,
                 dropout=0.0, attention_dropout=0.0, kernel_initializer="glorot_uniform", neighborhood=None,
                 stacked_layer_scale=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps, self.qkv_bias = hidden_act, layer_norm_eps, qkv_bias
        self.key_bias, self.mlp, self.layer_scale = key_bias, mlp, layer_scale
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.neighborhood = tuple(neighborhood) if neighborhood is not None else None
        self.stacked_layer_scale = stacked_layer_scale and layer_scale is not None
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if mlp not in ("plain", "swiglu"):
            raise ValueError(f"VisionBlock: mlp must be 'plain' or 'swiglu', got {mlp!r}")
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)
        if self.neighborhood is not None:
            self.attention = NeighborhoodAttention(hidden_size, num_heads, *self.neighborhood, use_bias=qkv_bias,
                                                   dropout=attention_dropout, name="attention", **common)
        else:
            self.attention = Attention(hidden_size, num_heads, use_bias=qkv_bias, output_bias=True,
                                       dropout=attention_dropout, name="attention", **dense)
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm1", **common)
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="norm2", **common)
        self.act = get_activation("silu" if mlp == "swiglu" else hidden_act)
        fused = 2 if mlp == "swiglu" else 1
        self.fc1 = keras.layers.Dense(fused * intermediate_size, name="fc1", **dense)
        self.fc2 = keras.layers.Dense(hidden_size, name="fc2", **dense)
        separate = layer_scale is not None and not self.stacked_layer_scale
        self.scale1 = LayerScale(hidden_size, layer_scale, name="scale1", **common) if separate else None
        self.scale2 = LayerScale(hidden_size, layer_scale, name="scale2", **common) if separate else None
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        for layer in (self.attention, self.norm1, self.norm2, self.fc1, self.scale1, self.scale2):
            if layer is not None:
                layer.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.layer_scale_weight = (
            self.add_weight(name="layer_scale", shape=(2, self.hidden_size),
                            initializer=keras.initializers.Constant(self.layer_scale))
            if self.stacked_layer_scale else None)
        self.built = True

    def _scaled(self, i, h):
        if self.layer_scale_weight is not None:
            return h * ops.cast(self.layer_scale_weight[i], h.dtype)
        scale = (self.scale1, self.scale2)[i]
        return scale(h) if scale is not None else h

    def call(self, x, bias=None, training=False):
        h = self.attention(self.norm1(x), bias, training=training)
        h = self.dropout(h, training=training)
        x = x + self._scaled(0, h)
        y = self.norm2(x)
        if self.mlp == "swiglu":
            gate, up = ops.split(self.fc1(y), 2, axis=-1)
            y = self.act(gate) * up
        else:
            y = activated_projection(self.fc1, y, self.hidden_act, self.act)
        y = self.dropout(self.fc2(y), training=training)
        return x + self._scaled(1, y)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                 intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, qkv_bias=self.qkv_bias, key_bias=self.key_bias,
                 mlp=self.mlp, layer_scale=self.layer_scale, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                 neighborhood=self.neighborhood, stacked_layer_scale=self.stacked_layer_scale)
        return c


def vit_block_rules(prefix, block):
    """Weight-map rules of a VisionBlock stored under Transformers' ViT names (``prefix`` e.g.
    ``"encoder.layer.3."``): attention.attention.{query,key,value}, attention.output.dense,
    intermediate.dense, output.dense, layernorm_before / layernorm_after."""
    from keras_models.layers.vision_embeddings import dense_rules, norm_rules

    if block.layer_scale is not None:
        raise ValueError("vit_block_rules: a block with layer scale needs its family's names for the scales")
    a, r = block.attention, []
    for name, dense in (("attention.attention.query", a.query), ("attention.attention.key", a.key),
                        ("attention.attention.value", a.value), ("attention.output.dense", a.output_dense),
                        ("intermediate.dense", block.fc1), ("output.dense", block.fc2)):
        rules = dense_rules(prefix + name, dense)
        r += rules[:1] if dense is a.key and not block.key_bias else rules
    return r + norm_rules(prefix + "layernorm_before", block.norm1) + norm_rules(prefix + "layernorm_after", block.norm2)
