"""Shared encoder-decoder backbone: embeddings (family hooks) + Seq2SeqBlock stacks.

Families (T5, BART-likes) subclass it and implement the embedding / position hooks, the config
translators and the weight map. Everything else (masks, the cached decoder, the generation
interface used by Seq2SeqLM) lives here once.

Decoding cache (a dict of batch-first tensors, so beam search can reorder it with one ``take`` on
axis 0 of every entry): ``"self_kv"``, per decoder layer a (keys, values) pair of heads-major
(batch, heads, max_length, head_dim) buffers and, when built from encoder states, ``"cross_kv"``,
the same for the encoder states (batch, heads, source_len, head_dim). Heads-major, so attention
reads them as stored (see ``layers.attention.grouped_attention``).
"""

import keras
from keras import ops

from keras_models.layers.masks import causal_bias, mask_value, padding_bias
from keras_models.layers.seq2seq_block import Seq2SeqBlock, make_norm
from keras_models.models.backbone import Backbone

# Constructor fields shared by every family (get_config / from_config use these).
BASE_FIELDS = (
    "vocab_size", "hidden_size", "num_encoder_layers", "num_decoder_layers", "encoder_heads",
    "decoder_heads", "encoder_intermediate_size", "decoder_intermediate_size", "head_dim",
    "hidden_act", "gated_ffn", "use_bias", "norm_type", "norm_first", "layer_norm_eps",
    "attention_scale", "final_norm", "dropout", "attention_dropout", "activation_dropout",
    "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
    "forced_bos_token_id", "forced_eos_token_id", "initializer_range",
)


