"""Mixture of experts: a linear router picks the top-k experts per token (softmax over all
experts, optionally renormalised over the chosen k); each expert is a gated MLP.

Encoder-decoder switches: ``gated`` (False: plain up -> act -> down experts, Switch / NLLB-MoE),
``router_bias``, ``expert_capacity`` (Switch Transformers: along each sequence, tokens beyond the
first ``expert_capacity`` routed to an expert get no expert output), ``expert_scale`` (a constant factor on the expert outputs:
NLLB-MoE's ``1 - moe_token_dropout`` at inference).

Decoder switch: ``shared_expert_size`` (an always-on gated MLP of that width added to the routed
experts' output), with ``shared_expert_gate`` (its output multiplied by sigmoid of a bias-free
linear score of the token: Qwen2-MoE).

Routing switches (DeepSeek-V2 / V3): ``router_score`` "softmax" or "sigmoid" (each expert's
score on its own); ``router_groups`` / ``router_topk_groups`` (the experts are split into
groups, each group is scored -- ``router_group_score`` "max" of its experts or "top2_sum" of its
best two -- and only the best ``router_topk_groups`` groups may be chosen from);
``router_correction_bias`` (a learned per-expert bias added to the scores when choosing the
experts, not to the weights they get). ``expert_scale`` multiplies the routing weights.

Expert layout: ``stacked`` experts are three tensors, (experts, hidden, 2 * intermediate)
[gate | up], (experts, intermediate, hidden) and their biases (``use_bias``), instead of a list
of MLP layers; ``glu`` names a gated unit of keras_models.layers.activations.GLU_UNITS that
combines gate and up itself (``glu_alpha`` / ``glu_limit``: GPT-OSS's "clamped_swiglu"),
instead of act(gate) * up.

``weight_inputs``: each expert gets the token scaled by its routing weight and the experts'
outputs are summed unweighted (Llama 4), instead of weighting the outputs.

Computed densely (every expert on every token, weighted by its routing weight, zero when not
chosen): exact, simple and traceable; fine for the small expert counts of the supported models.
"""

import keras
from keras import ops

