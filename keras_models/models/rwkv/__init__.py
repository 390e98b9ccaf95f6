"""RWKV (v4, model_type ``rwkv``): a recurrent language model. Each block is a time mix (a WKV
recurrence, a per-channel exponentially decaying average of values weighted by ``exp(key)``, with
a bonus ``time_first`` for the current token) and a channel mix (squared-ReLU MLP gated by a
sigmoid receptance); both mix every input with the previous token's (the "token shift").

* The embeddings go through a LayerNorm before the first block (``pre_ln``); the final norm
  (``ln_out``) uses eps 1e-5 whatever ``layer_norm_epsilon`` says, as in Transformers.
* ``rescale_every`` (default 6): outside training, Transformers divides block ``i``'s time-mix
  output and channel-mix value weights by ``2 ** (i // rescale_every)`` and halves the hidden
  state after every ``rescale_every`` blocks (fp16 range). We do the same at call time (dividing
  by a power of two is exact) when ``training`` is False; the stored weights stay unscaled, so
  ``save_to_preset`` writes the checkpoint's own values.
* Generation carries the recurrent state instead of a KV cache: per layer the channel-mix and
  time-mix token-shift vectors and the WKV numerator, denominator and running max (Transformers'
  five state tensors). ``init_cache(batch, max_length)`` ignores ``max_length``: the state does
  not grow.
* ``attention_mask``: Transformers ignores it (a left-padded row there reads its padding). Here a
  position with mask 0 leaves the state unchanged and is not seen by the token shift, so a left-
  padded row gives the same outputs as the unpadded one (and generation's left padding is exact).
  Right-padded and unpadded rows equal Transformers' at every real position.
"""

from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")
NEG = -1e38  # the WKV running max before the first token (exp(NEG - x) == 0)


