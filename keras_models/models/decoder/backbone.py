"""DecoderBackbone: embeddings + N DecoderBlocks + final norm, with a fixed-size KV cache.

Every decoder-only family is this class plus a typed spec (hf_config.DecoderSpec subclasses:
config.json both ways, field names = this constructor's arguments) and a weight map. Model-level switches:
  * ``position_type``: "rope", "learned" or "sinusoidal" (fixed fairseq table; both add
    ``position_offset`` to the ids), "alibi" (slopes by
    ``alibi_bias_max``: None = BLOOM's, a number = MPT's; ``alibi_scale`` multiplies the bias,
    ``alibi_bfloat16`` rounds it like Falcon) or "none";
    rope: ``rope_theta``, ``rope_scaling`` (Transformers' rope_parameters), ``rotary_dim``;
    ``local_rope_theta`` / ``local_rope_scaling``: a second rotary table, used by the layers that
    ``layer_types`` marks "sliding_attention" (Gemma 3's local base frequency; default: one table);
  * ``embedding_scale`` (multiply token embeddings), ``embedding_norm`` (norm after embedding),
    ``embed_proj_dim`` (project in/out around the blocks), ``final_norm`` (``final_norm_eps``
    when it differs from the blocks'), ``sinusoidal_style`` ("fairseq" or "ctrl");
  * ``sliding_window`` with ``layer_types`` ("sliding_attention"/"full_attention" per layer);
    ``out_bias_layers``: the layers whose attention output has a bias (default: all or none);
  * ``moe_layers``: with ``num_experts``, the layers whose MLP is the mixture of experts (the
    others get the dense MLP of ``intermediate_size``; default: all); ``nope_layers``: the layers
    that get no rotary positions (rope families; default: none); on them ``nope_qk_norm=False``
    drops the q / k norm and ``nope_query_temperature`` (floor_scale, scale) sets the blocks'
    ``query_temperature`` (Llama 4);
  * ``attention_chunk_size``: the layers ``layer_types`` marks "chunked_attention" see only the
    keys of their own chunk (chunks counted from each row's first real token, as Transformers);
  * ``tie_word_embeddings``, ``lm_head_bias``, ``final_logit_softcap`` (read by CausalLM);
    ``logit_scale`` (a constant multiplying the logits; read by the families' CausalLM subclass
    ``llama_likes.ScaledLogitsCausalLM``).
Block options (see keras_models.layers.decoder_block.BLOCK_DEFAULTS) pass through unchanged.

The KV cache is laid out by each block's attention layer (``init_cache`` of
keras_models.layers.attention.Attention: per-head keys and values; of
keras_models.layers.latent_attention.LatentAttention: the compressed latent and rotary key), so
:meth:`DecoderBackbone.init_cache` / :meth:`DecoderBackbone.call_with_cache` serve every layout.
"""

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.generation.backend import direct_ops
from keras_models.layers.decoder_block import BLOCK_DEFAULTS, DecoderBlock
from keras_models.layers.decoder_masks import alibi_bias, decoder_bias, decoder_inputs, positions_from_mask
from keras_models.layers.norms import make_norm
from keras_models.layers.positions import sinusoidal_table
from keras_models.layers.rotary import RotaryEmbedding
from keras_models.models.backbone import Backbone

MODEL_DEFAULTS = dict(
    position_type="rope", max_position_embeddings=2048, position_offset=0, rope_theta=10000.0,
    rope_scaling=None, rotary_dim=None, embedding_scale=None, embedding_norm=False,
    embed_proj_dim=None, final_norm=True, layer_types=None, tie_word_embeddings=False,
    lm_head_bias=False, final_logit_softcap=None, pad_token_id=None, bos_token_id=None,
    eos_token_id=None, initializer_range=0.02, alibi_bias_max=None, sinusoidal_style="fairseq",
    final_norm_eps=None, alibi_scale=None, alibi_bfloat16=False, out_bias_layers=None,
    moe_layers=None, nope_layers=None, logit_scale=None, local_rope_theta=None, local_rope_scaling=None,
    attention_chunk_size=None, nope_query_temperature=None, nope_qk_norm=True,
)
_BLOCK_OWN = ("sliding_window",)


