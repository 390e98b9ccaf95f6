"""One transformer layer for encoder-decoder models (T5-, BART-, Marian-, Pegasus-likes).

Named fields cover the families: ``norm_type`` ("layer" or "rms"), ``norm_first`` (pre-norm
T5 / mBART / Pegasus vs post-norm BART / Marian), ``use_bias``, ``gated_ffn`` (T5 v1.1's
act(wi_0 x) * wi_1 x), ``attention_scale`` (None = head_dim**-0.5; T5 uses 1.0), ``cross_attention``
(decoder layers), ``self_attention_kind`` ("standard"; "longformer": LED encoders' self-attention
with separate projections for global tokens; "transient_global": LongT5 encoders' attention to
per-block aggregates; the bias is then a dict, see those layers),
``attention_bias`` (None = ``use_bias``; Pegasus-X has bias-free attention but biased FFNs),
``global_token_norm`` (Pegasus-X encoders: the first ``global_tokens`` positions, given at call
time, are normalised before self-attention by their own ``global_self_attention_norm``),
``num_experts`` (> 0: a sparse mixture-of-experts feed-forward, layers/moe.py, with
``experts_per_token``, ``normalize_top_k``, ``expert_capacity``, ``router_bias``,
``expert_scale``), ``context_size`` (the width of the encoder states that cross-attention's keys
and values read, when it differs from ``hidden_size``: TrOCR's ``cross_attention_hidden_size``).
Self-attention can run against a fixed-size KV cache (decoding).
"""

import keras
from keras import ops

from keras_models.generation.backend import write_time_slice
from keras_models.layers.activations import activated_projection, get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.longformer_attention import LongformerAttention
from keras_models.layers.moe import MoE
from keras_models.layers.transient_global_attention import TransientGlobalAttention

SELF_ATTENTION_KINDS = {"standard": Attention, "longformer": LongformerAttention,
                        "transient_global": TransientGlobalAttention}


def make_norm(norm_type, eps, name, dtype, use_bias=True):
    if norm_type == "rms":
        return keras.layers.RMSNormalization(epsilon=eps, name=name, dtype=dtype)
    if norm_type == "layer":
        return keras.layers.LayerNormalization(epsilon=eps, center=use_bias, name=name, dtype=dtype)
    raise ValueError(f"norm_type must be 'layer' or 'rms', got {norm_type!r}")


def norm_rules(prefix, norm):
    """Weight rules of a LayerNormalization / RMSNormalization made by ``make_norm``."""
    from keras_models.presets.weight_map import Rule

    if isinstance(norm, keras.layers.RMSNormalization):
        return [Rule(f"{prefix}.weight", norm.scale)]
    out = [Rule(f"{prefix}.weight", norm.gamma)]
    if norm.center:
        out.append(Rule(f"{prefix}.bias", norm.beta))
    return out


def heads_major(x):
    """(b, t, heads, head_dim) -> (b, heads, t, head_dim)."""
    return ops.transpose(x, (0, 2, 1, 3))


def update_cache(buffer, new, index):
    """Write ``new`` (b, heads, t, head_dim) into the heads-major ``buffer`` (b, heads, max_len,
    head_dim) at time ``index`` (in place under torch without autograd, see
    generation.backend.write_time_slice)."""
    return write_time_slice(buffer, new, index, axis=2)


