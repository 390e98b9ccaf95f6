"""One configurable decoder block for every decoder-only family.

Switches (all named config fields, no model names):
  * ``norm_type`` "rms"/"layer", ``norm_eps``, ``norm_bias``, ``norm_unit_offset``, ``norm_scale``
    (False: LayerNorms without a learned scale -- with ``norm_bias`` False, non-parametric);
  * ``norm_position`` "pre" (x + f(norm(x))), "post" (norm(x + f(x))) or "output"
    (x + norm(f(x)): the two norms sit on the attention / MLP outputs only);
  * ``residual_scale``: a constant multiplying the attention and MLP outputs before they are
    added to the residual stream;
  * ``residual`` "serial" or "parallel" (x + attn(n1(x)) + mlp(n2(x))), with ``parallel_norms`` 1
    (one shared input norm) or 2 (separate attention / MLP norms);
  * ``sandwich_norms``: extra norms on the attention and MLP outputs (Gemma 2);
  * ``residual_from_norm``: the residual branch starts from the normed input (BLOOM option);
  * attention: heads / kv heads / head_dim, ``qkv_bias``, ``out_bias``, ``fused_qkv``, ``qk_norm``
    (``qk_norm_scope`` "head" or "full"), ``clip_qkv``, ``attn_scale``, ``softcap``,
    ``sliding_window``, ``rotary_interleaved``, ``attention_sinks`` (a learned sink logit per
    head in the softmax);
  * ``attention_type`` "standard" (the layer above) or "latent" (multi-head latent attention,
    keras_models.layers.latent_attention: ``q_lora_rank`` (None: one query projection),
    ``kv_lora_rank``, ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``,
    ``latent_norm_eps``; it caches the compressed latent, not per-head keys and values);
  * MLP: ``mlp_gated``, ``mlp_bias``, ``mlp_fused_gate_up`` (one projection [gate | up]), or mixture
    of experts (``num_experts`` > 0: ``experts_per_token``, ``normalize_top_k``,
    ``moe_intermediate_size`` -- the experts' width, default ``intermediate_size`` --, and a shared
    expert: ``shared_expert_size``, ``shared_expert_gate``); routing: ``router_bias``,
    ``router_score`` ("softmax"/"sigmoid"), ``router_groups`` / ``router_topk_groups`` /
    ``router_group_score`` (group-limited top-k), ``router_correction_bias``, ``routed_scaling``
    (a factor on the routing weights); experts: ``moe_stacked_experts`` (default: three stacked tensors,
    [gate | up] fused; False: a list of MLPs, as .keras files saved before kept them), ``expert_glu`` with ``glu_alpha`` / ``glu_limit`` (a gated unit
    of layers.activations.GLU_UNITS instead of act(gate) * up). See keras_models.layers.moe.
"""

import keras
from keras import ops

from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.latent_attention import LatentAttention
from keras_models.layers.mlp import MLP
from keras_models.layers.moe import MoE
from keras_models.layers.norms import make_norm

BLOCK_DEFAULTS = dict(
    num_kv_heads=None, head_dim=None, activation="silu", norm_type="rms", norm_eps=1e-6,
    norm_bias=True, norm_unit_offset=False, norm_position="pre", residual="serial",
    parallel_norms=1, sandwich_norms=False, residual_from_norm=False, qkv_bias=False,
    out_bias=False, fused_qkv=False, qk_norm=None, attn_scale=None, softcap=None,
    sliding_window=None, rotary_interleaved=False, mlp_gated=True, mlp_bias=False,
    num_experts=0, experts_per_token=2, normalize_top_k=True, attention_dropout=0.0,
    norm_scale=True, residual_scale=None, qk_norm_scope="head", clip_qkv=None,
    mlp_fused_gate_up=False, moe_intermediate_size=None, shared_expert_size=None,
    shared_expert_gate=False, attention_sinks=False, attention_type="standard", q_lora_rank=None,
    kv_lora_rank=None, qk_nope_head_dim=None, qk_rope_head_dim=None, v_head_dim=None,
    latent_norm_eps=1e-6, router_bias=False, router_score="softmax", router_groups=None,
    router_topk_groups=None, router_group_score="max", router_correction_bias=False,
    routed_scaling=None, moe_stacked_experts=True, expert_glu=None, glu_alpha=1.702, glu_limit=7.0,
    qk_norm_after_rope=False, query_temperature=None, moe_weight_inputs=False,
)


