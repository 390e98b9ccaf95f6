"""Reformer (``model_type`` "reformer"): reversible residual layers alternating chunked local
self-attention and LSH self-attention, axial position embeddings, a 2 * hidden wide output.

* Inference runs the reversible layers forward: two streams start equal to the embeddings; per
  layer ``attn += attention(LN(hidden))`` then ``hidden += feed_forward(LN(attn))``; the output is
  a LayerNorm over ``concat(attn, hidden)`` (width 2 * hidden_size). The feed-forward chunking
  (``chunk_size_feed_forward``) does not change the numbers.
* As Transformers does outside training, a sequence longer than the smallest chunk length and
  not a multiple of the least common multiple of the chunk lengths is right-padded with
  ``pad_token_id`` (mask 0) to that multiple, and the outputs are cut back.
* Local attention: queries of each chunk attend to their chunk and ``local_num_chunks_before`` /
  ``_after`` neighbours (wrapping around at the ends, as Transformers does), keys scaled by
  1 / sqrt(head size), masked scores -1e9; a sequence no longer than one chunk is plain attention.
* LSH attention: shared query/key projection, keys length-normalised (rsqrt(mean(x^2) + 1e-6)) and
  scaled by 1 / sqrt(head size), a token's own key scored -1e5 (applied after the padding /
  causal mask, -1e9). A sequence (after padding) no longer than ``lsh_attn_chunk_length`` is plain
  attention. A longer one is hashed as Transformers does in eval: random rotations (heads, head
  size, ``num_hashes``, buckets / 2) equal to ``torch.manual_seed(hash_seed); torch.randn(...)``
  (re-drawn in numpy, no torch needed), bucket = argmax over [xR, -xR] (per factor when
  ``num_buckets`` is a list; unset, it is Transformers' choice for the length), padding in an extra
  bucket; the (hash round, bucket, position) order is sorted, each chunk attends to itself and
  ``lsh_num_chunks_before`` / ``_after`` neighbours (wrapping), and the hash rounds are combined by
  the softmax of their log-sum-exp scores. With ``hash_seed`` null Transformers draws new
  rotations at every call (its outputs are random); here the draw of seed 0 is used, with a
  warning. Transformers also writes an unset ``num_buckets`` into its config on its first long
  call (later calls keep it); here it is chosen again for each length.
* Generation follows Transformers' cached decoding (``ReformerBackbone.call_with_cache``): the
  prompt runs the full model and caches each layer's attention input (and an LSH layer's buckets
  when it hashed); each new token is then computed alone against that cache: local layers attend
  to the cached inputs of their chunk window, LSH layers to every earlier token until the buffer
  reaches one chunk, then to the new token's chunk and neighbours in the bucket-sorted cache. As
  in Transformers' generate, the attention mask is dropped (prompt padding is read as tokens), and
  ``num_buckets`` must be set to hash during decoding. Transformers gathers the sorted tokens from
  the first batch row for every row (a bug for batches > 1); here each row uses its own.
* Heads: ReformerModelWithLMHead (CausalLM), ReformerForMaskedLM (MaskedLM),
  ReformerForSequenceClassification (TextClassifier), ReformerForQuestionAnswering (QuestionAnswerer).
"""

import math
from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.reformer.layer import ReformerLayer
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.models.encoder.tasks import ClassifierDenseOutProj
from keras_models.tasks.causal_lm import CausalLM
from keras_models.tasks.text import MaskedLM, QuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")


