"""BART-like encoder-decoders (BART, mBART, PLBart, MVP, Marian, Pegasus, Blenderbot,
BlenderbotSmall, M2M100 / NLLB) on the shared encoder-decoder backbone.

They share tensor names (``encoder.layers.N.self_attn.q_proj`` ...) and differ only in named
fields: ``position_embedding`` ("learned", "sinusoidal" = Marian/Pegasus half-split table,
"sinusoidal_fairseq" = M2M100's), ``position_offset`` (BART's 2), ``padding_aware_positions``
(M2M100 counts positions over non-pad tokens), ``scale_embedding`` (sqrt(d_model)),
``embedding_norm`` (``layernorm_embedding``), ``decoder_norm_before_positions``
(BlenderbotSmall normalises token embeddings before adding positions),
``scale_decoder_embedding`` (None = as ``scale_embedding``; BlenderbotSmall's decoder never
scales), ``norm_first`` and
``final_norm`` (pre-norm families' ``encoder.layer_norm`` / ``decoder.layer_norm``),
``decoder_max_position_embeddings`` (None = ``max_position_embeddings``; LED's decoder table is
shorter than its encoder's).

Token tables: Transformers names three, ``shared``, ``encoder.embed_tokens`` and
``decoder.embed_tokens``. Tied configs (``tie_word_embeddings`` true, the default) make them one
table: one variable here, loaded from ``shared.weight``; copies of it the checkpoint also holds
must be equal (:class:`WeightMismatchError` otherwise, naming them). With ``tie_word_embeddings``
false (``separate_token_embeddings``) Transformers 5 keeps three independent tables: the encoder
reads ``encoder.embed_tokens``, the decoder ``decoder.embed_tokens``, and ``shared`` is used by
neither (it is only what ``get_input_embeddings`` returns); each is a variable here (``shared``
non-trainable, as it never gets a gradient there), loaded from its own tensor and exported back.
Transformers 4 saved untied models with one table (``shared.weight`` only): encoder and decoder
fall back to it, as 4.x computed.
"""

import hashlib
import math

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, WeightMismatchError
from keras_models.layers.bucketed_position_bias import sinusoidal_table
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.families import FAMILIES, BartSpec
from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Op, Rule

BART_FIELDS = ("max_position_embeddings", "position_embedding", "position_offset",
               "padding_aware_positions", "scale_embedding", "embedding_norm",
               "decoder_norm_before_positions", "scale_decoder_embedding", "hf_model_type",
               "decoder_max_position_embeddings")

TOKEN_TABLES = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


class _SameTable:
    """Loads copies of one tied table and checks they agree: every rule of the group reads its
    own tensor through :meth:`op`; a tensor whose bytes differ from the first one's raises (a
    digest is kept, not the first table, so the check adds no copy to the loading peak)."""

    def __init__(self):
        self.first = None

    def op(self, name):
        group = self

        class Check(Op):
            def to_keras(self, x):
                x = np.ascontiguousarray(x)
                digest = (x.shape, hashlib.blake2b(x.reshape(-1).view(np.uint8).data).digest())
                if group.first is None:
                    group.first = (name, digest)
                elif group.first[1] != digest:
                    raise WeightMismatchError(
                        f"{group.first[0]} and {name} differ, but config.json ties the token tables "
                        "(tie_word_embeddings is true or absent): set \"tie_word_embeddings\": false "
                        "to load them as separate tables")
                return x

        return Check()


