"""Mixture of experts: a linear router picks the top-k experts per token (softmax over all
experts, optionally renormalised over the chosen k); each expert is a gated MLP.

Encoder-decoder switches: ``gated`` (False: plain up -> act -> down experts, Switch / NLLB-MoE),
``router_bias``, ``expert_capacity`` (Switch Transformers: along each sequence, tokens beyond the
first ``expert_capacity`` routed to an expert get no expert output), ``expert_scale`` (a constant factor on the expert outputs:
NLLB-MoE's ``1 - moe_token_dropout`` at inference).

Computed densely (every expert on every token, weighted by its routing weight, zero when not
chosen): exact, simple and traceable; fine for the small expert counts of the supported models.
"""

import keras
from keras import ops

from keras_models.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_models")
class MoE(keras.layers.Layer):
    def __init__(self, hidden_size, intermediate_size, num_experts, experts_per_token=2,
                 activation="silu", normalize_top_k=True, use_bias=False,
                 kernel_initializer="glorot_uniform", gated=True, router_bias=False,
                 expert_capacity=None, expert_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.expert_scale = expert_scale
        self.gated = gated
        self.router_bias = router_bias
        self.expert_capacity = expert_capacity
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_experts = num_experts
        self.experts_per_token = experts_per_token
        self.activation = activation
        self.normalize_top_k = normalize_top_k
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.router = keras.layers.Dense(num_experts, use_bias=router_bias, name="router", dtype=self.dtype_policy,
                                         kernel_initializer=self.kernel_initializer)
        self.experts = [
            MLP(hidden_size, intermediate_size, activation, gated=gated, use_bias=use_bias,
                kernel_initializer=self.kernel_initializer, name=f"expert_{i}", dtype=self.dtype_policy)
            for i in range(num_experts)
        ]

    def build(self, input_shape):
        self.router.build(input_shape)
        for e in self.experts:
            e.build(input_shape)
        self.built = True

    def routing_weights(self, x):
        """(..., num_experts) weights: zero except on each token's top-k experts."""
        probs = ops.softmax(ops.cast(self.router(x), "float32"), axis=-1)
        top, idx = ops.top_k(probs, self.experts_per_token)
        if self.normalize_top_k:
            top = top / ops.sum(top, axis=-1, keepdims=True)
        chosen = ops.one_hot(idx, self.num_experts)
        dense = ops.sum(chosen * top[..., None], axis=-2)
        if self.expert_capacity is not None:  # x: (batch, seq, hidden); count along seq
            priority = ops.cumsum(ops.sum(chosen, axis=-2), axis=-2)
            dense = dense * ops.cast(priority <= self.expert_capacity, dense.dtype)
        if self.expert_scale != 1.0:
            dense = dense * self.expert_scale
        return ops.cast(dense, x.dtype)

    def call(self, x):
        w = self.routing_weights(x)
        out = ops.zeros_like(x)
        for i, expert in enumerate(self.experts):
            out = out + expert(x) * w[..., i : i + 1]
        return out

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                      num_experts=self.num_experts, experts_per_token=self.experts_per_token,
                      activation=self.activation, normalize_top_k=self.normalize_top_k,
                      use_bias=self.use_bias, gated=self.gated, router_bias=self.router_bias,
                      expert_capacity=self.expert_capacity, expert_scale=self.expert_scale,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