@dataclass(frozen=True, kw_only=True)
class RwkvSpec(Spec):
    vocab_size: int = dim("vocab_size", 50277)
    hidden_size: int = dim("hidden_size", 4096)
    num_layers: int = dim("num_hidden_layers", 32)
    attention_hidden_size: int | None = hf("attention_hidden_size", None, doc="WKV width (None: hidden_size)")
    intermediate_size: int | None = hf("intermediate_size", None, doc="channel-mix width (None: 4 * hidden)")
    layer_norm_epsilon: float = hf("layer_norm_epsilon", 1e-5)
    rescale_every: int = hf("rescale_every", 6, doc="inference-time halving period (0: off)")
    context_length: int = dim("context_length", 1024, doc="Transformers' CUDA kernel length; no limit here")
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    bos_token_id: int | tuple | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 0)

    def validate(self, source="config.json"):
        for key, value in (("attention_hidden_size", self.attention_hidden_size),
                           ("intermediate_size", self.intermediate_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{source}: {key}={value!r} must be a positive integer or null")
        if isinstance(self.rescale_every, bool) or not isinstance(self.rescale_every, int) or self.rescale_every < 0:
            raise ConfigError(f"{source}: rescale_every={self.rescale_every!r} must be an integer >= 0")


def token_shift(x, prev, mask, want_last):
    """(x shifted one step right with ``prev`` (batch, C) in front, the last real x or ``prev``).
    A position whose predecessor is masked out sees ``prev`` (left padding is skipped)."""
    shifted = ops.concatenate([prev[:, None, :], x[:, :-1, :]], axis=1)
    if mask is not None:
        before = ops.concatenate([ops.ones_like(mask[:, :1]), mask[:, :-1]], axis=1)
        shifted = ops.where(before[:, :, None] > 0, shifted, prev[:, None, :])
    if not want_last:
        return shifted, None
    if mask is None:
        return shifted, x[:, -1, :]
    positions = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
    last = ops.max(ops.where(mask > 0, positions, -1), axis=1)  # (batch,) the last real position or -1
    picked = ops.take_along_axis(x, ops.maximum(last, 0)[:, None, None], axis=1)[:, 0, :]
    return shifted, ops.where(last[:, None] >= 0, picked, prev)


def wkv(decay, first, key, value, mask, state):
    """Transformers' CPU WKV recurrence in float32 (numerator, denominator, running max), over
    (batch, T, A) keys and values; a masked-out step leaves the state as it was."""
    w = -ops.exp(ops.cast(decay, "float32"))
    u = ops.cast(first, "float32")

    def step(carry, xs):
        num, den, mx = carry
        k, v, m = xs
        top = ops.maximum(mx, k + u)
        e1, e2 = ops.exp(mx - top), ops.exp(k + u - top)
        out = (e1 * num + e2 * v) / (e1 * den + e2)
        top = ops.maximum(mx + w, k)
        e1, e2 = ops.exp(mx + w - top), ops.exp(k - top)
        new = (e1 * num + e2 * v, e1 * den + e2, top)
        keep = m[:, None] > 0
        carry = tuple(ops.where(keep, n, o) for n, o in zip(new, carry))
        # TensorFlow's scan wants outputs shaped like the carry: (out, two unused slots)
        return carry, (out,) + carry[1:]

    key, value = ops.cast(key, "float32"), ops.cast(value, "float32")
    if mask is None:
        mask = ops.ones(ops.shape(key)[:2], "float32")
    mask = ops.cast(mask, "float32")
    if key.shape[1] == 1:  # one decode step: no loop
        state, out = step(state, (key[:, 0], value[:, 0], mask[:, 0]))
        return out[0][:, None], state
    xs = (ops.transpose(key, (1, 0, 2)), ops.transpose(value, (1, 0, 2)), ops.transpose(mask, (1, 0)))
    state, out = ops.scan(step, state, xs)
    return ops.transpose(out[0], (1, 0, 2)), state


@_ser
class RwkvBlock(keras.layers.Layer):
    """One RWKV block: x + time_mix(ln1(x)), then + channel_mix(ln2(.)). ``state``: this layer's
    (channel-mix shift, time-mix shift, WKV numerator, denominator, max)."""

    def __init__(self, hidden_size, attention_size, intermediate_size, eps, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.attention_size, self.intermediate_size = hidden_size, attention_size, intermediate_size
        self.eps = eps
        d = self.dtype_policy

        def dense(units, name):
            return keras.layers.Dense(units, use_bias=False, name=name, dtype=d)

        self.ln1 = keras.layers.LayerNormalization(epsilon=eps, name="ln1", dtype=d)
        self.ln2 = keras.layers.LayerNormalization(epsilon=eps, name="ln2", dtype=d)
        self.att_key, self.att_value = dense(attention_size, "key"), dense(attention_size, "value")
        self.att_receptance, self.att_output = dense(attention_size, "receptance"), dense(hidden_size, "output")
        self.ffn_key, self.ffn_value = dense(intermediate_size, "ffn_key"), dense(hidden_size, "ffn_value")
        self.ffn_receptance = dense(hidden_size, "ffn_receptance")

    def build(self, input_shape=None):
        h, a, i = self.hidden_size, self.attention_size, self.intermediate_size
        # time_decay / time_first stay float32 (Transformers keeps them in fp32)
        self.time_decay = self.add_weight(name="time_decay", shape=(a,), initializer="zeros", dtype="float32")
        self.time_first = self.add_weight(name="time_first", shape=(a,), initializer="zeros", dtype="float32")
        for name in ("att_mix_key", "att_mix_value", "att_mix_receptance", "ffn_mix_key", "ffn_mix_receptance"):
            setattr(self, name, self.add_weight(name=name, shape=(h,), initializer="ones"))
        for norm in (self.ln1, self.ln2):
            norm.build((None, None, h))
        for layer, width in ((self.att_key, h), (self.att_value, h), (self.att_receptance, h), (self.att_output, a),
                             (self.ffn_key, h), (self.ffn_value, i), (self.ffn_receptance, h)):
            layer.build((None, None, width))
        self.built = True

    @staticmethod
    def _mix(x, shifted, weight):
        weight = ops.cast(weight, x.dtype)
        return x * weight + shifted * (1 - weight)

    def call(self, x, state, token_mask=None, out_scale=1.0, want_state=True):
        ffn_prev, att_prev, num, den, mx = state
        mask = token_mask
        h = self.ln1(x)
        shifted, att_last = token_shift(h, ops.cast(att_prev, h.dtype), mask, want_state)
        k = self.att_key(self._mix(h, shifted, self.att_mix_key))
        v = self.att_value(self._mix(h, shifted, self.att_mix_value))
        r = ops.sigmoid(self.att_receptance(self._mix(h, shifted, self.att_mix_receptance)))
        out, (num, den, mx) = wkv(self.time_decay, self.time_first, k, v, mask, (num, den, mx))
        att = self.att_output(r * ops.cast(out, r.dtype))
        x = x + (att / out_scale if out_scale != 1 else att)

        h = self.ln2(x)
        shifted, ffn_last = token_shift(h, ops.cast(ffn_prev, h.dtype), mask, want_state)
        k = ops.square(ops.relu(self.ffn_key(self._mix(h, shifted, self.ffn_mix_key))))
        v = self.ffn_value(k)
        if out_scale != 1:
            v = v / out_scale
        x = x + ops.sigmoid(self.ffn_receptance(self._mix(h, shifted, self.ffn_mix_receptance))) * v
        if not want_state:
            return x, None
        return x, (ops.cast(ffn_last, ffn_prev.dtype), ops.cast(att_last, att_prev.dtype), num, den, mx)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, attention_size=self.attention_size,
                      intermediate_size=self.intermediate_size, eps=self.eps)
        return config


@_ser
@register_backbone("rwkv")
class RwkvBackbone(SpecBackbone):
    """Returns the final-norm hidden state (batch, seq, hidden) of ``{"input_ids",
    "attention_mask"}`` (the mask optional; see the module docstring)."""

    spec_cls = RwkvSpec
    base_model_prefix = "rwkv"
    hf_architecture = "RwkvModel"
    verified_backends = ("jax", "torch", "tensorflow")
    lora_targets = ("key", "value", "receptance")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size, self.num_layers = s.vocab_size, s.hidden_size, s.num_layers
        self.attention_size = s.attention_hidden_size or s.hidden_size
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embeddings", dtype=d)
        self.pre_ln = keras.layers.LayerNormalization(epsilon=s.layer_norm_epsilon, name="pre_ln", dtype=d)
        self.blocks = [RwkvBlock(s.hidden_size, self.attention_size, s.intermediate_size or 4 * s.hidden_size,
                                 s.layer_norm_epsilon, name=f"block_{i}", dtype=d) for i in range(s.num_layers)]
        self.ln_out = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_out", dtype=d)

    @property
    def options(self):
        """What CausalLM reads from a decoder backbone."""
        return {"tie_word_embeddings": self.spec.tie_word_embeddings, "final_logit_softcap": None,
                "lm_head_bias": False, "initializer_range": 0.02, "embed_proj_dim": None, "logit_scale": None}

    def build(self, input_shape=None):
        h = self.hidden_size
        self.token_embedding.build((None, None))
        for layer in (self.pre_ln, self.ln_out, *self.blocks):
            layer.build((None, None, h))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def init_cache(self, batch_size, max_length=None):
        """Per layer (channel-mix shift, time-mix shift, WKV numerator, denominator, max); the
        state does not grow with the length (``max_length`` is accepted for the engine)."""
        h, a = self.hidden_size, self.attention_size
        zeros = ops.zeros((batch_size, h), self.compute_dtype)
        return tuple((zeros, zeros, ops.zeros((batch_size, a), "float32"), ops.zeros((batch_size, a), "float32"),
                      ops.full((batch_size, a), NEG, "float32")) for _ in self.blocks)

    def _run(self, input_ids, mask, cache, training, want_state):
        x = self.pre_ln(self.token_embedding(input_ids))
        every = 0 if training else self.spec.rescale_every
        new = []
        for i, block in enumerate(self.blocks):
            # ``call`` directly: Layer.__call__ would cast the float32 WKV state to a bf16 / fp16
            # compute dtype (the blocks are built by ``build``)
            x, layer_state = block.call(x, cache[i], token_mask=mask,
                                        out_scale=float(2 ** (i // every)) if every else 1.0, want_state=want_state)
            new.append(layer_state)
            if every and (i + 1) % every == 0:
                x = x / 2
        return self.ln_out(x), (tuple(new) if want_state else None)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        if mask is not None:
            mask = ops.cast(mask, "int32")
        cache = self.init_cache(ops.shape(ids)[0])
        return self._run(ids, mask, cache, training, want_state=False)[0]

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask):
        """Hidden states of ``input_ids`` continuing the recurrent ``cache``; ``attention_mask``
        spans the generation buffer (batch, max_length), read at [cache_index, + seq)."""
        batch, t = ops.shape(input_ids)[0], ops.shape(input_ids)[1]
        mask = ops.slice(ops.cast(attention_mask, "int32"), (0, cache_index), (batch, t))
        return self._run(input_ids, mask, cache, False, want_state=True)

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        h = self.hidden_size
        r = [Rule("embeddings.weight", self.token_embedding.embeddings)]
        r += norm_rules("blocks.0.pre_ln", self.pre_ln) + norm_rules("ln_out", self.ln_out)
        vec = Reshape((1, 1, h), (h,))
        for i, b in enumerate(self.blocks):
            p = f"blocks.{i}."
            r += norm_rules(p + "ln1", b.ln1) + norm_rules(p + "ln2", b.ln2)
            r += [Rule(p + "attention.time_decay", b.time_decay), Rule(p + "attention.time_first", b.time_first)]
            for name in ("key", "value", "receptance"):
                r.append(Rule(f"{p}attention.time_mix_{name}", getattr(b, f"att_mix_{name}"), vec))
                r += dense_rules(f"{p}attention.{name}", getattr(b, f"att_{name}"))
            r += dense_rules(p + "attention.output", b.att_output)
            for name in ("key", "receptance"):
                r.append(Rule(f"{p}feed_forward.time_mix_{name}", getattr(b, f"ffn_mix_{name}"), vec))
            for name in ("key", "receptance", "value"):
                r += dense_rules(f"{p}feed_forward.{name}", getattr(b, f"ffn_{name}"))
        return r


@_ser
@register_task(RwkvBackbone, "CausalLM", ("RwkvForCausalLM",))
class RwkvCausalLM(CausalLM):
    """Logits (batch, seq, vocab) from the ``head`` Linear (no bias); ``generate`` carries the
    recurrent state (``init_cache`` / ``call_with_cache`` of the backbone)."""

    hf_lm_head = "head"
    hf_head_patterns = ("head.*",)


__all__ = ["RwkvSpec", "RwkvBackbone", "RwkvBlock", "RwkvCausalLM"]
