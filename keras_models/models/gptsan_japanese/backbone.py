"""GPTSAN-japanese (``model_type`` "gptsan-japanese", removed from Transformers 5): a prefix-LM
switch-transformer decoder.

* Embeddings: tokens plus a learned position table. Positions count from each row's first real
  token (``attention_mask``'s first 1: left padding is skipped), clipped to the table.
* Blocks (``num_switch_layers`` then ``num_ext_layers``), each sub-layer's *output* normalised and
  added (``h + LayerNorm(f(h))``, no pre-norm): bias-free multi-head self-attention, then
  - switch layers: top-1 routing (softmax over ``num_experts``, float32, ``router_bias``) to
    bias-free relu experts (``d_ff``); each expert takes at most ``expert_capacity`` tokens along
    the sequence (in order), a token beyond it keeps its own state; the result is scaled by the
    router's top probability, and ``tanh(soft_bypass_mlp(h))`` is added before the norm;
  - extra layers: a dense swish MLP (``d_ext``, with biases); a second position table is added to
    the hidden state before the first of them.
* Output: ``swish(last_project(h))``; the LM head is the token table plus ``final_logits_bias``.
* Attention: causal, except that tokens with ``token_type_ids`` 1 (the prefix) are seen by every
  position; padding keys are masked.
* ``spout`` (batch, ``d_spout``): eight tanh layers and a projection give one extra key and value
  per layer and head, placed before the first token (positions then start at 1 and left padding
  is not skipped, as in Transformers).

Generation carries, per layer, the key/value buffers (one slot ahead for the spout) and, for switch
layers, how many tokens each expert has taken so far, so that a cached step routes exactly as a
forward pass over the whole sequence does (Transformers 4.57.1 can only generate with full
forward passes for this class; its cache path fails). Generated tokens have token type 0.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.generation.backend import visible_length, write_time_slice
from keras_models.layers.mlp import MLP
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")
SPOUT_LAYERS = 8


@dataclass(frozen=True, kw_only=True)
class GPTSanJapaneseSpec(Spec):
    """GPTSanJapaneseConfig (Transformers 4.x)."""

    vocab_size: int = dim("vocab_size", 36000)
    max_position_embeddings: int = dim("max_position_embeddings", 1280)
    hidden_size: int = dim("d_model", 1024)
    d_ff: int = dim("d_ff", 8192, doc="switch experts' width")
    d_ext: int = dim("d_ext", 4096, doc="extra layers' MLP width")
    d_spout: int = hf("d_spout", 128, doc="spout width (0: no spout)")
    num_switch_layers: int = hf("num_switch_layers", 10)
    num_ext_layers: int = hf("num_ext_layers", 0)
    num_heads: int = dim("num_heads", 16)
    num_experts: int = dim("num_experts", 16)
    expert_capacity: int = dim("expert_capacity", 128)
    layer_norm_epsilon: float = hf("layer_norm_epsilon", 1e-5)
    router_bias: bool = hf("router_bias", False)
    initializer_factor: float = hf("initializer_factor", 0.002)
    separator_token_id: int | None = hf("separator_token_id", 35998)
    pad_token_id: int | None = hf("pad_token_id", 35995)
    eos_token_id: int | tuple | None = hf("eos_token_id", 35999)
    bos_token_id: int | None = hf("bos_token_id", None)

    unsupported = {"router_dtype": ("float32",)}
    # training-only settings (dropout, router noise), the router loss switches, and output flags
    ignored = ("dropout_rate", "router_jitter_noise", "router_ignore_padding_tokens", "output_router_logits",
               "use_cache", "num_layers")

    def validate(self, source="config.json"):
        for key, value in (("num_switch_layers", self.num_switch_layers), ("num_ext_layers", self.num_ext_layers),
                           ("d_spout", self.d_spout)):
            if isinstance(value, bool) or value < 0:
                raise ConfigError(f"{source}: {key}={value!r} must be an integer >= 0")
        if self.num_switch_layers + self.num_ext_layers == 0:
            raise ConfigError(f"{source}: num_switch_layers + num_ext_layers must be > 0")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: d_model={self.hidden_size} is not divisible by num_heads={self.num_heads}")


def _swish(x):
    return x * ops.sigmoid(x)


@_ser
class GPTSanJapaneseBlock(keras.layers.Layer):
    """One block (see the module docstring): ``switch`` or extra (dense) feed-forward."""

    def __init__(self, hidden_size, num_heads, eps, switch=True, d_ff=None, d_ext=None, num_experts=1,
                 expert_capacity=1, router_bias=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.eps, self.switch = hidden_size, num_heads, eps, switch
        self.d_ff, self.d_ext, self.num_experts = d_ff, d_ext, num_experts
        self.expert_capacity, self.router_bias = expert_capacity, router_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        d = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            keras.layers.Dense(hidden_size, use_bias=False, name=n, **d) for n in ("q_proj", "k_proj", "v_proj",
                                                                                    "out_proj"))
        self.attn_norm = keras.layers.LayerNormalization(epsilon=eps, name="attn_norm", dtype=self.dtype_policy)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=eps, name="ffn_norm", dtype=self.dtype_policy)
        if switch:
            self.router = keras.layers.Dense(num_experts, use_bias=router_bias, name="router", dtype="float32",
                                             kernel_initializer=self.kernel_initializer)
            self.experts = [MLP(hidden_size, d_ff, "relu", gated=False, name=f"expert_{e}", **d)
                            for e in range(num_experts)]
            self.bypass = keras.layers.Dense(hidden_size, use_bias=False, name="soft_bypass_mlp", **d)
        else:
            self.mlp = MLP(hidden_size, d_ext, "silu", gated=False, use_bias=True, name="ext_mlp", **d)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj, self.attn_norm, self.ffn_norm):
            layer.build(shape)
        if self.switch:
            for layer in (self.router, self.bypass, *self.experts):
                layer.build(shape)
        else:
            self.mlp.build(shape)
        self.built = True

    def attend(self, x, keys, values, allowed):
        """x (b, t, hidden); keys / values (b, s, heads, head_dim); allowed (b, t, s) bool."""
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        h, dh = self.num_heads, self.hidden_size // self.num_heads
        q = ops.reshape(self.q_proj(x), (b, t, h, dh)) * ops.cast(dh ** -0.5, x.dtype)
        scores = ops.cast(ops.einsum("bthd,bshd->bhts", q, ops.cast(keys, q.dtype)), "float32")
        # a masked key scores float32's lowest value (Transformers adds it: the same softmax)
        weights = ops.softmax(ops.where(allowed[:, None], scores, -3.4028234663852886e38), axis=-1)
        out = ops.einsum("bhts,bshd->bthd", ops.cast(weights, x.dtype), ops.cast(values, x.dtype))
        return self.out_proj(ops.reshape(out, (b, t, h * dh)))

    def switch_ffn(self, x, counts):
        """Top-1 switch feed-forward; ``counts`` (b, experts): tokens each expert took before this
        chunk. Returns (output, new counts)."""
        probs = ops.softmax(self.router(ops.cast(x, "float32")), axis=-1)
        choice = ops.one_hot(ops.argmax(probs, axis=-1), self.num_experts, dtype="float32")  # (b, t, e)
        priority = ops.cumsum(choice, axis=1) + counts[:, None, :]
        routed = choice * ops.cast(priority <= self.expert_capacity, "float32")
        out = ops.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + expert(x) * ops.cast(routed[..., e:e + 1], x.dtype)
        kept = ops.sum(routed, axis=-1, keepdims=True) > 0
        out = ops.where(kept, out, x) * ops.cast(ops.max(probs, axis=-1, keepdims=True), x.dtype)
        return out + ops.tanh(self.bypass(x)), counts + ops.sum(choice, axis=1)

    def call(self, x, keys, values, allowed, counts=None):
        x = x + self.attn_norm(self.attend(x, keys, values, allowed))
        if self.switch:
            y, counts = self.switch_ffn(x, counts)
        else:
            y = self.mlp(x)
        return x + self.ffn_norm(y), counts

    def rules(self, p):
        a = p + "self_attn."
        r = [r for n in ("q_proj", "k_proj", "v_proj", "out_proj")
             for r in dense_rules(f"{a}self_attn.{n}", getattr(self, n))]
        r += norm_rules(a + "norm", self.attn_norm) + norm_rules(p + "feed_forward.norm", self.ffn_norm)
        f = p + "feed_forward."
        if self.switch:
            r += dense_rules(f + "mlp.router.classifier", self.router) + dense_rules(f + "soft_bypass_mlp", self.bypass)
            for e, expert in enumerate(self.experts):
                r += dense_rules(f"{f}mlp.experts.expert_{e}.wi", expert.up)
                r += dense_rules(f"{f}mlp.experts.expert_{e}.wo", expert.down)
        else:
            r += dense_rules(f + "mlp.wi", self.mlp.up) + dense_rules(f + "mlp.wo", self.mlp.down)
        return r

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads, eps=self.eps, switch=self.switch,
                      d_ff=self.d_ff, d_ext=self.d_ext, num_experts=self.num_experts,
                      expert_capacity=self.expert_capacity, router_bias=self.router_bias,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@_ser
@register_backbone("gptsan-japanese")
class GPTSanJapaneseBackbone(SpecBackbone):
    """The final hidden state (batch, seq, d_model) of ``{"input_ids", "attention_mask",
    "token_type_ids", "spout"}`` (all but the ids optional; ``token_type_ids`` 1 marks the prefix)."""

    spec_cls = GPTSanJapaneseSpec
    base_model_prefix = "model"
    hf_architecture = "GPTSanJapaneseModel"
    verified_backends = ("jax", "torch", "tensorflow")
    lora_targets = ("q_proj", "v_proj")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.num_layers = s.num_switch_layers + s.num_ext_layers
        self.initializer_range = s.initializer_factor
        self.hidden_act = "silu"
        self.dropout_rate = 0.0
        init = keras.initializers.RandomNormal(stddev=s.initializer_factor * s.hidden_size ** -0.5)
        table = keras.initializers.RandomNormal(stddev=s.initializer_factor)
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, embeddings_initializer=table,
                                                      name="embed_tokens", dtype=d)
        self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                         embeddings_initializer=table, name="position_embeddings",
                                                         dtype=d)
        self.extra_position_embedding = None
        if s.num_ext_layers:
            self.extra_position_embedding = keras.layers.Embedding(
                s.max_position_embeddings, s.hidden_size, embeddings_initializer=table,
                name="extra_position_embeddings", dtype=d)
        self.blocks = [
            GPTSanJapaneseBlock(s.hidden_size, s.num_heads, s.layer_norm_epsilon, switch=i < s.num_switch_layers,
                                d_ff=s.d_ff, d_ext=s.d_ext, num_experts=s.num_experts,
                                expert_capacity=s.expert_capacity, router_bias=s.router_bias,
                                kernel_initializer=init, name=f"block_{i}", dtype=d)
            for i in range(self.num_layers)]
        self.last_project = keras.layers.Dense(s.hidden_size, kernel_initializer=init, name="last_project", dtype=d)
        self.spout = []
        if s.d_spout:
            self.spout = [keras.layers.Dense(s.d_spout, use_bias=False, activation="tanh", kernel_initializer=init,
                                             name=f"spout_{i}", dtype=d) for i in range(SPOUT_LAYERS)]
            self.spout.append(keras.layers.Dense(self.num_layers * 2 * s.hidden_size, use_bias=False,
                                                 kernel_initializer=init, name="spout_out", dtype=d))

    @property
    def options(self):
        """What CausalLM reads from a decoder backbone."""
        return {"tie_word_embeddings": True, "final_logit_softcap": None, "lm_head_bias": False,
                "initializer_range": self.spec.initializer_factor, "embed_proj_dim": None, "logit_scale": None}

    def build(self, input_shape=None):
        h = self.hidden_size
        for table in (self.token_embedding, self.position_embedding, self.extra_position_embedding):
            if table is not None:
                table.build((None, None))
        for block in self.blocks:
            block.build((None, None, h))
        self.last_project.build((None, None, h))
        for i, layer in enumerate(self.spout):
            layer.build((None, self.spec.d_spout))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def init_cache(self, batch_size, max_length):
        """Per layer (keys, values, expert counts) over ``max_length + 1`` slots (slot 0: the
        spout), and a (batch,) flag: 1 where a spout was given."""
        s = self.spec
        shape = (batch_size, max_length + 1, s.num_heads, s.hidden_size // s.num_heads)
        layers = tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype),
                        ops.zeros((batch_size, s.num_experts), "float32")) for _ in self.blocks)
        return {"layers": layers, "spout": ops.zeros((batch_size,), "float32")}

    def spout_kv(self, spout):
        """(batch, d_spout) -> per layer (keys, values) of one position: (batch, 1, heads, head_dim)."""
        s = self.spec
        y = ops.cast(spout, self.compute_dtype)
        for layer in self.spout:
            y = layer(y)
        y = ops.reshape(y, (-1, self.num_layers, 2, s.num_heads, 1, s.hidden_size // s.num_heads))
        return [(ops.swapaxes(y[:, i, 0], 1, 2), ops.swapaxes(y[:, i, 1], 1, 2)) for i in range(self.num_layers)]

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, token_type_ids=None, spout=None):
        """Hidden states of ``input_ids`` written at ``cache_index``; ``attention_mask`` spans the
        buffer (batch, max_length). ``token_type_ids`` (batch, t) mark the chunk's prefix tokens;
        ``spout`` (batch, d_spout) fills slot 0 (written again at every call: the same values)."""
        s = self.spec
        b, t = ops.shape(input_ids)[0], input_ids.shape[1]
        mask = ops.cast(attention_mask, "int32")
        length = mask.shape[1]
        flag = cache["spout"]
        spout_kv = None
        if spout is not None:
            if not s.d_spout:
                raise InputError("GPTSAN: spout given, but this config has d_spout=0")
            spout_kv = self.spout_kv(spout)
            flag = ops.ones((b,), "float32")
        has_spout = flag > 0.5
        # positions: from the first real token (Transformers' argmin(1 - mask)), or from 1 after a spout
        first = ops.cast(ops.argmax(mask, axis=-1), "int32")
        offset = ops.where(has_spout, 1, -first)
        lo = ops.where(has_spout, 1, 0)
        steps = ops.arange(t, dtype="int32")[None, :] + ops.cast(cache_index, "int32")
        positions = ops.clip(steps + offset[:, None], lo[:, None], s.max_position_embeddings - 1)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        # keys: slot 0 the spout, slot j + 1 the token at j; causal, or a prefix token of this chunk
        n = visible_length(cache_index, t)
        n = length if n is None else n
        j = ops.arange(n, dtype="int32")[None, None, :]
        query = steps[:, :, None]
        allowed = j <= query
        if token_type_ids is not None and token_type_ids.shape[1] == t:
            types = ops.cast(token_type_ids, "int32")
            chunk = j - ops.cast(cache_index, "int32")
            in_chunk = ops.logical_and(chunk >= 0, chunk < t)
            prefix = ops.take_along_axis(types, ops.clip(ops.broadcast_to(chunk[:, 0], (b, n)), 0, t - 1), axis=1)
            allowed = ops.logical_or(allowed, ops.logical_and(in_chunk, prefix[:, None, :] > 0))
        allowed = ops.logical_and(allowed, mask[:, None, :n] > 0)
        allowed = ops.concatenate([ops.broadcast_to(has_spout[:, None, None], (b, t, 1)), allowed], axis=-1)
        new_layers = []
        for i, (block, (keys, values, counts)) in enumerate(zip(self.blocks, cache["layers"])):
            if i == s.num_switch_layers and self.extra_position_embedding is not None:
                x = x + self.extra_position_embedding(positions)
            hd = s.hidden_size // s.num_heads
            k = ops.reshape(block.k_proj(x), (b, t, s.num_heads, hd))
            v = ops.reshape(block.v_proj(x), (b, t, s.num_heads, hd))
            keys = write_time_slice(keys, k, ops.cast(cache_index, "int32") + 1)
            values = write_time_slice(values, v, ops.cast(cache_index, "int32") + 1)
            if spout_kv is not None:
                keys = write_time_slice(keys, spout_kv[i][0], 0)
                values = write_time_slice(values, spout_kv[i][1], 0)
            x, counts = block(x, keys[:, :n + 1], values[:, :n + 1], allowed, counts)
            new_layers.append((keys, values, counts))
        x = _swish(self.last_project(x))
        return x, {"layers": tuple(new_layers), "spout": flag}

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        ids = inputs["input_ids"]
        b, t = ops.shape(ids)[0], ids.shape[1]
        if t is None:
            raise InputError("GPTSAN needs a sequence length known when the model is traced")
        mask = inputs.get("attention_mask")
        mask = ops.ones((b, t), "int32") if mask is None else mask
        cache = self.init_cache(b, t)
        return self.call_with_cache(ids, cache, 0, mask, inputs.get("token_type_ids"), inputs.get("spout"))[0]

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        r = [Rule("embed_tokens.weight", self.token_embedding.embeddings),
             Rule("position_embeddings.weight", self.position_embedding.embeddings)]
        if self.extra_position_embedding is not None:
            r.append(Rule("extra_position_embeddings.weight", self.extra_position_embedding.embeddings))
        for i, block in enumerate(self.blocks):
            r += block.rules(f"blocks.{i}.")
        r += dense_rules("last_project", self.last_project)
        for i, layer in enumerate(self.spout):
            r += dense_rules(f"spout.{2 * i}", layer)  # nn.Sequential: Linear, Tanh, Linear, ...
        return r


__all__ = ["GPTSanJapaneseSpec", "GPTSanJapaneseBackbone", "GPTSanJapaneseBlock"]
