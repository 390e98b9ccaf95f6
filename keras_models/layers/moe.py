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

Expert layout: ``stacked`` experts (gated only) are three tensors, (experts, hidden, 2 * intermediate)
[gate | up], (experts, intermediate, hidden) and their biases (``use_bias``), instead of a list
of MLP layers (the decoder families' layout, also where the checkpoint keeps one MLP per expert:
keras_models.models.decoder.weights.per_expert_stacked; the list stays for plain experts and
.keras files saved with it); ``glu`` names a gated unit of keras_models.layers.activations.GLU_UNITS that
combines gate and up itself (``glu_alpha`` / ``glu_limit``: GPT-OSS's "clamped_swiglu"),
instead of act(gate) * up.

``weight_inputs``: each expert gets the token scaled by its routing weight and the experts'
outputs are summed unweighted (Llama 4), instead of weighting the outputs.

LoRA on stacked experts (``enable_lora``): per-expert low-rank factors for the [gate | up] tensor
(``expert_gate_up_lora_a`` (experts, hidden, r), ``expert_gate_up_lora_b`` (experts, r, 2 * intermediate))
and / or the down tensor (``expert_down_lora_a`` / ``_b``), B zero-initialised, A He-uniform as Keras'
``Dense.enable_lora``; each expert's kernel is ``base + (lora_alpha / r) * a @ b`` and the base
tensors are frozen. ``expert_gate_up`` / ``expert_down`` then read as that sum (like ``Dense.kernel``:
every dispatch path and the weight map's export see the adapted kernels); the base variables stay
in ``_expert_gate_up`` / ``_expert_down``.

Dispatch is sparse: an expert's weights are read only for the tokens routed to it.
- Eagerly (torch, TensorFlow outside ``tf.function``): the routing mask is
  read on the host once per layer; each chosen expert runs on the rows routed to it (gathered),
  and the weighted outputs are summed back per token (``segment_sum``; torch: ``index_add_``, in
  keras_models.layers.moe_torch).
  Torch with stacked experts: raw tensors, one GEMM on the expert's [gate | up] slice and one on
  its down slice, the gated unit once for all (row, expert) pairs; the layer's own call takes the
  pairs straight from the top-k indices (sorted by expert) instead of the dense weights.
- Inside ``tf.function``: shapes are static, so each expert is wrapped in a ``cond`` that runs it
  (on every row of the call) only when some row chose it, and skips its weights otherwise. Under
  jax ``jit`` the per-expert conditionals measured slower than computing every expert, so jax
  stays dense there for the list layout. Stacked experts under jax ``jit`` loop over the experts
  some row chose (``lax.fori_loop`` with a static bound, one expert's slice per step: each
  chosen expert's weights read once). Elsewhere (tf.function), with stacked experts and fewer
  token x expert choices than experts (decoding a few rows), the chosen experts' tensors are
  gathered instead.
- Symbolic calls (building), eager jax (outside ``jit``) and ``weight_inputs`` experts with biases (an unchosen expert still
  adds its bias) compute every expert on every token, weighted by its routing weight.
Every dispatch gives the same values up to float summation order.
"""

import keras
import numpy as np
from keras import ops

from keras_models.layers import moe_torch
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
                 stacked=False, glu=None, glu_alpha=1.702, glu_limit=7.0, weight_inputs=False,
                 lora_rank=None, lora_alpha=None, lora_targets=None, **kwargs):
        super().__init__(**kwargs)
        self.lora_targets, self.lora_rank, self.lora_alpha, self._lora_active = (), None, None, False
        self._lora_config = (lora_rank, lora_alpha, tuple(lora_targets or self.LORA_TARGETS)) if lora_rank else None
        self.weight_inputs = weight_inputs
        if stacked and not gated:
            raise ValueError("MoE: stacked=True stores gated experts ([gate | up]); gated=False needs stacked=False")
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
            self._expert_gate_up = self.add_weight(name="expert_gate_up", shape=(e, h, 2 * i), initializer=init)
            self._expert_down = self.add_weight(name="expert_down", shape=(e, i, h), initializer=init)
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
        if self._lora_config is not None:  # a saved config with adapters (get_config)
            rank, alpha, targets = self._lora_config
            self._lora_config = None
            self.enable_lora(rank, lora_alpha=alpha, targets=targets)

    # --- LoRA on the stacked experts -------------------------------------------------------------
    LORA_TARGETS = ("gate_up", "down")

    @property
    def expert_gate_up(self):
        """(experts, hidden, 2 * intermediate) [gate | up]: the variable, or with LoRA on it the
        adapted kernel ``base + alpha / r * a @ b`` (a tensor)."""
        return self._lora_kernel("gate_up")

    @property
    def expert_down(self):
        """(experts, intermediate, hidden): the variable, or the adapted kernel with LoRA on it."""
        return self._lora_kernel("down")

    @property
    def lora_enabled(self):
        return bool(self.lora_targets) and self._lora_active

    @lora_enabled.setter
    def lora_enabled(self, value):  # False: the kernels read as their base variables (as Dense)
        self._lora_active = bool(value)

    def lora_variables(self, target):
        """``(a, b)`` of ``target`` ("gate_up" / "down"), or None."""
        if target not in self.lora_targets:
            return None
        return getattr(self, f"expert_{target}_lora_a"), getattr(self, f"expert_{target}_lora_b")

    def base_kernel(self, target):
        """The base variable of ``target`` ("gate_up" / "down"), without the LoRA product."""
        return self._expert_gate_up if target == "gate_up" else self._expert_down

    def _lora_kernel(self, target, expert=None):
        base = self.base_kernel(target)
        if expert is not None:
            base = base[expert]
        if not (self._lora_active and target in self.lora_targets):
            return base
        a, b = self.lora_variables(target)
        if expert is not None:
            a, b = a[expert], b[expert]
        scale = self.lora_alpha / self.lora_rank
        return ops.add(base, ops.cast(ops.matmul(a, b) * scale, base.dtype))

    def enable_lora(self, rank, lora_alpha=None, targets=LORA_TARGETS,
                    a_initializer="he_uniform", b_initializer="zeros"):
        """Rank-``rank`` adapters on the stacked expert tensors named in ``targets`` ("gate_up",
        "down"): A (experts, in, r), B (experts, r, out) zeros, scaling ``lora_alpha / rank``
        (alpha defaulting to the rank); the base tensors are frozen. Returns the targets adapted."""
        if not self.stacked:
            raise ValueError(f"MoE {self.name}: enable_lora needs stacked experts (stacked=True); the list "
                             "layout's experts are Dense layers (enable their LoRA directly)")
        targets = tuple(targets)
        bad = [t for t in targets if t not in self.LORA_TARGETS]
        if bad or not targets:
            raise ValueError(f"MoE {self.name}: enable_lora targets={targets!r}: expected some of {self.LORA_TARGETS}")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
            raise ValueError(f"MoE {self.name}: enable_lora rank={rank!r}: expected a positive int")
        if not self.built:
            raise ValueError(f"MoE {self.name}: enable_lora on an unbuilt layer; build it first")
        if getattr(self, "quantization_mode", None) is not None:
            raise ValueError(f"MoE {self.name}: enable_lora on a quantized layer is not supported")
        again = [t for t in targets if t in self.lora_targets]
        if again:
            raise ValueError(f"MoE {self.name}: LoRA is already enabled on {', '.join(again)}")
        if self.lora_targets and rank != self.lora_rank:
            raise ValueError(f"MoE {self.name}: already has rank-{self.lora_rank} LoRA; got rank={rank}")
        alpha = lora_alpha if lora_alpha is not None else rank
        if self.lora_targets and alpha != self.lora_alpha:
            raise ValueError(f"MoE {self.name}: already has LoRA with lora_alpha={self.lora_alpha}; "
                             f"got lora_alpha={alpha}")
        e = self.num_experts
        dims = {"gate_up": (self.hidden_size, 2 * self.intermediate_size),
                "down": (self.intermediate_size, self.hidden_size)}
        self._tracker.unlock()
        try:
            for t in targets:
                units_in, units_out = dims[t]
                setattr(self, f"expert_{t}_lora_a", self.add_weight(
                    name=f"expert_{t}_lora_a", shape=(e, units_in, rank),
                    initializer=keras.initializers.get(a_initializer)))
                setattr(self, f"expert_{t}_lora_b", self.add_weight(
                    name=f"expert_{t}_lora_b", shape=(e, rank, units_out),
                    initializer=keras.initializers.get(b_initializer)))
                self.base_kernel(t).trainable = False
        finally:
            self._tracker.lock()
        self.lora_rank, self.lora_alpha = rank, alpha
        self.lora_targets = tuple(t for t in self.LORA_TARGETS if t in self.lora_targets + targets)
        self._lora_active = True
        return targets

    def freeze_all_but_lora(self):
        """Freeze this layer's own variables (the stacked experts, biases, router correction) except
        the LoRA factors; the sublayers are the caller's (Backbone.freeze_all_but_lora)."""
        from keras_models import compat

        lora = {id(v) for t in self.lora_targets for v in self.lora_variables(t)}
        for v in compat.own_variables(self):
            if id(v) not in lora:
                v.trainable = False

    def merge_lora(self):
        """Fold the adapters into the base tensors and drop them (same outputs). Returns the
        targets merged."""
        targets = self.lora_targets
        if not targets:
            return ()
        merged = {t: ops.convert_to_numpy(self._lora_kernel(t)) for t in targets}
        self._lora_active = False
        self._tracker.unlock()
        try:
            for t in targets:
                base = self.base_kernel(t)
                base.assign(merged[t].astype(np.dtype(base.dtype)) if base.dtype != "bfloat16" else merged[t])
                base.trainable = self.trainable
                delattr(self, f"expert_{t}_lora_a")
                delattr(self, f"expert_{t}_lora_b")
        finally:
            self._tracker.lock()
        self.lora_targets, self.lora_rank, self.lora_alpha = (), None, None
        return targets

    def routing_weights(self, x):
        """(..., num_experts) weights: zero except on each token's top-k experts."""
        top, idx = self._top_k_routing(x)
        chosen = ops.one_hot(idx, self.num_experts)
        dense = ops.sum(chosen * top[..., None], axis=-2)
        if self.expert_capacity is not None:  # x: (batch, seq, hidden); count along seq
            priority = ops.cumsum(ops.sum(chosen, axis=-2), axis=-2)
            dense = dense * ops.cast(priority <= self.expert_capacity, dense.dtype)
        if self.expert_scale != 1.0:
            dense = dense * self.expert_scale
        return ops.cast(dense, x.dtype)

    def _top_k_routing(self, x):
        """Each token's top-k routing weights (float32, renormalised when ``normalize_top_k``) and
        expert indices, both (..., k)."""
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
        return top, idx

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
        ``weight_inputs``, on the token scaled by ``w``, summed unweighted). A batched matmul over
        the experts (rows broadcast): an einsum contracting the (experts, hidden, out) tensors'
        middle axis measured 1.5x slower under jax jit (XLA transposes the weights first)."""
        n = self.intermediate_size
        shape = ops.shape(x)
        x2 = ops.reshape(x, (-1, self.hidden_size))
        wt = ops.transpose(ops.reshape(w, (-1, self.num_experts)))[:, :, None]  # (experts, rows, 1)
        xe = x2[None] * wt if self.weight_inputs else x2[None]
        h = ops.matmul(xe, ops.cast(self.expert_gate_up, x.dtype))  # (experts, rows, 2 * intermediate)
        if self.use_bias:
            h = h + ops.cast(self.expert_gate_up_bias, x.dtype)[:, None, :]
        out = ops.matmul(self._glu(h[..., :n], h[..., n:]), ops.cast(self.expert_down, x.dtype))
        if self.use_bias:
            out = out + ops.cast(self.expert_down_bias, x.dtype)[:, None, :]
        out = ops.sum(out if self.weight_inputs else out * wt, axis=0)
        return ops.reshape(out, shape)

    def _expert(self, e, x, we):
        """Expert ``e`` on rows ``x`` (..., hidden) with routing weights ``we`` (..., 1): its
        weighted output (``weight_inputs``: its output on the weighted rows)."""
        if self.weight_inputs:
            x = x * we
        if self.stacked:
            n = self.intermediate_size
            h = ops.matmul(x, ops.cast(self._lora_kernel("gate_up", e), x.dtype))
            if self.use_bias:
                h = h + ops.cast(self.expert_gate_up_bias[e], x.dtype)
            out = ops.matmul(self._glu(h[..., :n], h[..., n:]), ops.cast(self._lora_kernel("down", e), x.dtype))
            if self.use_bias:
                out = out + ops.cast(self.expert_down_bias[e], x.dtype)
        else:
            out = self.experts[e](x)
        return out if self.weight_inputs else out * we

    def _glu(self, gate, up):
        if self.glu is not None:
            return get_glu(self.glu, alpha=self.glu_alpha, limit=self.glu_limit)(gate, up)
        return get_activation(self.activation)(gate) * up

    def _gathered_experts(self, x, w):
        """Stacked experts, each row through only its top-k experts' gathered tensors."""
        top, idx = ops.top_k(w, self.experts_per_token)  # (..., k): unchosen experts have weight 0
        n = self.intermediate_size
        xin = x[..., None, :] * top[..., None] if self.weight_inputs else x[..., None, :]
        h = ops.einsum("...kd,...kdf->...kf", ops.broadcast_to(xin, ops.shape(top) + (self.hidden_size,)),
                       ops.cast(ops.take(self.expert_gate_up, idx, axis=0), x.dtype))
        if self.use_bias:
            h = h + ops.cast(ops.take(self.expert_gate_up_bias, idx, axis=0), x.dtype)
        out = ops.einsum("...kf,...kfd->...kd", self._glu(h[..., :n], h[..., n:]),
                         ops.cast(ops.take(self.expert_down, idx, axis=0), x.dtype))
        if self.use_bias:
            out = out + ops.cast(ops.take(self.expert_down_bias, idx, axis=0), x.dtype)
        if self.weight_inputs:
            return ops.sum(out, axis=-2)
        return ops.sum(out * top[..., None], axis=-2)

    def _looped_experts(self, x, w):
        """Stacked experts under jax ``jit``: a loop over the experts some row chose (found on the
        device, at most ``min(rows * k, experts)`` of them, a static bound), one expert per step on
        every row (weight 0 where the row did not choose it). Each step slices one expert's tensors
        (a few MB, still in cache for the matmuls), so each chosen expert's weights are read about
        once per call: the gathered dispatch materialises the k chosen tensors per row first, the
        dense one reads every expert. Steps past the chosen count skip under ``lax.cond``; the loop
        has static bounds, so it is differentiable."""
        import jax
        from jax import lax

        if keras.backend.backend() != "jax":
            raise ValueError(f"MoE {self.name}: mode='looped' needs the jax backend")
        x2, w2 = ops.reshape(x, (-1, self.hidden_size)), ops.reshape(w, (-1, self.num_experts))
        bound = min(int(x2.shape[0]) * self.experts_per_token, self.num_experts)
        used = jax.numpy.any(w2 != 0, axis=0)
        count = jax.numpy.sum(used.astype("int32"))
        chosen = jax.numpy.nonzero(used, size=bound, fill_value=0)[0].astype("int32")

        def step(i, acc):
            def run():
                e = chosen[i]
                return acc + self._expert(e, x2, lax.dynamic_index_in_dim(w2, e, axis=1)).astype(acc.dtype)

            return lax.cond(i < count, run, lambda: acc)

        out = lax.fori_loop(0, bound, step, jax.numpy.zeros(x2.shape, x.dtype))
        return ops.reshape(out, ops.shape(x))

    def _eager_experts(self, x, w):
        """Each chosen expert on the rows routed to it; outputs summed back per row."""
        if keras.backend.backend() == "torch":
            return moe_torch.eager_experts(self, x, w)
        shape = ops.shape(x)
        x2, w2 = ops.reshape(x, (-1, self.hidden_size)), ops.reshape(w, (-1, self.num_experts))
        rows = int(x2.shape[0])
        chosen = ops.convert_to_numpy(ops.not_equal(w2, 0))  # the one host read per layer
        experts, tokens = np.nonzero(chosen.T)  # expert-major
        if len(tokens) == 0:
            return ops.zeros_like(x)
        flat_w = ops.reshape(w2, (-1,))
        pieces, starts = [], np.searchsorted(experts, np.arange(self.num_experts + 1))
        for e in range(self.num_experts):
            t = tokens[starts[e]:starts[e + 1]]
            if len(t):
                t_ids = ops.convert_to_tensor(t.astype("int32"))
                we = ops.take(flat_w, ops.convert_to_tensor((t * self.num_experts + e).astype("int32")))
                pieces.append(self._expert(e, ops.take(x2, t_ids, axis=0), we[:, None]))
        out = ops.segment_sum(ops.concatenate(pieces, axis=0), ops.convert_to_tensor(tokens.astype("int32")),
                              num_segments=rows)
        return ops.reshape(ops.cast(out, x.dtype), shape)

    def _traced_experts(self, x, w):
        """Inside a trace: each expert under a ``cond`` on whether any row chose it."""
        out = ops.zeros_like(x)
        for e in range(self.num_experts):
            we = w[..., e : e + 1]
            out = out + ops.cond(ops.any(ops.not_equal(we, 0)), lambda e=e, we=we: self._expert(e, x, we),
                                 lambda: ops.zeros_like(x))
        return out

    def _dense_experts(self, x, w):
        """Every expert on every row, weighted by its routing weight (zero when unchosen)."""
        if self.stacked:
            return self._stacked_experts(x, w)
        out = ops.zeros_like(x)
        for i, expert in enumerate(self.experts):
            if self.weight_inputs:
                out = out + expert(x * w[..., i : i + 1])
            else:
                out = out + expert(x) * w[..., i : i + 1]
        return out

    def routed(self, x, w, mode=None):
        """The routed experts' summed output for rows ``x`` and routing weights ``w``; ``mode``
        ("eager", "traced", "gathered", "dense") forces a dispatch, else it follows the call."""
        mode = mode or self._dispatch_mode(x)
        return {"eager": self._eager_experts, "traced": self._traced_experts, "looped": self._looped_experts,
                "gathered": self._gathered_experts, "dense": self._dense_experts}[mode](x, w)

    def _dispatch_mode(self, x):
        if (self.weight_inputs and self.use_bias) or isinstance(x, keras.KerasTensor):
            return "dense"
        if _is_eager(x):
            return "eager"
        if keras.backend.backend() == "jax" and not _is_tracer(x):
            return "dense"  # eager jax: lax.cond would compile each branch per call
        if self.stacked and keras.backend.backend() == "jax":
            return "looped"  # each chosen expert read once: 4-12x the gathered / dense dispatch (docs/performance.md)
        rows = int(np.prod([d for d in x.shape[:-1]])) if None not in tuple(x.shape[:-1]) else None
        if self.stacked and rows is not None and rows * self.experts_per_token < self.num_experts:
            return "gathered"
        # XLA on CPU runs each conditional on its own, unfused: measured slower than the dense
        # computation under jax (tools/bench: docs/performance.md), faster under tf.function
        return "dense" if keras.backend.backend() == "jax" else "traced"

    def call(self, x):
        if moe_torch.pairs_dispatch(self, x):
            out = moe_torch.top_k_dispatch(self, x)
        else:
            out = self.routed(x, self.routing_weights(x))
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
        if self.lora_targets:
            config.update(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, lora_targets=list(self.lora_targets))
        return config


def _is_tracer(x):
    import jax

    return isinstance(x, jax.core.Tracer)


def _is_eager(x):
    """True when ``x`` is a concrete tensor outside any trace (its values can be read)."""
    backend = keras.backend.backend()
    if backend == "jax":  # eager jax compiles each op per shape: the gathered sizes vary, so no
        return False       # eager dispatch there (outside jit the traced one runs, op by op)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True
