"""MobileBERT's bottleneck encoder block and its ``NoNorm`` (an element-wise affine map).

The block works at ``bottleneck_size`` inside a ``hidden_size`` residual stream:

* ``use_bottleneck``: the input is projected (dense + norm) to ``bottleneck_size`` for the
  attention residual, and the block output is projected back (dense + dropout + norm, residual =
  the block input). With ``shared_bottleneck`` queries and keys use a second projection and values
  read the full-width input; ``bottleneck_attention`` feeds the first projection to q, k and v;
* attention (output dense + norm with the bottlenecked input as residual), then
  ``num_feedforward_networks - 1`` extra feed-forward sub-blocks (dense, activation, dense, norm),
  then the last feed-forward;
* ``normalization``: ``"no_norm"`` (``x * gamma + beta``) or ``"layer_norm"``. As in the
  reference, the last feed-forward's LayerNorm uses eps 1e-5 whatever ``layer_norm_eps`` says.
"""

import keras
from keras import ops

from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.attention import Attention

DEFAULT_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used where MobileBERT passes no eps


@keras.saving.register_keras_serializable(package="keras_models")
class NoNorm(keras.layers.Layer):
    """``x * gamma + beta`` over the last axis (no statistics)."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(input_shape[-1],), initializer="zeros")
        self.built = True

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)


def make_mobile_norm(kind, epsilon, name, dtype=None):
    """``"no_norm"`` -> :class:`NoNorm`, ``"layer_norm"`` -> LayerNormalization(epsilon)."""
    if kind == "no_norm":
        return NoNorm(name=name, dtype=dtype)
    if kind == "layer_norm":
        return keras.layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype)
    raise ValueError(f"normalization={kind!r}: expected 'no_norm' or 'layer_norm'")


@keras.saving.register_keras_serializable(package="keras_models")
class BottleneckBlock(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, intermediate_size, bottleneck_size=128, hidden_act="relu",
                 layer_norm_eps=1e-12, dropout=0.0, attention_dropout=0.0, normalization="no_norm",
                 use_bottleneck=True, bottleneck_attention=False, shared_bottleneck=True,
                 num_feedforward_networks=4, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.bottleneck_size, self.hidden_act, self.layer_norm_eps = bottleneck_size, hidden_act, layer_norm_eps
        self.dropout_rate, self.attention_dropout, self.normalization = dropout, attention_dropout, normalization
        self.use_bottleneck, self.bottleneck_attention = use_bottleneck, bottleneck_attention
        self.shared_bottleneck, self.num_feedforward_networks = shared_bottleneck, num_feedforward_networks
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        self.inner = bottleneck_size if use_bottleneck else hidden_size
        common = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=self.kernel_initializer, **common)

        def norm(name, eps=layer_norm_eps):
            return make_mobile_norm(normalization, eps, name, self.dtype_policy)

        self.input_dense = self.input_norm = self.qk_dense = self.qk_norm = None
        if use_bottleneck:
            self.input_dense, self.input_norm = keras.layers.Dense(self.inner, name="input_dense", **dense), norm("input_norm")
            if shared_bottleneck:
                self.qk_dense, self.qk_norm = keras.layers.Dense(self.inner, name="qk_dense", **dense), norm("qk_norm")
        self.attention = Attention(self.inner, num_heads, dropout=attention_dropout, name="attention", **dense)
        self.attention_norm = norm("attention_norm")
        extra = range(num_feedforward_networks - 1)  # plain lists of layers, so Keras tracks them
        self.ffn_up = [keras.layers.Dense(intermediate_size, name=f"ffn_{j}_intermediate", **dense) for j in extra]
        self.ffn_down = [keras.layers.Dense(self.inner, name=f"ffn_{j}_output", **dense) for j in extra]
        self.ffn_norms = [norm(f"ffn_{j}_norm") for j in extra]
        self.intermediate = keras.layers.Dense(intermediate_size, name="intermediate", **dense)
        self.output_dense = keras.layers.Dense(self.inner, name="output", **dense)
        self.output_norm = norm("output_norm", DEFAULT_LAYER_NORM_EPS)
        self.out_bottleneck = self.out_bottleneck_norm = None
        if use_bottleneck:
            self.out_bottleneck = keras.layers.Dense(hidden_size, name="out_bottleneck", **dense)
            self.out_bottleneck_norm = norm("out_bottleneck_norm")
        self.dropout = keras.layers.Dropout(dropout, **common)

    def ffns(self):
        """(intermediate dense, output dense, norm) of each extra feed-forward sub-block."""
        return list(zip(self.ffn_up, self.ffn_down, self.ffn_norms))

    def build(self, input_shape):
        lead = tuple(input_shape[:-1])
        full, inner, wide = input_shape, lead + (self.inner,), lead + (self.intermediate_size,)
        for layer in (self.input_dense, self.qk_dense):
            if layer is not None:
                layer.build(full)
        for layer in (self.input_norm, self.qk_norm, self.attention_norm, self.output_norm):
            if layer is not None:
                layer.build(inner)
        a = self.attention
        qk_in = inner if self.use_bottleneck else full
        v_in = inner if self.use_bottleneck and self.bottleneck_attention else full
        a.query.build(qk_in)
        a.key.build(qk_in)
        a.value.build(v_in)
        a.output_dense.build(inner)
        a.built = True
        for up, down, norm in self.ffns():
            up.build(inner)
            down.build(wide)
            norm.build(inner)
        self.intermediate.build(inner)
        self.output_dense.build(wide)
        if self.out_bottleneck is not None:
            self.out_bottleneck.build(inner)
            self.out_bottleneck_norm.build(full)
        self.built = True

    def call(self, x, bias=None, training=False):
        if self.use_bottleneck:
            layer_input = self.input_norm(self.input_dense(x))
            if self.bottleneck_attention:
                q_in = v_in = layer_input
            elif self.shared_bottleneck:
                q_in, v_in = self.qk_norm(self.qk_dense(x)), x
            else:
                q_in = v_in = x
        else:
            layer_input = q_in = v_in = x
        a = self.attention
        q, k = a._split(a.query(q_in), a.num_heads), a._split(a.key(q_in), a.num_heads)
        v = a._split(a.value(v_in), a.num_heads)
        h = a.output_dense(a.attend(q, k, v, bias, training=training))
        if not self.use_bottleneck:
            h = self.dropout(h, training=training)
        h = self.attention_norm(h + layer_input)
        for up, down, norm in self.ffns():
            h = norm(down(self.act(up(h))) + h)
        out = self.output_dense(activated_projection(self.intermediate, h, self.hidden_act, self.act))
        if not self.use_bottleneck:
            return self.output_norm(self.dropout(out, training=training) + h)
        out = self.output_norm(out + h)
        out = self.dropout(self.out_bottleneck(out), training=training)
        return self.out_bottleneck_norm(out + x)

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 bottleneck_size=self.bottleneck_size, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout, normalization=self.normalization,
                 use_bottleneck=self.use_bottleneck, bottleneck_attention=self.bottleneck_attention,
                 shared_bottleneck=self.shared_bottleneck, num_feedforward_networks=self.num_feedforward_networks,
                 kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return c