@keras.saving.register_keras_serializable(package="keras_models")
class Seq2SeqBlock(keras.layers.Layer):
    def __init__(
        self,
        hidden_size,
        num_heads,
        intermediate_size,
        head_dim=None,
        hidden_act="gelu",
        gated_ffn=False,
        use_bias=True,
        norm_type="layer",
        norm_first=False,
        layer_norm_eps=1e-5,
        attention_scale=None,
        cross_attention=False,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        kernel_initializer="glorot_uniform",
        self_attention_kind="standard",
        attention_bias=None,
        global_token_norm=False,
        num_experts=0,
        experts_per_token=1,
        normalize_top_k=False,
        expert_capacity=None,
        router_bias=False,
        expert_scale=1.0,
        context_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.context_size = context_size
        self.self_attention_kind = self_attention_kind
        self.attention_bias = attention_bias
        self.global_token_norm = global_token_norm
        self.moe_options = dict(num_experts=num_experts, experts_per_token=experts_per_token,
                                normalize_top_k=normalize_top_k, expert_capacity=expert_capacity,
                                router_bias=router_bias, expert_scale=expert_scale)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.intermediate_size = intermediate_size
        self.head_dim = head_dim or hidden_size // num_heads
        self.hidden_act, self.gated_ffn, self.use_bias = hidden_act, gated_ffn, use_bias
        self.norm_type, self.norm_first, self.layer_norm_eps = norm_type, norm_first, layer_norm_eps
        self.attention_scale, self.cross_attention = attention_scale, cross_attention
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.activation_dropout = activation_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(hidden_act)
        dt = self.dtype_policy
        attn_bias = use_bias if attention_bias is None else attention_bias
        attn = dict(head_dim=self.head_dim, use_bias=attn_bias, dropout=attention_dropout,
                    scale=attention_scale, kernel_initializer=self.kernel_initializer, dtype=dt)
        dense = dict(use_bias=use_bias, kernel_initializer=self.kernel_initializer, dtype=dt)
        self_cls = SELF_ATTENTION_KINDS.get(self_attention_kind)
        if self_cls is None:
            raise ValueError(f"self_attention_kind must be one of {sorted(SELF_ATTENTION_KINDS)}, "
                             f"got {self_attention_kind!r}")
        if self_attention_kind == "transient_global":
            attn["norm_eps"] = layer_norm_eps
        self.self_attention = self_cls(hidden_size, num_heads, name="self_attention", **attn)
        self.self_attention_norm = make_norm(norm_type, layer_norm_eps, "self_attention_norm", dt)
        self.global_self_attention_norm = None
        if global_token_norm:
            self.global_self_attention_norm = make_norm(norm_type, layer_norm_eps,
                                                        "global_self_attention_norm", dt)
        if cross_attention:
            self.cross_attention_layer = Attention(hidden_size, num_heads, name="cross_attention", **attn)
            self.cross_attention_norm = make_norm(norm_type, layer_norm_eps, "cross_attention_norm", dt)
        self.moe = self.ffn_in = self.ffn_gate = self.ffn_out = None
        if num_experts:
            self.moe = MoE(hidden_size, intermediate_size, num_experts, experts_per_token,
                           activation=hidden_act, normalize_top_k=normalize_top_k, use_bias=use_bias,
                           kernel_initializer=self.kernel_initializer, gated=gated_ffn,
                           router_bias=router_bias, expert_capacity=expert_capacity,
                           expert_scale=expert_scale, name="moe",
                           dtype=dt)
        else:
            self.ffn_in = keras.layers.Dense(intermediate_size, name="ffn_in", **dense)
            if gated_ffn:
                self.ffn_gate = keras.layers.Dense(intermediate_size, name="ffn_gate", **dense)
            self.ffn_out = keras.layers.Dense(hidden_size, name="ffn_out", **dense)
        self.ffn_norm = make_norm(norm_type, layer_norm_eps, "ffn_norm", dt)
        self.dropout = keras.layers.Dropout(dropout, dtype=dt)
        self.act_dropout = keras.layers.Dropout(activation_dropout, dtype=dt)

    def build(self, input_shape):
        self.self_attention.build(input_shape)
        self.self_attention_norm.build(input_shape)
        if self.global_self_attention_norm is not None:
            self.global_self_attention_norm.build(input_shape)
        if self.cross_attention and self.context_size is None:
            self.cross_attention_layer.build(input_shape)
        elif self.cross_attention:  # keys / values read encoder states of another width
            a = self.cross_attention_layer
            a.query.build(input_shape)
            for dense in (a.key, a.value):
                dense.build(tuple(input_shape[:-1]) + (self.context_size,))
            a.output_dense.build(tuple(input_shape[:-1]) + (a.num_heads * a.head_dim,))
            a.built = True
        if self.cross_attention and not self.cross_attention_norm.built:
            self.cross_attention_norm.build(input_shape)
        if self.moe is not None:
            self.moe.build(input_shape)
        else:
            self.ffn_in.build(input_shape)
            if self.ffn_gate is not None:
                self.ffn_gate.build(input_shape)
            self.ffn_out.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.ffn_norm.build(input_shape)
        self.built = True

    # --- sub-layers -------------------------------------------------------------------------
    def _residual(self, x, norm, fn, training):
        if self.norm_first:
            return x + self.dropout(fn(norm(x)), training=training)
        return norm(x + self.dropout(fn(x), training=training))

    def _ffn(self, x, training=False):
        if self.moe is not None:
            return self.moe(x)
        h = activated_projection(self.ffn_in, x, self.hidden_act, self.act)
        if self.ffn_gate is not None:
            h = h * self.ffn_gate(x)
        return self.ffn_out(self.act_dropout(h, training=training))

    def _heads(self, attention, x):
        b, s = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (b, s, attention.num_heads, attention.head_dim))

    def cross_kv(self, context):
        """Cross-attention K/V of the encoder states: heads-major (b, heads, src, head_dim) each."""
        a = self.cross_attention_layer
        return heads_major(self._heads(a, a.key(context))), heads_major(self._heads(a, a.value(context)))

    def _self_attend(self, x, bias, cache, cache_index, training):
        a = self.self_attention
        if cache is None:
            return a(x, bias, training=training), None
        q = self._heads(a, a.query(x))
        k = self._heads(a, a.key(x))
        v = self._heads(a, a.value(x))
        out, cache = a.attend_with_cache(q, k, v, cache, cache_index, bias, training=training)
        return a.output_dense(out), cache

    def _cross_attend(self, x, context, bias, kv, training):
        a = self.cross_attention_layer
        if kv is None:
            return a(x, bias, context=context, training=training)
        q = self._heads(a, a.query(x))
        return a.output_dense(a.attend_heads_major(q, kv[0], kv[1], bias, training=training))

    def call(self, x, self_bias=None, context=None, cross_bias=None, cache=None, cache_index=None,
             cross_kv=None, training=False, global_tokens=None):
        """Returns ``x`` (no cache) or ``(x, (k_cache, v_cache))`` when ``cache`` is given.

        ``cache``: (k, v) heads-major buffers (b, heads, max_len, head_dim); the new keys/values are written
        at ``cache_index`` and ``self_bias`` must cover the whole buffer. ``cross_kv``: optional
        precomputed (k, v) of ``context``.
        """
        new_cache = None

        def self_fn(h):
            nonlocal new_cache
            out, new_cache = self._self_attend(h, self_bias, cache, cache_index, training)
            return out

        norm = self.self_attention_norm
        if global_tokens:  # the first ``global_tokens`` positions have their own norm
            def norm(h):
                g = global_tokens
                return ops.concatenate([self.global_self_attention_norm(h[:, :g]),
                                        self.self_attention_norm(h[:, g:])], axis=1)

        x = self._residual(x, norm, self_fn, training)
        if self.cross_attention and (context is not None or cross_kv is not None):
            x = self._residual(
                x, self.cross_attention_norm,
                lambda h: self._cross_attend(h, context, cross_bias, cross_kv, training), training,
            )
        x = self._residual(x, self.ffn_norm, lambda h: self._ffn(h, training), training)
        return x if cache is None else (x, new_cache)

    def get_config(self):
        c = super().get_config()
        c.update(
            hidden_size=self.hidden_size, num_heads=self.num_heads,
            intermediate_size=self.intermediate_size, head_dim=self.head_dim,
            hidden_act=self.hidden_act, gated_ffn=self.gated_ffn, use_bias=self.use_bias,
            norm_type=self.norm_type, norm_first=self.norm_first,
            layer_norm_eps=self.layer_norm_eps, attention_scale=self.attention_scale,
            cross_attention=self.cross_attention, dropout=self.dropout_rate,
            attention_dropout=self.attention_dropout, activation_dropout=self.activation_dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        # newer switches: written only when set
        if self.self_attention_kind != "standard":
            c["self_attention_kind"] = self.self_attention_kind
        if self.attention_bias is not None:
            c["attention_bias"] = self.attention_bias
        if self.global_token_norm:
            c["global_token_norm"] = True
        if self.context_size is not None:
            c["context_size"] = self.context_size
        if self.moe_options["num_experts"]:
            c.update(self.moe_options)
        return c