class DecoderBackbone(Backbone):
    """Generic decoder-only backbone (not registered itself: families subclass it)."""

    def __init__(self, vocab_size, hidden_size, num_layers, num_heads, intermediate_size, **options):
        base = {k: options.pop(k) for k in ("name", "dtype", "trainable") if k in options}
        unknown = set(options) - set(MODEL_DEFAULTS) - set(BLOCK_DEFAULTS)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown options {sorted(unknown)}")
        super().__init__(**base)
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.num_heads, self.intermediate_size = num_heads, intermediate_size
        o = {**MODEL_DEFAULTS, **{k: v for k, v in BLOCK_DEFAULTS.items()}, **options}
        self.options = o
        self.num_kv_heads = o["num_kv_heads"] or num_heads
        self.head_dim = o["head_dim"] or hidden_size // num_heads
        self.dropout_rate = 0.0
        self.initializer_range = o["initializer_range"]
        init = keras.initializers.TruncatedNormal(stddev=o["initializer_range"])
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(
            vocab_size, o["embed_proj_dim"] or hidden_size, embeddings_initializer=init,
            name="token_embedding", **common)
        self.position_embedding = None
        if o["position_type"] == "learned":
            self.position_embedding = keras.layers.Embedding(
                o["max_position_embeddings"] + o["position_offset"], hidden_size,
                embeddings_initializer=init, name="position_embedding", **common)
        self.rotary = None
        if o["position_type"] == "rope":
            self.rotary = RotaryEmbedding(
                o["rotary_dim"] or self.head_dim, o["rope_theta"], o["rope_scaling"],
                o["max_position_embeddings"], o["rotary_interleaved"], name="rotary", **common)
        self.local_rotary = None
        if o["position_type"] == "rope" and o["local_rope_theta"] is not None:
            self.local_rotary = RotaryEmbedding(
                o["rotary_dim"] or self.head_dim, o["local_rope_theta"], o["local_rope_scaling"],
                o["max_position_embeddings"], o["rotary_interleaved"], name="local_rotary", **common)
        self.sinusoidal = None
        if o["position_type"] == "sinusoidal":
            self.sinusoidal = sinusoidal_table(o["max_position_embeddings"] + o["position_offset"],
                                               hidden_size, o["sinusoidal_style"])
        elif o["position_type"] not in ("rope", "learned", "alibi", "none"):
            raise ConfigError(
                f"position_type={o['position_type']!r}: expected rope/learned/sinusoidal/alibi/none")
        norm = dict(epsilon=o["norm_eps"], bias=o["norm_bias"], unit_offset=o["norm_unit_offset"],
                    scale=o["norm_scale"], **common)
        self.embedding_norm = make_norm(o["norm_type"], name="embedding_norm", **norm) if o["embedding_norm"] else None
        self.project_in = self.project_out = None
        if o["embed_proj_dim"] and o["embed_proj_dim"] != hidden_size:
            self.project_in = keras.layers.Dense(hidden_size, use_bias=False, name="project_in", **common)
            self.project_out = keras.layers.Dense(o["embed_proj_dim"], use_bias=False, name="project_out", **common)
        block_opts = {k: o[k] for k in BLOCK_DEFAULTS if k not in _BLOCK_OWN}
        self.blocks = []
        for i in range(num_layers):
            opts = dict(block_opts)
            if o["out_bias_layers"] is not None:
                opts["out_bias"] = i in o["out_bias_layers"]
            if o["moe_layers"] is not None and i not in o["moe_layers"]:
                opts["num_experts"] = 0
            if o["nope_layers"] is not None and i in o["nope_layers"]:
                if not o["nope_qk_norm"]:
                    opts["qk_norm"] = None
                if o["nope_query_temperature"] is not None:
                    opts["query_temperature"] = o["nope_query_temperature"]
            self.blocks.append(DecoderBlock(
                hidden_size, num_heads, intermediate_size, kernel_initializer=init,
                sliding_window=self.layer_window(i), name=f"block_{i}", **opts, **common))
        if o["final_norm_eps"] is not None:
            norm["epsilon"] = o["final_norm_eps"]
        self.final_norm = make_norm(o["norm_type"], name="final_norm", **norm) if o["final_norm"] else None

    def layer_window(self, i):
        o = self.options
        if o["sliding_window"] is None:
            return None
        if o["layer_types"] is None:
            return o["sliding_window"]
        return o["sliding_window"] if o["layer_types"][i] == "sliding_attention" else None

    @property
    def slot_dependent(self):
        """True when outputs depend on the buffer slot itself, not only on the positions the mask
        gives (so generation must not left-pad prompts to a bucket length)."""
        return self.options["nope_query_temperature"] is not None

    def layer_chunk(self, i):
        o = self.options
        if o["attention_chunk_size"] is None or o["layer_types"] is None:
            return None
        return o["attention_chunk_size"] if o["layer_types"][i] == "chunked_attention" else None

    def build(self, input_shape=None):
        width = self.options["embed_proj_dim"] or self.hidden_size
        hidden = (None, None, self.hidden_size)
        self.token_embedding.build((None, None))
        if self.position_embedding is not None:
            self.position_embedding.build((None, None))
        if self.project_in is not None:
            self.project_in.build((None, None, width))
            self.project_out.build(hidden)
        for layer in (self.embedding_norm, self.final_norm, *self.blocks):
            if layer is not None:
                layer.build(hidden)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- forward ------------------------------------------------------------------------------
    def _forward(self, input_ids, key_mask, positions, cache=None, cache_index=0, training=False,
                 embed=None, prefix=None):
        o = self.options
        # ``embed(input_ids, token_embeddings)``: a composite model's hook on the looked-up token
        # embeddings before any scaling (LLaVA puts its image features at the image-token positions);
        # ``prefix`` (batch, key slots) 1/0: a bidirectional prefix block (decoder_bias, PaliGemma)
        x = self.token_embedding(input_ids) if embed is None else embed(input_ids, self.token_embedding)
        if o["embedding_scale"] is not None:
            x = x * ops.cast(o["embedding_scale"], x.dtype)
        if self.project_in is not None:
            x = self.project_in(x)
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions + o["position_offset"])
        if self.sinusoidal is not None:
            table = ops.convert_to_tensor(self.sinusoidal)
            x = x + ops.cast(ops.take(table, positions + o["position_offset"], axis=0), x.dtype)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        t = ops.shape(input_ids)[1]
        rope = self.rotary(positions) if self.rotary is not None else None
        local_rope = self.local_rotary(positions) if self.local_rotary is not None else None
        local_layers = () if local_rope is None else {
            i for i, kind in enumerate(o["layer_types"] or ()) if kind == "sliding_attention"}
        extra = None
        if o["position_type"] == "alibi":
            extra = alibi_bias(key_mask, self.num_heads, o["alibi_bias_max"], o["alibi_bfloat16"])
            if o["alibi_scale"] is not None:
                extra = extra * o["alibi_scale"]
        biases = {}
        new_cache = []
        for i, block in enumerate(self.blocks):
            w = (block.sliding_window, self.layer_chunk(i))
            if w not in biases:
                b = decoder_bias(key_mask, t, cache_index, w[0], x.dtype, chunk=w[1], prefix=prefix)
                biases[w] = b if extra is None else b + ops.cast(extra, b.dtype)
            layer_cache = None if cache is None else cache[i]
            nope = o["nope_layers"] is not None and i in o["nope_layers"]
            layer_rope = local_rope if i in local_layers else rope
            x, layer_cache = block(x, bias=biases[w], rope=None if nope else layer_rope, cache=layer_cache,
                                   cache_index=cache_index, training=training)
            new_cache.append(layer_cache)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        return x, (None if cache is None else tuple(new_cache))

    def call(self, inputs, training=False):
        ids, mask, positions = decoder_inputs(inputs)
        return self._forward(ids, mask, positions, training=training)[0]

    def init_cache(self, batch_size, max_length):
        """Zeroed cache buffers, one tuple per layer, as its attention layer lays them out
        (``init_cache(batch_size, max_length, dtype)``). Standard attention: a (keys, values) pair
        of batch-merged (batch * num_kv_heads, max_length, head_dim) tensors, batch row ``i``
        holding heads ``i * kv ..``; latent attention: (latents, rotary keys), each (batch,
        max_length, width). Every buffer has the batch on axis 0 and the time on axis 1 (or the
        batch-merged equivalent), which is what beam search's reordering relies on.

        Separate buffers, so a step writes each in place; heads-major, so attention reads them
        without a transposed copy; batch and heads merged into one axis, so attention's products
        have a single batch axis and read the buffer exactly as written. (With a (batch, kv, ...)
        buffer at batch 1, XLA drops the unit axis for the product, materialises the buffer update
        once per consumer and copies every buffer four times a step: 1.4 of a 14.8 ms GPT-2 step.)"""
        return tuple(block.attention.init_cache(batch_size, max_length, self.compute_dtype)
                     for block in self.blocks)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, embed=None, prefix=None):
        """Hidden states of ``input_ids`` written at ``cache_index``; returns (hidden, cache)."""
        t = ops.shape(input_ids)[1]
        if type(cache_index) is int and direct_ops(attention_mask):  # the eager torch decode loop
            import torch

            # cumsum(mask) - 1 (min 0) at the chunk's slots: only the filled part is summed
            n = cache_index + t
            filled = torch.cumsum(attention_mask[:, :n], dim=1, dtype=torch.int32)
            positions = torch.clamp_min(filled[:, cache_index:] - 1, 0)
        else:
            slots = ops.arange(t, dtype="int32") + ops.cast(cache_index, "int32")
            positions = ops.take(positions_from_mask(attention_mask), slots, axis=1)
        return self._forward(input_ids, attention_mask, positions, cache, cache_index, embed=embed, prefix=prefix)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      num_layers=self.num_layers, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, **self.options)
        return config
