"""ProphetNet on the shared encoder-decoder backbone.

Encoder: BART-like post-norm blocks over ``LayerNorm(token + learned position)`` (positions start
at ``pad_token_id + 1``). Decoder: NgramSeq2SeqBlock layers (see layers/ngram_seq2seq_block.py)
carrying the main stream plus ``ngram`` predict streams; predict stream ``s`` starts from
``ngram_embeddings[(s - 1) % ngram]`` plus the position embedding one step ahead. Transformers'
``logits`` project predict stream 0 (the next token); cached decoding returns stream 0 (the
main stream's keys / values fill the cache). The other streams feed ``logits_ngram`` (training).

Returns ``{"encoder_last_hidden_state", "last_hidden_state" (main stream),
"last_hidden_state_ngram" (b, ngram * t, hidden: streams concatenated as in Transformers)}``.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.bucketed_position_bias import relative_position_bucket
from keras_models.layers.masks import causal_bias, mask_value, padding_bias
from keras_models.layers.ngram_seq2seq_block import NgramSeq2SeqBlock
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone
from keras_models.models.encoder_decoder.rules import block_rules, dense_rules
from keras_models.models.encoder_decoder.spec import keep_explicit_nulls
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf

PN_FIELDS = ("max_position_embeddings", "ngram", "num_buckets", "relative_max_distance")

PN_NAMES = {
    "self_attention": ("self_attn", ("query_proj", "key_proj", "value_proj", "out_proj")),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("cross_attn", ("query_proj", "key_proj", "value_proj", "out_proj")),
    "cross_attention_norm": "cross_attn_layer_norm",
    "ffn_in": "feed_forward.intermediate",
    "ffn_out": "feed_forward.output",
    "ffn_norm": "feed_forward_layer_norm",
}


@dataclass(frozen=True, kw_only=True)
class ProphetNetSpec(Spec):
    unsupported: ClassVar[dict] = {"add_cross_attention": (True,)}  # decoder-only ProphetNet
    vocab_size: int = dim("vocab_size")
    hidden_size: int = dim("hidden_size")
    num_encoder_layers: int = dim("num_encoder_layers")
    num_decoder_layers: int = dim("num_decoder_layers")
    encoder_heads: int = dim("num_encoder_attention_heads")
    decoder_heads: int = dim("num_decoder_attention_heads")
    encoder_intermediate_size: int = dim("encoder_ffn_dim")
    decoder_intermediate_size: int = dim("decoder_ffn_dim")
    hidden_act: str = hf("activation_function", "gelu")
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    ngram: int = dim("ngram", 2)
    num_buckets: int = dim("num_buckets", 32)
    relative_max_distance: int = dim("relative_max_distance", 128)
    pad_token_id: int = hf("pad_token_id", 0)
    bos_token_id: int | None = hf("bos_token_id", 1)
    eos_token_id: int | None = hf("eos_token_id", 2)
    decoder_start_token_id: int | None = hf("decoder_start_token_id", 0)
    initializer_range: float = hf("init_std", 0.02)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        return keep_explicit_nulls(cls, config, values)

    def adjust_to_hf(self, out):
        out.update(is_encoder_decoder=True, add_cross_attention=True)
        return out


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("prophetnet")
class ProphetNetBackbone(EncoderDecoderBackbone):
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    base_model_prefix = "prophetnet"
    hf_architecture = "ProphetNetModel"
    spec_cls = ProphetNetSpec

    def __init__(self, *args, num_decoder_layers, max_position_embeddings=512, ngram=2,
                 num_buckets=32, relative_max_distance=128, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2, decoder_start_token_id=0, **kwargs):
        # The shared constructor builds plain Seq2SeqBlocks; ask it for none on the decoder side
        # and build the n-gram decoder layers here.
        super().__init__(*args, num_decoder_layers=0, pad_token_id=pad_token_id,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         decoder_start_token_id=decoder_start_token_id, **kwargs)
        if self.norm_first or self.final_norm or self.gated_ffn:
            raise ConfigError("ProphetNet blocks are post-norm, non-gated, without final norms")
        self.num_decoder_layers = num_decoder_layers
        self.max_position_embeddings = max_position_embeddings
        self.ngram, self.num_buckets = ngram, num_buckets
        self.relative_max_distance = relative_max_distance
        dt = self.dtype_policy
        h = self.hidden_size
        self.decoder_blocks = [
            NgramSeq2SeqBlock(
                h, self.decoder_heads, self.decoder_intermediate_size, head_dim=self.decoder_head_dim,
                hidden_act=self.hidden_act, use_bias=self.use_bias, norm_type=self.norm_type,
                layer_norm_eps=self.layer_norm_eps, attention_scale=self.attention_scale,
                cross_attention=True, dropout=self.dropout_rate,
                attention_dropout=self.attention_dropout, activation_dropout=self.activation_dropout,
                kernel_initializer=self.kernel_init, num_buckets=num_buckets,
                name=f"decoder_block_{i}", dtype=dt)
            for i in range(num_decoder_layers)]
        self.encoder_position_embedding = keras.layers.Embedding(
            max_position_embeddings, h, embeddings_initializer=self.kernel_init,
            name="encoder_position_embedding", dtype=dt)
        self.decoder_position_embedding = keras.layers.Embedding(
            max_position_embeddings, h, embeddings_initializer=self.kernel_init,
            name="decoder_position_embedding", dtype=dt)
        ln = dict(epsilon=self.layer_norm_eps, dtype=dt)
        self.encoder_embedding_norm = keras.layers.LayerNormalization(name="encoder_embedding_norm", **ln)
        self.decoder_embedding_norm = keras.layers.LayerNormalization(name="decoder_embedding_norm", **ln)
        for layer in (self.encoder_position_embedding, self.decoder_position_embedding):
            layer.build((None, None))
        self.encoder_embedding_norm.build((None, h))
        self.decoder_embedding_norm.build((None, h))
        self.ngram_embeddings = self.add_weight(name="ngram_embeddings", shape=(ngram, h),
                                                initializer=self.kernel_init)

    # --- embeddings -----------------------------------------------------------------------------
    def _positions(self, t, offset, shift=0):
        pos = ops.arange(t, dtype="int32") + ops.cast(offset, "int32") + (self.pad_token_id + 1 + shift)
        return ops.minimum(pos, self.max_position_embeddings - 1)

    def embed_encoder(self, input_ids, training=False):
        x = self.token_embedding(input_ids)
        x = x + self.encoder_position_embedding(self._positions(ops.shape(input_ids)[1], 0))[None]
        return self.embedding_dropout(self.encoder_embedding_norm(x), training=training)

    def embed_decoder(self, decoder_input_ids, offset=0, training=False):
        """The main stream's embeddings."""
        x = self.token_embedding(decoder_input_ids)
        x = x + self.decoder_position_embedding(self._positions(ops.shape(decoder_input_ids)[1], offset))[None]
        return self.embedding_dropout(self.decoder_embedding_norm(x), training=training)

    def embed_predict_streams(self, decoder_input_ids, offset=0, streams=None, training=False):
        """(b, streams, t, hidden): stream s = ngram_embeddings[(s - 1) % ngram] + the position
        embedding one step ahead, normalised."""
        streams = self.ngram if streams is None else streams
        b, t = ops.shape(decoder_input_ids)[0], ops.shape(decoder_input_ids)[1]
        pos = self.decoder_position_embedding(self._positions(t, offset, shift=1))  # (t, h)
        rows = [(s - 1) % self.ngram for s in range(streams)]
        table = ops.take(ops.cast(self.ngram_embeddings, pos.dtype), rows, axis=0)  # (streams, h)
        p = table[:, None, :] + pos[None]
        p = ops.broadcast_to(p[None], (b, streams, t, self.hidden_size))
        return self.embedding_dropout(self.decoder_embedding_norm(p), training=training)

    # --- decoder --------------------------------------------------------------------------------
    def _decoder_biases(self, t, key_len, offset, streams, decoder_attention_mask, dtype):
        q = ops.arange(t, dtype="int32")[:, None] + ops.cast(offset, "int32")
        k = ops.arange(key_len, dtype="int32")[None, :]
        main_buckets = relative_position_bucket(k - q, False, self.num_buckets, self.relative_max_distance)
        predict_buckets = relative_position_bucket(k - q - 1, False, self.num_buckets,
                                                   self.relative_max_distance)
        main_bias = causal_bias(t, key_len, dtype, offset=offset)
        # predict stream s sees main keys k <= q - s, and always key 0
        s = ops.arange(streams, dtype="int32")[:, None, None]
        allowed = ops.logical_or(k[None] <= q[None] - s, ops.equal(k, 0)[None])
        predict_bias = ops.where(allowed, 0.0, mask_value(dtype))[None, :, None]  # (1, n, 1, t, S)
        if decoder_attention_mask is not None:
            pad = padding_bias(decoder_attention_mask, dtype)
            main_bias = main_bias + pad
            predict_bias = predict_bias + pad[:, None]
        return main_bias, predict_bias, main_buckets, predict_buckets

    def decode(self, decoder_input_ids, encoder_states, encoder_attention_mask=None,
               decoder_attention_mask=None, training=False, return_streams=False):
        x = self.embed_decoder(decoder_input_ids, 0, training=training)
        p = self.embed_predict_streams(decoder_input_ids, 0, training=training)
        t = ops.shape(x)[1]
        main_bias, predict_bias, mb, pb = self._decoder_biases(
            t, t, 0, self.ngram, decoder_attention_mask, x.dtype)
        cross = self._cross_bias(encoder_attention_mask, x.dtype)
        for blk in self.decoder_blocks:
            x, p = blk(x, p, main_bias=main_bias, predict_bias=predict_bias, main_buckets=mb,
                       predict_buckets=pb, context=encoder_states, cross_bias=cross,
                       training=training)
        x = self.embedding_dropout(x, training=training)
        p = self.embedding_dropout(p, training=training)
        return (x, p) if return_streams else x

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        enc = self.encode(inputs["input_ids"], inputs.get("attention_mask"), training=training)
        dec_ids = inputs.get("decoder_input_ids")
        dec_mask = inputs.get("decoder_attention_mask")
        if dec_ids is None:
            dec_ids, dec_mask = self.shift_right(inputs["input_ids"]), None
        x, p = self.decode(dec_ids, enc, inputs.get("attention_mask"), dec_mask, training=training,
                           return_streams=True)
        b, n, t = ops.shape(p)[0], ops.shape(p)[1], ops.shape(p)[2]
        return {"encoder_last_hidden_state": enc, "last_hidden_state": x,
                "last_hidden_state_ngram": ops.reshape(p, (b, n * t, self.hidden_size))}

    def decode_with_cache(self, decoder_input_ids, encoder_states, encoder_attention_mask, cache,
                          cache_index, decoder_attention_mask=None):
        """Main stream (fills the cache) and the predict streams (with t > 1, stream 0 reads
        the others' relative-bias rows, see NgramSeq2SeqBlock); returns (stream-0 hidden, cache)."""
        cache_index = ops.cast(cache_index, "int32")
        x = self.embed_decoder(decoder_input_ids, cache_index)
        p = self.embed_predict_streams(decoder_input_ids, cache_index)
        t = ops.shape(x)[1]
        max_length = self.cache_length(cache)
        main_bias, predict_bias, mb, pb = self._decoder_biases(
            t, max_length, cache_index, self.ngram, decoder_attention_mask, x.dtype)
        cross = self._cross_bias(encoder_attention_mask, x.dtype)
        new_self = []
        for i, blk in enumerate(self.decoder_blocks):
            cross_kv = cache["cross_kv"][i] if "cross_kv" in cache else None
            x, p, layer_cache = blk(x, p, main_bias=main_bias, predict_bias=predict_bias,
                                    main_buckets=mb, predict_buckets=pb, context=encoder_states,
                                    cross_bias=cross, cache=cache["self_kv"][i],
                                    cache_index=cache_index, cross_kv=cross_kv)
            new_self.append(layer_cache)
        new_cache = dict(cache)
        new_cache["self_kv"] = tuple(new_self)
        return p[:, 0], new_cache

    # --- HF conversion (config.json: ProphetNetSpec) ----------------------------------------------
    def weight_rules(self):
        r = [Rule("word_embeddings.weight", self.token_embedding.embeddings),
             Rule("decoder.ngram_embeddings.weight", self.ngram_embeddings)]
        for side in ("encoder", "decoder"):
            r.append(Rule(f"{side}.word_embeddings.weight", self.token_embedding.embeddings,
                          optional=True, export=False))
            pos = self.encoder_position_embedding if side == "encoder" else self.decoder_position_embedding
            r.append(Rule(f"{side}.position_embeddings.weight", pos.embeddings))
            norm = self.encoder_embedding_norm if side == "encoder" else self.decoder_embedding_norm
            r += norm_rules(f"{side}.embeddings_layer_norm", norm)
            blocks = self.encoder_blocks if side == "encoder" else self.decoder_blocks
            for i, blk in enumerate(blocks):
                r += block_rules(f"{side}.layers.{i}", blk, PN_NAMES)
                if side == "decoder":
                    r += dense_rules(f"decoder.layers.{i}.self_attn.relative_pos_embeddings",
                                     blk.relative_bias)
        return r

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in PN_FIELDS})
        return config