@keras.saving.register_keras_serializable(package="keras_models")
class FusedGateUpMLP(MLP):
    """Gated MLP whose gate and up projections are one Dense (``up``, width 2 * intermediate,
    [gate | up]): act(gate) * up -> down. ``gate_first=False``: the layout is [up | gate] (CLVP's
    gated linear unit)."""

    def __init__(self, hidden_size, intermediate_size, activation="silu", gated=True, use_bias=False,
                 kernel_initializer="glorot_uniform", gate_first=True, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)
        self.gate_first = bool(gate_first)
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.activation, self.gated, self.use_bias = activation, True, use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.act = get_activation(activation)
        d = dict(use_bias=use_bias, dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.gate = None
        self.up = keras.layers.Dense(2 * intermediate_size, name="gate_up", **d)
        self.down = keras.layers.Dense(hidden_size, name="down", **d)

    def call(self, x):
        h = self.up(x)
        n = self.intermediate_size
        if not self.gate_first:
            return self.down(h[..., :n] * self.act(h[..., n:]))
        return self.down(self.act(h[..., :n]) * h[..., n:])

    def get_config(self):
        config = super().get_config()
        config["gate_first"] = self.gate_first
        return config


@keras.saving.register_keras_serializable(package="keras_models")
class DecoderBlock(keras.layers.Layer):
    def __init__(self, hidden_size, num_heads, intermediate_size, kernel_initializer="glorot_uniform",
                 **options):
        unknown = set(options) - set(BLOCK_DEFAULTS) - {"name", "dtype", "trainable"}
        if unknown:
            raise TypeError(f"DecoderBlock: unknown options {sorted(unknown)}")
        base = {k: options.pop(k) for k in ("name", "dtype", "trainable") if k in options}
        super().__init__(**base)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.options = {**BLOCK_DEFAULTS, **options}
        o = self.options
        common = dict(dtype=self.dtype_policy)
        init = dict(kernel_initializer=self.kernel_initializer)

        def norm(name):
            return make_norm(o["norm_type"], o["norm_eps"], bias=o["norm_bias"],
                             unit_offset=o["norm_unit_offset"], scale=o["norm_scale"], name=name, **common)

        if o["norm_position"] not in ("pre", "post", "output"):
            raise ValueError(f"norm_position={o['norm_position']!r}: expected 'pre', 'post' or 'output'")

        if o["attention_type"] not in ("standard", "latent"):
            raise ValueError(f"attention_type={o['attention_type']!r}: expected 'standard' or 'latent'")
        if o["attention_type"] == "latent":
            self.attention = LatentAttention(
                hidden_size, num_heads, o["kv_lora_rank"], o["qk_nope_head_dim"], o["qk_rope_head_dim"],
                o["v_head_dim"], q_lora_rank=o["q_lora_rank"], use_bias=o["qkv_bias"],
                output_bias=o["out_bias"], scale=o["attn_scale"], norm_eps=o["latent_norm_eps"],
                rotary_interleaved=o["rotary_interleaved"], dropout=o["attention_dropout"],
                name="attention", **common, **init)
        else:
            self.attention = Attention(
                hidden_size, num_heads, num_kv_heads=o["num_kv_heads"], head_dim=o["head_dim"],
                use_bias=o["qkv_bias"], output_bias=o["out_bias"], dropout=o["attention_dropout"],
                scale=o["attn_scale"], fused_qkv=o["fused_qkv"], qk_norm=o["qk_norm"],
                qk_norm_eps=o["norm_eps"], qk_norm_unit_offset=o["norm_unit_offset"],
                softcap=o["softcap"], rotary_interleaved=o["rotary_interleaved"],
                qk_norm_scope=o["qk_norm_scope"], clip_qkv=o["clip_qkv"], sinks=o["attention_sinks"],
                qk_norm_after_rope=o["qk_norm_after_rope"], query_temperature=o["query_temperature"],
                name="attention", **common, **init,
            )
        self.attention_norm = norm("attention_norm")
        separate_mlp_norm = o["residual"] == "serial" or o["parallel_norms"] == 2
        self.mlp_norm = norm("mlp_norm") if separate_mlp_norm else None
        if o["sandwich_norms"]:
            self.attention_out_norm = norm("attention_out_norm")
            self.mlp_out_norm = norm("mlp_out_norm")
        if o["num_experts"]:
            self.mlp = MoE(hidden_size, o["moe_intermediate_size"] or intermediate_size, o["num_experts"],
                           o["experts_per_token"], activation=o["activation"],
                           normalize_top_k=o["normalize_top_k"], use_bias=o["mlp_bias"],
                           shared_expert_size=o["shared_expert_size"],
                           shared_expert_gate=o["shared_expert_gate"], router_bias=o["router_bias"],
                           router_score=o["router_score"], router_groups=o["router_groups"],
                           router_topk_groups=o["router_topk_groups"],
                           router_group_score=o["router_group_score"],
                           router_correction_bias=o["router_correction_bias"],
                           expert_scale=1.0 if o["routed_scaling"] is None else o["routed_scaling"],
                           stacked=o["moe_stacked_experts"], glu=o["expert_glu"], glu_alpha=o["glu_alpha"],
                           glu_limit=o["glu_limit"], weight_inputs=o["moe_weight_inputs"], name="mlp", **common,
                           **init)
        else:
            cls = FusedGateUpMLP if o["mlp_fused_gate_up"] else MLP
            self.mlp = cls(hidden_size, intermediate_size, o["activation"], gated=o["mlp_gated"],
                           use_bias=o["mlp_bias"], name="mlp", **common, **init)

    @property
    def sliding_window(self):
        return self.options["sliding_window"]

    def build(self, input_shape):
        for layer in (self.attention, self.attention_norm, self.mlp_norm, self.mlp,
                      getattr(self, "attention_out_norm", None), getattr(self, "mlp_out_norm", None)):
            if layer is not None:
                layer.build(input_shape)
        self.built = True

    def _attn(self, h, bias, rope, cache, cache_index, training):
        out, cache = self.attention.call_decoder(h, bias, rope, cache, cache_index, training=training)
        if self.options["sandwich_norms"]:
            out = self.attention_out_norm(out)
        return self._scaled(out), cache

    def _mlp(self, h):
        out = self.mlp(h)
        return self._scaled(self.mlp_out_norm(out) if self.options["sandwich_norms"] else out)

    def _scaled(self, out):
        s = self.options["residual_scale"]
        return out if s is None else out * ops.cast(s, out.dtype)

    def call(self, x, bias=None, rope=None, cache=None, cache_index=None, training=False):
        o = self.options
        if o["residual"] == "parallel":
            h = self.attention_norm(x)
            a, cache = self._attn(h, bias, rope, cache, cache_index, training)
            m = self._mlp(self.mlp_norm(x) if self.mlp_norm is not None else h)
            return x + a + m, cache
        if o["norm_position"] == "output":
            a, cache = self.attention.call_decoder(x, bias, rope, cache, cache_index, training=training)
            x = x + self._scaled(self.attention_norm(a))
            return x + self._scaled(self.mlp_norm(self.mlp(x))), cache
        if o["norm_position"] == "post":
            a, cache = self._attn(x, bias, rope, cache, cache_index, training)
            h = self.attention_norm(x + a)
            return self.mlp_norm(h + self._mlp(h)), cache
        h = self.attention_norm(x)
        a, cache = self._attn(h, bias, rope, cache, cache_index, training)
        x = (h if o["residual_from_norm"] else x) + a
        h = self.mlp_norm(x)
        return (h if o["residual_from_norm"] else x) + self._mlp(h), cache

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      **self.options)
        return config
