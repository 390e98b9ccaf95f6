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
"""

import math

import keras
from keras import ops

from keras_models.layers.bucketed_position_bias import sinusoidal_table
from keras_models.layers.seq2seq_block import norm_rules
from keras_models.models.bart.families import FAMILIES, BartSpec
from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule

BART_FIELDS = ("max_position_embeddings", "position_embedding", "position_offset",
               "padding_aware_positions", "scale_embedding", "embedding_norm",
               "decoder_norm_before_positions", "scale_decoder_embedding", "hf_model_type",
               "decoder_max_position_embeddings")

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

    def __init__(self, *args, max_position_embeddings=1024, position_embedding="learned",
                 position_offset=2, padding_aware_positions=False, scale_embedding=False,
                 embedding_norm=True, decoder_norm_before_positions=False,
                 scale_decoder_embedding=None, hf_model_type="bart",
                 decoder_max_position_embeddings=None, **kwargs):
        super().__init__(*args, **kwargs)
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
                from keras_models.errors import ConfigError

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
    def weight_rules(self):
        r = [Rule("shared.weight", self.token_embedding.embeddings)]
        learned = self.position_embedding == "learned"
        for side in ("encoder", "decoder"):
            r.append(Rule(f"{side}.embed_tokens.weight", self.token_embedding.embeddings,
                          optional=True, export=False))
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
        return config