def _tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True, kw_only=True)
class ReformerSpec(Spec):
    vocab_size: int = dim("vocab_size", 320)
    hidden_size: int = dim("hidden_size", 256)
    num_attention_heads: int = dim("num_attention_heads", 12)
    attention_head_size: int = dim("attention_head_size", 64)
    attn_layers: tuple = hf("attn_layers", ("local", "lsh", "local", "lsh", "local", "lsh"), read=_tuple)
    axial_pos_embds: bool = hf("axial_pos_embds", True)
    axial_pos_shape: tuple = hf("axial_pos_shape", (64, 64), read=_tuple)
    axial_pos_embds_dim: tuple = hf("axial_pos_embds_dim", (64, 192), read=_tuple)
    axial_norm_std: float = hf("axial_norm_std", 1.0)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    feed_forward_size: int = dim("feed_forward_size", 512)
    hidden_act: str = hf("hidden_act", "relu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    local_attn_chunk_length: int = dim("local_attn_chunk_length", 64)
    local_num_chunks_before: int = hf("local_num_chunks_before", 1)
    local_num_chunks_after: int = hf("local_num_chunks_after", 0)
    lsh_attn_chunk_length: int = dim("lsh_attn_chunk_length", 64)
    lsh_num_chunks_before: int = hf("lsh_num_chunks_before", 1)
    lsh_num_chunks_after: int = hf("lsh_num_chunks_after", 0)
    num_buckets: int | tuple | None = hf("num_buckets", None, read=_tuple)
    num_hashes: int = dim("num_hashes", 1)
    hash_seed: int | None = hf("hash_seed", None)
    is_decoder: bool = hf("is_decoder", False)
    chunk_size_lm_head: int = hf("chunk_size_lm_head", 0)
    chunk_size_feed_forward: int = hf("chunk_size_feed_forward", 0)
    tie_word_embeddings: bool = hf("tie_word_embeddings", False)
    pad_token_id: int | None = hf("pad_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    bos_token_id: int | None = hf("bos_token_id", None)

    # the LM head reads 2 * hidden_size: it cannot be tied to the hidden_size-wide table
    unsupported = {"tie_word_embeddings": (False, None)}

    def validate(self, source="config.json"):
        layers = self.attn_layers
        if not isinstance(layers, tuple) or not layers or any(a not in ("local", "lsh") for a in layers):
            raise ConfigError(f"{source}: attn_layers={layers!r} must be a non-empty list of 'local' / 'lsh'")
        for key in ("local_num_chunks_before", "local_num_chunks_after", "lsh_num_chunks_before",
                    "lsh_num_chunks_after"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{source}: {key}={value!r} must be an integer >= 0")
        if self.axial_pos_embds:
            shape, dims = self.axial_pos_shape, self.axial_pos_embds_dim
            for key, value in (("axial_pos_shape", shape), ("axial_pos_embds_dim", dims)):
                if (not isinstance(value, tuple) or len(value) != 2
                        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)):
                    raise ConfigError(f"{source}: {key}={value!r} must be two positive integers")
            if sum(dims) != self.hidden_size:
                raise ConfigError(f"{source}: axial_pos_embds_dim={dims!r} must sum to hidden_size "
                                  f"({self.hidden_size})")
        try:
            get_activation(self.hidden_act)
        except Exception as err:
            raise ConfigError(f"{source}: hidden_act={self.hidden_act!r} is not supported") from err

@_ser
@register_backbone("reformer")
class ReformerBackbone(SpecBackbone):
    """Returns the final hidden state (batch, seq, 2 * hidden_size) of ``{"input_ids",
    "attention_mask"}`` (the mask optional): the LayerNorm of the two reversible streams."""

    spec_cls = ReformerSpec
    base_model_prefix = "reformer"
    hf_architecture = "ReformerModel"
    initializer_range = 0.02  # what fresh task heads are drawn with
    dropout_rate = 0.0
    slot_dependent = True  # absolute positions from the buffer slot: generation must not left-pad to a bucket
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.vocab_size, self.hidden_size = s.vocab_size, s.hidden_size
        self.num_layers = len(s.attn_layers)
        self.hidden_act = s.hidden_act
        self.token_embedding = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embeddings", dtype=d)
        if not s.axial_pos_embds:
            self.position_embedding = keras.layers.Embedding(s.max_position_embeddings, s.hidden_size,
                                                             name="position_embeddings", dtype=d)
        keys = ("hidden_size", "num_attention_heads", "attention_head_size", "feed_forward_size", "hidden_act",
                "layer_norm_eps", "local_attn_chunk_length", "local_num_chunks_before", "local_num_chunks_after",
                "lsh_attn_chunk_length", "is_decoder", "lsh_num_chunks_before", "lsh_num_chunks_after",
                "num_buckets", "num_hashes", "hash_seed", "max_position_embeddings")
        layer_config = {k: getattr(s, k) for k in keys}
        self.layers_ = [ReformerLayer(layer_config, kind, name=f"layer_{i}", dtype=d)
                        for i, kind in enumerate(s.attn_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", dtype=d)
        kinds = set(s.attn_layers)
        lengths = [s.local_attn_chunk_length if k == "local" else s.lsh_attn_chunk_length for k in sorted(kinds)]
        self.lcm_chunk = math.lcm(*lengths)
        self.min_chunk = min(lengths)

    @property
    def options(self):
        return {"tie_word_embeddings": False, "final_logit_softcap": None, "lm_head_bias": True,
                "initializer_range": 0.02, "embed_proj_dim": 2 * self.hidden_size, "logit_scale": None}

    def build(self, input_shape=None):
        s, h = self.spec, self.hidden_size
        self.token_embedding.build((None, None))
        if s.axial_pos_embds:
            (rows, cols), (d0, d1) = s.axial_pos_shape, s.axial_pos_embds_dim
            self.axial_rows = self.add_weight(name="axial_rows", shape=(rows, d0), initializer="ones")
            self.axial_cols = self.add_weight(name="axial_cols", shape=(cols, d1), initializer="ones")
        else:
            self.position_embedding.build((None, None))
        for layer in self.layers_:
            layer.build((None, None, h))
        self.final_norm.build((None, None, 2 * h))
        self.built = True

    def _positions(self, t):
        s = self.spec
        if not s.axial_pos_embds:
            return self.position_embedding(ops.arange(t, dtype="int32"))
        rows, cols = s.axial_pos_shape
        if t > rows * cols:
            raise InputError(f"Reformer: {t} positions (after padding) exceed axial_pos_shape {s.axial_pos_shape}")
        pos = ops.arange(t, dtype="int32")
        return ops.concatenate([ops.take(self.axial_rows, pos // cols, axis=0),
                                ops.take(self.axial_cols, pos % cols, axis=0)], axis=-1)

    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
        return self._forward(ids, mask)[0]

    def _forward(self, ids, mask, collect=False):
        """(hidden (B, T, 2 * hidden), per layer (attention input, buckets or None) when ``collect``)."""
        s = self.spec
        ids = ops.cast(ids, "int32")
        t = ids.shape[1]
        if t > s.max_position_embeddings:
            raise InputError(f"Reformer: {t} tokens exceed max_position_embeddings={s.max_position_embeddings}")
        pad = 0
        if t % self.lcm_chunk != 0 and t > self.min_chunk:
            pad = self.lcm_chunk - t % self.lcm_chunk
            b = ops.shape(ids)[0]
            ids = ops.concatenate([ids, ops.full((b, pad), s.pad_token_id or 0, "int32")], axis=1)
            mask = ops.ones((b, t), "int32") if mask is None else ops.cast(mask, "int32")
            mask = ops.concatenate([mask, ops.zeros((b, pad), "int32")], axis=1)
        x = self.token_embedding(ids) + ops.cast(self._positions(t + pad), self.compute_dtype)[None]
        attn = hidden = x
        collected = []
        for layer in self.layers_:
            if collect:
                attn, hidden, normed, buckets = layer(attn, hidden, token_mask=mask, collect=True)
                collected.append((normed[:, :t], None if buckets is None else buckets[..., :t]))
            else:
                attn, hidden = layer(attn, hidden, token_mask=mask)
        out = self.final_norm(ops.concatenate([attn, hidden], axis=-1))
        return (out[:, :t] if pad else out), collected

    @property
    def max_generation_length(self):
        """The longest token buffer: the positions (max_position_embeddings, axial_pos_shape)."""
        s = self.spec
        cap = s.max_position_embeddings
        if s.axial_pos_embds:
            cap = min(cap, s.axial_pos_shape[0] * s.axial_pos_shape[1])
        return cap

    # --- generation: Transformers' incremental cache (attention inputs and LSH buckets) -------------
    def init_cache(self, batch_size, max_length):
        """Per layer the attention inputs ``states`` (L, B, M, hidden) and LSH ``buckets``
        (L, B, H, num_hashes, M), and ``hashed`` (B,): whether buckets are cached yet."""
        s = self.spec
        return {"states": ops.zeros((self.num_layers, batch_size, max_length, s.hidden_size), self.compute_dtype),
                "buckets": ops.zeros((self.num_layers, batch_size, s.num_attention_heads, s.num_hashes, max_length),
                                     "int32"),
                "hashed": ops.zeros((batch_size,), "int32")}

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask):
        """As Transformers' generate drives ReformerModelWithLMHead (its attention mask is dropped:
        padding in a prompt is read as tokens): the prompt runs the full model (padded to the
        chunk lengths) and caches each layer's attention input, and an LSH layer's buckets when it
        hashed; then each new token is computed alone against that cache: a local layer attends to
        the cached inputs from ``(index // chunk - chunks before) * chunk`` on (a negative start
        counts from the end, as Python slicing does there); an LSH layer attends to all earlier
        tokens until the buffer reaches one LSH chunk, when every cached input is hashed, and
        afterwards hashes the new token, sorts it among the cached buckets per hash round and
        attends to the tokens of its chunk and neighbours (wrapping) in that order, the rounds
        combined by log-sum-exp. (Transformers gathers those tokens from the first batch row for
        every row; here each row uses its own.)"""
        s = self.spec
        t = input_ids.shape[1]
        states, buckets, hashed = cache["states"], cache["buckets"], cache["hashed"]
        if t is None or t > 1:  # the prompt (cache_index 0)
            hidden, collected = self._forward(input_ids, None, collect=True)
            new_states, new_buckets = [], []
            did_hash = False
            for i, (normed, bk) in enumerate(collected):
                new_states.append(ops.slice_update(states[i], (0, 0, 0), ops.cast(normed, states.dtype)))
                if bk is not None:
                    did_hash = True
                    new_buckets.append(ops.slice_update(buckets[i], (0, 0, 0, 0), ops.cast(bk, "int32")))
                else:
                    new_buckets.append(buckets[i])
            hashed = ops.full(ops.shape(hashed), 1 if did_hash else 0, "int32")
            return hidden, {"states": ops.stack(new_states), "buckets": ops.stack(new_buckets), "hashed": hashed}
        m = states.shape[2]
        index = ops.cast(cache_index, "int32")
        ids = ops.cast(input_ids, "int32")
        position = ops.take(self._positions(m), ops.reshape(index, (1,)), axis=0)
        x = self.token_embedding(ids) + ops.cast(position, self.compute_dtype)[None]
        attn = hidden = x
        new_states, new_buckets = [], []
        for i, layer in enumerate(self.layers_):
            attn, hidden, st, bk = layer.step(attn, hidden, states[i], buckets[i], index, hashed)
            new_states.append(st)
            new_buckets.append(bk)
        if "lsh" in s.attn_layers:
            hashed = ops.where(index + 1 >= s.lsh_attn_chunk_length, ops.ones_like(hashed), hashed)
        out = self.final_norm(ops.concatenate([attn, hidden], axis=-1))
        return out, {"states": ops.stack(new_states), "buckets": ops.stack(new_buckets), "hashed": hashed}

    def weight_rules(self):
        s = self.spec
        r = [Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings)]
        if s.axial_pos_embds:
            (rows, cols), (d0, d1) = s.axial_pos_shape, s.axial_pos_embds_dim
            r += [Rule("embeddings.position_embeddings.weights.0", self.axial_rows, Reshape((rows, 1, d0), (rows, d0))),
                  Rule("embeddings.position_embeddings.weights.1", self.axial_cols, Reshape((1, cols, d1), (cols, d1)))]
        else:
            r.append(Rule("embeddings.position_embeddings.embedding.weight", self.position_embedding.embeddings))
        for i, layer in enumerate(self.layers_):
            p = f"encoder.layers.{i}."
            r += norm_rules(p + "attention.layer_norm", layer.attn_norm)
            names = ("query_key", "value") if layer.kind == "lsh" else ("query", "key", "value")
            for name in names:
                r += dense_rules(f"{p}attention.self_attention.{name}", getattr(layer, name))
            r += dense_rules(p + "attention.output.dense", layer.attn_out)
            r += norm_rules(p + "feed_forward.layer_norm", layer.ffn_norm)
            r += dense_rules(p + "feed_forward.dense.dense", layer.ffn_in)
            r += dense_rules(p + "feed_forward.output.dense", layer.ffn_out)
        r += norm_rules("encoder.layer_norm", self.final_norm)
        return r


@_ser
@register_task(ReformerBackbone, "CausalLM", ("ReformerModelWithLMHead",))
class ReformerCausalLM(CausalLM):
    """Logits (batch, seq, vocab) from ``lm_head.decoder`` (2 * hidden -> vocab, with bias).
    The checkpoint's separate ``lm_head.bias`` (unused by Transformers' forward) is kept for
    export. ``generate`` uses Transformers' incremental cache (see ``ReformerBackbone.call_with_cache``)."""

    hf_lm_head = "lm_head.decoder"
    hf_head_patterns = ("lm_head.*",)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.spare_bias = self.add_weight(name="spare_bias", shape=(self.backbone.vocab_size,),
                                          initializer="zeros", trainable=False)

    def head_rules(self):
        return super().head_rules() + [Rule("lm_head.bias", self.spare_bias, base=False, optional=True)]

    def generate(self, inputs=None, *args, max_new_tokens=None, **kwargs):
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        cap = self.backbone.max_generation_length
        if ids is not None and max_new_tokens is not None and ids.shape[1] + max_new_tokens > cap:
            raise InputError(f"ReformerCausalLM.generate: {ids.shape[1]} prompt + {max_new_tokens} new tokens exceed "
                             f"{cap} (max_position_embeddings / axial_pos_shape)")
        return super().generate(inputs, *args, max_new_tokens=max_new_tokens, **kwargs)


@_ser
@register_task(ReformerBackbone, "MaskedLM", ("ReformerForMaskedLM",))
class ReformerMaskedLM(MaskedLM):
    """Logits (batch, seq, vocab) from ``lm_head.decoder`` (2 * hidden -> vocab, with bias), as
    Transformers' ReformerForMaskedLM (no transform layer; ``lm_head.bias`` kept for export)."""

    hf_head_patterns = ("lm_head.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=False, **kwargs):
        super(MaskedLM, self).__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.tie_word_embeddings = False
        self.decoder = keras.layers.Dense(backbone.vocab_size, name="lm_head", dtype=backbone.dtype_policy,
                                          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        return kwargs

    def task_config_to_hf(self):
        return {}

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.decoder.build((None, None, 2 * self.backbone.hidden_size))
        self.spare_bias = self.add_weight(name="spare_bias", shape=(self.backbone.vocab_size,),
                                          initializer="zeros", trainable=False)
        self.built = True

    def call(self, inputs, training=False):
        return self.decoder(self.backbone(inputs, training=training))

    def head_rules(self):
        return dense_rules("lm_head.decoder", self.decoder, base=False) + [
            Rule("lm_head.bias", self.spare_bias, base=False, optional=True)]


@_ser
@register_task(ReformerBackbone, "TextClassifier", ("ReformerForSequenceClassification",))
class ReformerTextClassifier(ClassifierDenseOutProj):
    """First position's 2 * hidden state -> ``classifier.dense`` (to hidden) -> tanh ->
    ``classifier.out_proj``."""

    inner_activation = "tanh"


@_ser
@register_task(ReformerBackbone, "QuestionAnswerer", ("ReformerForQuestionAnswering",))
class ReformerQuestionAnswerer(QuestionAnswerer):
    """``qa_outputs`` over the 2 * hidden states."""


__all__ = ["ReformerSpec", "ReformerBackbone", "ReformerLayer", "ReformerCausalLM", "ReformerMaskedLM",
           "ReformerTextClassifier", "ReformerQuestionAnswerer"]
