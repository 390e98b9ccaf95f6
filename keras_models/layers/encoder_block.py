"""A transformer encoder block: attention + feed-forward with post- or pre-norm residuals.

Positions inside attention are optional inputs of ``call``: ``rope`` = (cos, sin) rotates queries
and keys (and values when ``rotary_value``, RoFormer), pairs laid out as ``rotary_interleaved``
says; ``bias`` is any additive attention bias (padding, relative positions). ``attention_type``
"disentangled" (DeBERTa, options in ``attention_options``) takes ``relative`` = (offsets, table);
"mixed_conv" (ConvBERT: attention + span-based dynamic convolution heads, options ``head_ratio``,
``conv_kernel_size``). ``ffn_groups`` > 1 makes both feed-forward projections grouped (ConvBERT).
"""

import keras

from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.conv_attention import GroupedDense, MixedConvAttention
from keras_models.layers.disentangled_attention import DisentangledAttention
from keras_models.layers.rotary import apply_rotary


@keras.saving.register_keras_serializable(package="keras_models")
class EncoderBlock(keras.layers.Layer):
    """BERT-style block. ``norm_first=False`` (post-norm, BERT) or ``True`` (pre-norm)."""

    def __init__(
        self,
        hidden_size,
        num_heads,
        intermediate_size,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        dropout=0.0,
        attention_dropout=0.0,
        norm_first=False,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        rotary_interleaved=False,
        rotary_value=False,
        attention_type="standard",
        attention_options=None,
        ffn_groups=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ffn_groups = ffn_groups
        self.attention_type = attention_type
        self.attention_options = dict(attention_options or {})
        self.rotary_interleaved = rotary_interleaved
        self.rotary_value = rotary_value
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.norm_first = norm_first
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)
        if attention_type == "disentangled":
            self.attention = DisentangledAttention(
                hidden_size, num_heads, dropout=attention_dropout, name="attention",
                **self.attention_options, **common, **init,
            )
        elif attention_type == "mixed_conv":
            self.attention = MixedConvAttention(
                hidden_size, num_heads, dropout=attention_dropout, name="attention",
                **self.attention_options, **common, **init,
            )
        elif attention_type == "standard":
            self.attention = Attention(
                hidden_size, num_heads, use_bias=use_bias, dropout=attention_dropout,
                name="attention", **common, **init,
            )
        else:
            raise ValueError(f"attention_type={attention_type!r}: expected 'standard' or 'disentangled'")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="attention_norm", **common)
        if ffn_groups > 1:
            self.intermediate = GroupedDense(intermediate_size, ffn_groups, name="intermediate", **common, **init)
            self.output_dense = GroupedDense(hidden_size, ffn_groups, name="output", **common, **init)
        else:
            self.intermediate = keras.layers.Dense(intermediate_size, use_bias=use_bias, name="intermediate", **common, **init)
            self.output_dense = keras.layers.Dense(hidden_size, use_bias=use_bias, name="output", **common, **init)
        self.output_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_norm", **common)
        self.dropout = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_norm.build(input_shape)
        self.built = True

    def attend(self, x, bias=None, rope=None, training=False, relative=None):
        """Self-attention of ``x`` (rotary positions applied when ``rope`` is given)."""
        if relative is not None:
            return self.attention(x, bias, relative=relative, training=training)
        if rope is None:
            return self.attention(x, bias, training=training)
        a = self.attention
        q, k, v = (a._split(dense(x), a.num_heads) for dense in (a.query, a.key, a.value))
        cos, sin = rope
        q = apply_rotary(q, cos, sin, self.rotary_interleaved)
        k = apply_rotary(k, cos, sin, self.rotary_interleaved)
        if self.rotary_value:
            v = apply_rotary(v, cos, sin, self.rotary_interleaved)
        return a.output_dense(a.attend(q, k, v, bias, training=training))

    def first_rows_supported(self, rope=None, relative=None, bias=None):
        """Whether :meth:`call` can compute only the first rows' outputs (``query_rows``): plain
        attention (no disentangled / mixed-conv heads), no rotary or relative positions, no bias or
        a 4-D one, and the block's own ``call`` / ``attend`` (a subclass that overrides them keeps
        the full call)."""
        from keras_models.layers.attention import Attention

        cls = type(self)
        return (rope is None and relative is None and (bias is None or len(bias.shape) == 4)
                and self.attention_type == "standard"
                and type(self.attention) is Attention
                and cls.call is EncoderBlock.call and cls.attend is EncoderBlock.attend)

    def call(self, x, bias=None, rope=None, training=False, relative=None, query_rows=None):
        """``query_rows`` (an int): only the first ``query_rows`` positions' outputs, (batch,
        query_rows, hidden) -- see :meth:`first_rows_supported`; elsewhere it is ignored. Then the
        queries come from those rows and the keys and values from every row; the other positions'
        outputs (what no later layer reads) are not computed."""
        n = self.attention_norm(x) if self.norm_first else x
        if query_rows is not None and self.first_rows_supported(rope, relative, bias):
            rows = query_rows
            if bias is not None:
                bias = bias[:, :, :rows, :]  # a size-1 (broadcast) query axis stays size 1
            a = self.attention(n[:, :rows], bias, context=n, training=training)
            x = x[:, :rows]
        else:
            a = self.attend(n, bias, rope, training=training, relative=relative)
        if self.norm_first:
            h = x + self.dropout(a, training=training)
            f = self.output_dense(activated_projection(self.intermediate, self.output_norm(h), self.hidden_act, self.act))
            return h + self.dropout(f, training=training)
        h = self.attention_norm(x + self.dropout(a, training=training))
        f = self.output_dense(activated_projection(self.intermediate, h, self.hidden_act, self.act))
        return self.output_norm(h + self.dropout(f, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads,
            intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, norm_first=self.norm_first,
            use_bias=self.use_bias, rotary_interleaved=self.rotary_interleaved,
            rotary_value=self.rotary_value, attention_type=self.attention_type,
            attention_options=self.attention_options,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        config["ffn_groups"] = self.ffn_groups
        return config