class EncoderDecoderBackbone(Backbone):
    """Returns ``{"encoder_last_hidden_state", "last_hidden_state"}``."""

    # extra Seq2SeqBlock arguments of every block / of the encoder blocks only
    block_options = {}
    encoder_block_options = {}

    def __init__(
        self,
        vocab_size,
        hidden_size,
        num_encoder_layers,
        num_decoder_layers,
        encoder_heads,
        decoder_heads,
        encoder_intermediate_size,
        decoder_intermediate_size,
        head_dim=None,
        hidden_act="gelu",
        gated_ffn=False,
        use_bias=True,
        norm_type="layer",
        norm_first=False,
        layer_norm_eps=1e-5,
        attention_scale=None,
        final_norm=False,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        initializer_range=0.02,
        decoder_vocab_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name in BASE_FIELDS:
            setattr(self, name, locals()[name])
        self.decoder_vocab_size = decoder_vocab_size
        # head_dim None: hidden_size / heads on each side (BART-likes may differ per side)
        self.encoder_head_dim = head_dim or hidden_size // encoder_heads
        self.decoder_head_dim = head_dim or hidden_size // decoder_heads
        self.dropout_rate = dropout
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.kernel_init = init
        dt = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, name="token_embedding", dtype=dt
        )
        # decoder_vocab_size: the decoder has its own vocabulary and table (FSMT), else it shares
        self.decoder_token_embedding = None
        if decoder_vocab_size is not None:
            self.decoder_token_embedding = keras.layers.Embedding(
                decoder_vocab_size, hidden_size, embeddings_initializer=init,
                name="decoder_token_embedding", dtype=dt)
            self.decoder_token_embedding.build((None, None))
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dt)

        def block(i, heads, ffn, cross):
            extra = self.block_extra_options(i, cross)
            return Seq2SeqBlock(
                hidden_size, heads, ffn, head_dim=hidden_size // heads if head_dim is None else head_dim,
                hidden_act=hidden_act,
                gated_ffn=gated_ffn, use_bias=use_bias, norm_type=norm_type, norm_first=norm_first,
                layer_norm_eps=layer_norm_eps, attention_scale=attention_scale,
                cross_attention=cross, dropout=dropout, attention_dropout=attention_dropout,
                activation_dropout=activation_dropout, kernel_initializer=init,
                name=f"{'decoder' if cross else 'encoder'}_block_{i}", dtype=dt, **extra,
            )

        self.encoder_blocks = [block(i, encoder_heads, encoder_intermediate_size, False)
                               for i in range(num_encoder_layers)]
        self.decoder_blocks = [block(i, decoder_heads, decoder_intermediate_size, True)
                               for i in range(num_decoder_layers)]
        self.encoder_final_norm = self.decoder_final_norm = None
        if final_norm:
            self.encoder_final_norm = make_norm(norm_type, layer_norm_eps, "encoder_final_norm", dt, use_bias)
            self.decoder_final_norm = make_norm(norm_type, layer_norm_eps, "decoder_final_norm", dt, use_bias)

    def decoder_embedding(self):
        """The decoder's token embedding layer (the shared one unless ``decoder_vocab_size``)."""
        return self.token_embedding if self.decoder_token_embedding is None else self.decoder_token_embedding

    @property
    def output_vocab_size(self):
        return self.decoder_vocab_size or self.vocab_size

    # --- family hooks ---------------------------------------------------------------------------
    def block_extra_options(self, index, cross):
        """Extra Seq2SeqBlock arguments of encoder (``cross`` False) / decoder block ``index``."""
        return dict(self.block_options, **({} if cross else self.encoder_block_options))

    def embed_encoder(self, input_ids, training=False):
        raise NotImplementedError

    def embed_decoder(self, decoder_input_ids, offset=0, training=False):
        raise NotImplementedError

    def encoder_position_bias(self, seq_len, layer):
        """Additive (1, heads, seq, seq) attention bias of encoder layer ``layer`` (T5), or None."""
        return None

    def decoder_position_bias(self, query_len, key_len, offset, layer):
        return None

    # --- forward --------------------------------------------------------------------------------
    def dummy_inputs(self):
        import numpy as np

        ones = np.ones((1, 2), "int32")
        return {"input_ids": ones, "attention_mask": ones, "decoder_input_ids": ones,
                "decoder_attention_mask": ones}

    def encode(self, input_ids, attention_mask=None, training=False):
        x = self.embed_encoder(input_ids, training=training)
        pad = None if attention_mask is None else padding_bias(attention_mask, x.dtype)
        seq_len = ops.shape(x)[1]
        for i, blk in enumerate(self.encoder_blocks):
            pos = self.encoder_position_bias(seq_len, i)
            bias = pad if pos is None else (pos if pad is None else pos + pad)
            x = blk(x, bias, training=training)
        if self.encoder_final_norm is not None:
            x = self.encoder_final_norm(x)
        return self.embedding_dropout(x, training=training)

    def _cross_bias(self, encoder_attention_mask, dtype):
        if encoder_attention_mask is None:
            return None
        return padding_bias(encoder_attention_mask, dtype)

    def _finish_decoder(self, x, training):
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x)
        return self.embedding_dropout(x, training=training)

    def decode(self, decoder_input_ids, encoder_states, encoder_attention_mask=None,
               decoder_attention_mask=None, training=False):
        """Full-sequence (teacher-forced) decoder pass."""
        x = self.embed_decoder(decoder_input_ids, 0, training=training)
        t = ops.shape(x)[1]
        self_bias = causal_bias(t, t, x.dtype)
        if decoder_attention_mask is not None:
            self_bias = self_bias + padding_bias(decoder_attention_mask, x.dtype)
        cross = self._cross_bias(encoder_attention_mask, x.dtype)
        for i, blk in enumerate(self.decoder_blocks):
            pos = self.decoder_position_bias(t, t, 0, i)
            bias = self_bias if pos is None else self_bias + pos
            x = blk(x, bias, context=encoder_states, cross_bias=cross, training=training)
        return self._finish_decoder(x, training)

    def shift_right(self, input_ids):
        """Decoder inputs from ``input_ids``: the start token, then all but the last token."""
        start = ops.full((ops.shape(input_ids)[0], 1), self.decoder_start_token_id, input_ids.dtype)
        return ops.concatenate([start, input_ids[:, :-1]], axis=1)

    def encode_inputs(self, inputs, training=False):
        """Encoder states of an input dict (families with extra encoder inputs override this)."""
        return self.encode(inputs["input_ids"], inputs.get("attention_mask"), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        enc = self.encode_inputs(inputs, training=training)
        dec_ids = inputs.get("decoder_input_ids")
        dec_mask = inputs.get("decoder_attention_mask")
        if dec_ids is None:  # Transformers' convention for classification / QA heads
            dec_ids, dec_mask = self.shift_right(inputs["input_ids"]), None
        dec = self.decode(dec_ids, enc, inputs.get("attention_mask"), dec_mask, training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    # --- cached decoding ------------------------------------------------------------------------
    def init_cache(self, batch_size, max_length, encoder_states=None):
        """``{"self_kv": per decoder layer a (keys, values) pair of zeroed heads-major (batch, heads,
        max_length, head_dim) buffers}``, plus ``"cross_kv"`` (see :meth:`cross_kv_cache`) with
        ``encoder_states``. Separate buffers per layer, so a step writes each in place."""
        shape = (batch_size, self.decoder_heads, max_length, self.decoder_head_dim)
        cache = {"self_kv": tuple((ops.zeros(shape, dtype=self.compute_dtype),
                                   ops.zeros(shape, dtype=self.compute_dtype))
                                  for _ in range(self.num_decoder_layers))}
        if encoder_states is not None:
            cache["cross_kv"] = self.cross_kv_cache(encoder_states)
        return cache

    def cross_kv_cache(self, encoder_states):
        """Per decoder layer the cross-attention (keys, values) of the encoder states, each
        heads-major (batch, heads, source_len, head_dim)."""
        return tuple(tuple(blk.cross_kv(encoder_states)) for blk in self.decoder_blocks)

    @staticmethod
    def cache_length(cache):
        """The time length of the self-attention buffers."""
        return ops.shape(cache["self_kv"][0][0])[2]

    def decode_with_cache(self, decoder_input_ids, encoder_states, encoder_attention_mask, cache,
                          cache_index, decoder_attention_mask=None):
        """Decode ``decoder_input_ids`` (b, t) at positions ``cache_index .. cache_index + t``.

        ``decoder_attention_mask`` (b, max_length) covers the whole cache buffer. Returns
        ``(hidden (b, t, hidden), new_cache)``.
        """
        if type(cache_index) is not int:  # a Python int (eager loop) lets attention skip the empty buffer
            cache_index = ops.cast(cache_index, "int32")
        x = self.embed_decoder(decoder_input_ids, cache_index)
        t = ops.shape(x)[1]
        max_length = self.cache_length(cache)
        self_bias = causal_bias(t, max_length, x.dtype, offset=cache_index)
        if decoder_attention_mask is not None:
            self_bias = self_bias + padding_bias(decoder_attention_mask, x.dtype)
        cross = self._cross_bias(encoder_attention_mask, x.dtype)
        new_self = []
        for i, blk in enumerate(self.decoder_blocks):
            pos = self.decoder_position_bias(t, max_length, cache_index, i)
            bias = self_bias if pos is None else self_bias + pos
            cross_kv = cache["cross_kv"][i] if "cross_kv" in cache else None
            x, layer_cache = blk(x, bias, context=encoder_states, cross_bias=cross,
                                 cache=cache["self_kv"][i], cache_index=cache_index, cross_kv=cross_kv)
            new_self.append(layer_cache)
        new_cache = dict(cache)
        new_cache["self_kv"] = tuple(new_self)
        return self._finish_decoder(x, False), new_cache

    # --- serialization --------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in BASE_FIELDS})
        config["dropout"] = self.dropout_rate
        if self.decoder_vocab_size is not None:
            config["decoder_vocab_size"] = self.decoder_vocab_size
        return config


__all__ = ["EncoderDecoderBackbone", "BASE_FIELDS", "mask_value"]