BART_NAMES = {
    "self_attention": ("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention": ("encoder_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),
    "cross_attention_norm": "encoder_attn_layer_norm",
    "ffn_in": "fc1",
    "ffn_out": "fc2",
    "ffn_norm": "final_layer_norm",
}


@keras.saving.register_keras_serializable(package="keras_models")
class SinusoidalPositions(keras.initializers.Initializer):
    """A fixed sinusoidal position table (``interleave``: Marian/Pegasus layout, else fairseq's
    [sin | cos] halves); ``zero_row``: the padding position's row is zeros (M2M100/NLLB)."""

    def __init__(self, interleave=False, zero_row=None):
        self.interleave, self.zero_row = interleave, zero_row

    def __call__(self, shape, dtype=None):
        table = sinusoidal_table(shape[0], shape[1], interleave=self.interleave)
        if self.zero_row is not None:
            table[self.zero_row] = 0.0
        return ops.convert_to_tensor(table, dtype or "float32")

    def get_config(self):
        return {"interleave": self.interleave, "zero_row": self.zero_row}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone(*FAMILIES)
class BartBackbone(EncoderDecoderBackbone):
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    checkpoint_families = ("BARTpho", "NLLB", "TAPEX", "mBART-50", "BARThez")  # checkpoint-only rows (docs/models.md)
    base_model_prefix = "model"
    hf_architecture = "BartModel"
    spec_cls = BartSpec  # reads each family's spec by model_type (families.py)
    # HF names of an encoder / decoder layer's sub-layers (LED, NLLB-MoE differ)
    encoder_block_names = BART_NAMES
    decoder_block_names = BART_NAMES
    # config.json's tie_word_embeddings false -> separate_token_embeddings. Read only for classes
    # that set this in their own body (a subclass with another token-table layout, e.g. Whisper's
    # single decoder table or FSMT's two vocabularies, does not inherit it).
    reads_untied_tables = True
    # HF names of the shared / encoder / decoder token tables (SeamlessM4T's text_encoder. ...)
    token_table_names = TOKEN_TABLES

    def __init__(self, *args, max_position_embeddings=1024, position_embedding="learned",
                 position_offset=2, padding_aware_positions=False, scale_embedding=False,
                 embedding_norm=True, decoder_norm_before_positions=False,
                 scale_decoder_embedding=None, hf_model_type="bart",
                 decoder_max_position_embeddings=None, separate_token_embeddings=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.separate_token_embeddings = separate_token_embeddings
        self.max_position_embeddings = max_position_embeddings
        self.position_embedding = position_embedding
        self.position_offset = position_offset
        self.padding_aware_positions = padding_aware_positions
        self.scale_embedding = scale_embedding
        self.embedding_norm = embedding_norm
        self.decoder_norm_before_positions = decoder_norm_before_positions
        self.scale_decoder_embedding = scale_decoder_embedding
        self.hf_model_type = hf_model_type
        self.decoder_max_position_embeddings = decoder_max_position_embeddings
        self.hf_architecture = FAMILIES[hf_model_type].architecture if hf_model_type in FAMILIES \
            else type(self).hf_architecture
        self.embed_scale = math.sqrt(self.hidden_size) if scale_embedding else 1.0
        dt = self.dtype_policy
        self.shared_token_embedding = None
        if separate_token_embeddings:  # own encoder (token_embedding) / decoder / shared tables
            if self.decoder_token_embedding is not None:
                raise ConfigError("separate_token_embeddings=True does not combine with decoder_vocab_size")
            table = dict(embeddings_initializer=self.kernel_init, dtype=dt)
            self.decoder_token_embedding = keras.layers.Embedding(
                self.vocab_size, self.hidden_size, name="decoder_token_embedding", **table)
            self.shared_token_embedding = keras.layers.Embedding(
                self.vocab_size, self.hidden_size, trainable=False, name="shared_token_embedding", **table)
            self.decoder_token_embedding.build((None, None))
            self.shared_token_embedding.build((None, None))
        self.position_tables = {}
        for side in ("encoder", "decoder"):
            rows = max_position_embeddings + position_offset
            if side == "decoder" and decoder_max_position_embeddings is not None:
                rows = decoder_max_position_embeddings + position_offset
            if padding_aware_positions:
                rows += self.pad_token_id + 1
            kind = self.side_position_embedding(side)
            if kind == "learned":
                emb = keras.layers.Embedding(rows, self.hidden_size, embeddings_initializer=self.kernel_init,
                                             name=f"{side}_position_embedding", dtype=dt)
            elif kind in ("sinusoidal", "sinusoidal_fairseq"):
                table = SinusoidalPositions(interleave=kind == "sinusoidal",
                                            zero_row=self.pad_token_id if padding_aware_positions else None)
                emb = keras.layers.Embedding(rows, self.hidden_size, trainable=False, embeddings_initializer=table,
                                             name=f"{side}_position_embedding", dtype=dt)
            else:
                raise ConfigError(f"position_embedding={kind!r} is not one of "
                                  "'learned', 'sinusoidal', 'sinusoidal_fairseq'")
            emb.build((None, None))
            self.position_tables[side] = emb
        self.encoder_position_embedding = self.position_tables["encoder"]
        self.decoder_position_embedding = self.position_tables["decoder"]
        self.encoder_embedding_norm = self.decoder_embedding_norm = None
        if embedding_norm:
            ln = dict(epsilon=self.layer_norm_eps, dtype=dt)
            self.encoder_embedding_norm = keras.layers.LayerNormalization(name="encoder_embedding_norm", **ln)
            self.decoder_embedding_norm = keras.layers.LayerNormalization(name="decoder_embedding_norm", **ln)
            self.encoder_embedding_norm.build((None, self.hidden_size))
            self.decoder_embedding_norm.build((None, self.hidden_size))

    # --- hooks ----------------------------------------------------------------------------------
    def side_position_embedding(self, side):
        """The position scheme of ``side`` ("encoder" / "decoder"): ``position_embedding`` for both
        (Whisper overrides it: a fixed sinusoidal encoder table, a learned decoder table)."""
        return self.position_embedding

    def _positions(self, ids, offset):
        if self.padding_aware_positions:
            mask = ops.cast(ops.not_equal(ids, self.pad_token_id), "int32")
            return (ops.cumsum(mask, axis=1) + offset) * mask + self.pad_token_id
        t = ops.shape(ids)[1]
        pos = ops.arange(t, dtype="int32")[None, :] + ops.cast(offset, "int32") + self.position_offset
        return ops.broadcast_to(pos, ops.shape(ids))

    def _embed(self, side, ids, offset, training):
        x = (self.decoder_embedding() if side == "decoder" else self.token_embedding)(ids)
        scale = self.scale_embedding
        if side == "decoder" and self.scale_decoder_embedding is not None:
            scale = self.scale_decoder_embedding
        if scale:
            x = x * ops.cast(self.embed_scale, x.dtype)
        norm = self.encoder_embedding_norm if side == "encoder" else self.decoder_embedding_norm
        pos = self.position_tables[side](self._positions(ids, offset))
        if norm is not None and side == "decoder" and self.decoder_norm_before_positions:
            x = norm(x) + pos
        else:
            x = x + pos
            if norm is not None:
                x = norm(x)
        return self.embedding_dropout(x, training=training)

    def embed_encoder(self, input_ids, training=False):
        return self._embed("encoder", input_ids, 0, training)

    def embed_decoder(self, decoder_input_ids, offset=0, training=False):
        return self._embed("decoder", decoder_input_ids, offset, training)

    # --- HF conversion (config.json: spec_cls) ------------------------------------------------------
    @classmethod
    def config_kwargs(cls, hf_config, source="config.json"):
        kwargs = super().config_kwargs(hf_config, source)
        if cls.__dict__.get("reads_untied_tables") and hf_config.get("tie_word_embeddings", True) is False:
            kwargs["separate_token_embeddings"] = True
        return kwargs

    def config_to_hf(self):
        out = super().config_to_hf()
        if self.separate_token_embeddings:
            out["tie_word_embeddings"] = False
        return out

    def token_table_rules(self):
        """Rules of the token tables (see the module docstring)."""
        shared, enc, dec = self.token_table_names
        if self.separate_token_embeddings:
            return [Rule(shared, self.shared_token_embedding.embeddings, aliases=(enc, dec)),
                    Rule(enc, self.token_embedding.embeddings, aliases=(shared,)),
                    Rule(dec, self.decoder_token_embedding.embeddings, aliases=(shared,))]
        same = _SameTable()
        table = self.token_embedding.embeddings
        return [Rule(shared, table, same.op(shared))] + [
            Rule(name, table, same.op(name), optional=True, export=False) for name in (enc, dec)]

    def weight_rules(self):
        r = self.token_table_rules()
        learned = self.position_embedding == "learned"
        for side in ("encoder", "decoder"):
            r.append(Rule(f"{side}.embed_positions.weight", self.position_tables[side].embeddings,
                          optional=not learned,
                          export=self.position_embedding != "sinusoidal_fairseq"))
            norm = self.encoder_embedding_norm if side == "encoder" else self.decoder_embedding_norm
            if norm is not None:
                r += norm_rules(f"{side}.layernorm_embedding", norm)
            blocks = self.encoder_blocks if side == "encoder" else self.decoder_blocks
            for i, blk in enumerate(blocks):
                names = self.encoder_block_names if side == "encoder" else self.decoder_block_names
                r += block_rules(f"{side}.layers.{i}", blk, names)
            final = self.encoder_final_norm if side == "encoder" else self.decoder_final_norm
            if final is not None:
                r += norm_rules(f"{side}.layer_norm", final)
        return r

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in BART_FIELDS})
        if self.separate_token_embeddings:
            config["separate_token_embeddings"] = True
        return config