from keras_models.layers.activations import get_activation, get_glu
from keras_models.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_models")
class MoE(keras.layers.Layer):
    def __init__(self, hidden_size, intermediate_size, num_experts, experts_per_token=2,
                 activation="silu", normalize_top_k=True, use_bias=False,
                 kernel_initializer="glorot_uniform", gated=True, router_bias=False,
                 expert_capacity=None, expert_scale=1.0, shared_expert_size=None,
                 shared_expert_gate=False, router_score="softmax", router_groups=None,
                 router_topk_groups=None, router_group_score="max", router_correction_bias=False,
                 stacked=False, glu=None, glu_alpha=1.702, glu_limit=7.0, weight_inputs=False, **kwargs):
        super().__init__(**kwargs)
        self.weight_inputs = weight_inputs
        if router_score not in ("softmax", "sigmoid"):
            raise ValueError(f"router_score={router_score!r}: expected 'softmax' or 'sigmoid'")
        if router_group_score not in ("max", "top2_sum"):
            raise ValueError(f"router_group_score={router_group_score!r}: expected 'max' or 'top2_sum'")
        self.router_score, self.router_groups = router_score, router_groups
        self.router_topk_groups, self.router_group_score = router_topk_groups, router_group_score
        self.router_correction_bias = router_correction_bias
        self.stacked, self.glu, self.glu_alpha, self.glu_limit = stacked, glu, glu_alpha, glu_limit
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
        self.experts = [] if stacked else [
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
        if self.router_correction_bias:
            self.score_correction_bias = self.add_weight(name="score_correction_bias", shape=(self.num_experts,),
                                                         initializer="zeros", trainable=False)
        if self.stacked:
            e, h, i = self.num_experts, self.hidden_size, self.intermediate_size
            init = self.kernel_initializer
            self.expert_gate_up = self.add_weight(name="expert_gate_up", shape=(e, h, 2 * i), initializer=init)
            self.expert_down = self.add_weight(name="expert_down", shape=(e, i, h), initializer=init)
            if self.use_bias:
                self.expert_gate_up_bias = self.add_weight(name="expert_gate_up_bias", shape=(e, 2 * i),
                                                           initializer="zeros")
                self.expert_down_bias = self.add_weight(name="expert_down_bias", shape=(e, h), initializer="zeros")
        for e in self.experts:
            e.build(input_shape)
        if self.shared_expert is not None:
            self.shared_expert.build(input_shape)
        if self.shared_gate is not None:
            self.shared_gate.build(input_shape)
        self.built = True

    def routing_weights(self, x):
        """(..., num_experts) weights: zero except on each token's top-k experts."""
        logits = ops.cast(self.router(x), "float32")
        probs = ops.sigmoid(logits) if self.router_score == "sigmoid" else ops.softmax(logits, axis=-1)
        if self.router_groups or self.router_correction_bias:
            choice = probs
            if self.router_correction_bias:
                choice = choice + ops.cast(self.score_correction_bias, "float32")
            if self.router_groups:
                choice = self._group_limited(choice)
            _, idx = ops.top_k(choice, self.experts_per_token)
            top = ops.take_along_axis(probs, idx, axis=-1)
        else:
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

    def _group_limited(self, choice):
        """``choice`` with the experts outside each token's best ``router_topk_groups`` groups
        set to -inf."""
        g, e = self.router_groups, self.num_experts
        grouped = ops.reshape(choice, (-1, g, e // g))
        if self.router_group_score == "top2_sum":
            group_score = ops.sum(ops.top_k(grouped, 2)[0], axis=-1)
        else:
            group_score = ops.max(grouped, axis=-1)
        _, best = ops.top_k(group_score, self.router_topk_groups)
        keep = ops.sum(ops.one_hot(best, g), axis=-2) > 0  # (tokens, groups)
        keep = ops.broadcast_to(keep[..., None], ops.shape(grouped))
        masked = ops.where(keep, grouped, ops.full_like(grouped, float("-inf")))
        return ops.reshape(masked, ops.shape(choice))

    def _stacked_experts(self, x, w):
        """Every stacked expert on every token, weighted by ``w`` (..., experts) and summed (or, with
        ``weight_inputs``, on the token scaled by ``w``, summed unweighted)."""
        n = self.intermediate_size
        if self.weight_inputs:
            h = ops.einsum("...ed,edf->...ef", x[..., None, :] * w[..., :, None],
                           ops.cast(self.expert_gate_up, x.dtype))
        else:
            h = ops.einsum("...d,edf->...ef", x, ops.cast(self.expert_gate_up, x.dtype))
        if self.use_bias:
            h = h + ops.cast(self.expert_gate_up_bias, x.dtype)
        gate, up = h[..., :n], h[..., n:]
        if self.glu is not None:
            a = get_glu(self.glu, alpha=self.glu_alpha, limit=self.glu_limit)(gate, up)
        else:
            a = get_activation(self.activation)(gate) * up
        out = ops.einsum("...ef,efd->...ed", a, ops.cast(self.expert_down, x.dtype))
        if self.use_bias:
            out = out + ops.cast(self.expert_down_bias, x.dtype)
        if self.weight_inputs:
            return ops.sum(out, axis=-2)
        return ops.sum(out * w[..., None], axis=-2)

    def call(self, x):
        w = self.routing_weights(x)
        out = self._stacked_experts(x, w) if self.stacked else ops.zeros_like(x)
        for i, expert in enumerate(self.experts):
            if self.weight_inputs:
                out = out + expert(x * w[..., i : i + 1])
            else:
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
                      router_score=self.router_score, router_groups=self.router_groups,
                      router_topk_groups=self.router_topk_groups, router_group_score=self.router_group_score,
                      router_correction_bias=self.router_correction_bias, stacked=self.stacked, glu=self.glu,
                      glu_alpha=self.glu_alpha, glu_limit=self.glu_limit, weight_inputs=self.weight_inputs,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
