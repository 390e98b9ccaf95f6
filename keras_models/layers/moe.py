"""Mixture of experts: a linear router picks the top-k experts per token (softmax over all
experts, optionally renormalised over the chosen k); each expert is a gated MLP.

Encoder-decoder switches: ``gated`` (False: plain up -> act -> down experts, Switch / NLLB-MoE),
``router_bias``, ``expert_capacity`` (Switch Transformers: along each sequence, tokens beyond the
first ``expert_capacity`` routed to an expert get no expert output), ``expert_scale`` (a constant factor on the expert outputs:
NLLB-MoE's ``1 - moe_token_dropout`` at inference).

Decoder switch: ``shared_expert_size`` (an always-on gated MLP of that width added to the routed
experts' output), with ``shared_expert_gate`` (its output multiplied by sigmoid of a bias-free
linear score of the token: Qwen2-MoE).

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
                 expert_capacity=None, expert_scale=1.0, shared_expert_size=None,
                 shared_expert_gate=False, **kwargs):
        super().__init__(**kwargs)
        self.shared_expert_size = shared_expert_size
        self.shared_expert_gate = shared_expert_gate
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
        self.shared_expert = self.shared_gate = None
        if shared_expert_size:
            self.shared_expert = MLP(hidden_size, shared_expert_size, activation, gated=gated, use_bias=use_bias,
                                     kernel_initializer=self.kernel_initializer, name="shared_expert",
                                     dtype=self.dtype_policy)
            if shared_expert_gate:
                self.shared_gate = keras.layers.Dense(1, use_bias=False, name="shared_expert_gate",
                                                      dtype=self.dtype_policy,
                                                      kernel_initializer=self.kernel_initializer)

    def build(self, input_shape):
        self.router.build(input_shape)
        for e in self.experts:
            e.build(input_shape)
        if self.shared_expert is not None:
            self.shared_expert.build(input_shape)
        if self.shared_gate is not None:
            self.shared_gate.build(input_shape)
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
        if self.shared_expert is not None:
            shared = self.shared_expert(x)
            if self.shared_gate is not None:
                shared = shared * ops.sigmoid(self.shared_gate(x))
            out = out + shared
        return out

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                      num_experts=self.num_experts, experts_per_token=self.experts_per_token,
                      activation=self.activation, normalize_top_k=self.normalize_top_k,
                      use_bias=self.use_bias, gated=self.gated, router_bias=self.router_bias,
                      expert_capacity=self.expert_capacity, expert_scale=self.expert_scale,
                      shared_expert_size=self.shared_expert_size, shared_expert_gate=self.shared_expert_gate,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
