"""T5 family (T5 v1.0, v1.1 / FLAN-T5 / UL2 gated-GELU, mT5, UMT5) on the shared encoder-decoder.

T5 quirks as named fields: RMS norms without bias, pre-norm, no attention scaling, bias-free
projections, learned bucketed relative position bias (computed by the first layer and shared,
or one table per layer with ``relative_bias_per_layer`` for UMT5). No absolute positions.
"""

import keras

from keras_models.errors import ConfigError
from keras_models.layers.bucketed_position_bias import BucketedPositionBias
from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.registry import register_backbone
from keras_models.presets.config import require
from keras_models.presets.weight_map import Rule

T5_FIELDS = ("relative_attention_num_buckets", "relative_attention_max_distance",
             "relative_bias_per_layer", "hf_model_type")


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("t5", "mt5", "umt5")
class T5Backbone(EncoderDecoderBackbone):
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    checkpoint_families = ("FLAN-T5", "UL2", "FLAN-UL2", "ByT5", "MADLAD-400")  # checkpoint-only rows (docs/models.md)
    base_model_prefix = ""
    hf_architecture = "T5Model"
    hf_ignore = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)

    def __init__(self, *args, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 relative_bias_per_layer=False, hf_model_type="t5", norm_type="rms", norm_first=True,
                 use_bias=False, attention_scale=1.0, final_norm=True, layer_norm_eps=1e-6,
                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, bos_token_id=None,
                 **kwargs):
        super().__init__(*args, norm_type=norm_type, norm_first=norm_first, use_bias=use_bias,
                         attention_scale=attention_scale, final_norm=final_norm,
                         layer_norm_eps=layer_norm_eps, pad_token_id=pad_token_id,
                         eos_token_id=eos_token_id, decoder_start_token_id=decoder_start_token_id,
                         bos_token_id=bos_token_id, **kwargs)
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.relative_bias_per_layer = relative_bias_per_layer
        self.hf_model_type = hf_model_type
        init = keras.initializers.RandomNormal(stddev=self.initializer_range)

        def tables(n, heads, bidirectional, side):
            count = n if relative_bias_per_layer else 1
            return [BucketedPositionBias(
                heads, relative_attention_num_buckets, relative_attention_max_distance,
                bidirectional=bidirectional, embeddings_initializer=init,
                name=f"{side}_relative_bias_{i}", dtype=self.dtype_policy) for i in range(count)]

        self.encoder_relative_bias = tables(self.num_encoder_layers, self.encoder_heads, True, "encoder")
        self.decoder_relative_bias = tables(self.num_decoder_layers, self.decoder_heads, False, "decoder")
        for layer in self.encoder_relative_bias + self.decoder_relative_bias:
            layer.build()

    # --- hooks ----------------------------------------------------------------------------------
    def embed_encoder(self, input_ids, training=False):
        return self.embedding_dropout(self.token_embedding(input_ids), training=training)

    def embed_decoder(self, decoder_input_ids, offset=0, training=False):
        return self.embedding_dropout(self.token_embedding(decoder_input_ids), training=training)

    def _table(self, tables, layer):
        return tables[layer if self.relative_bias_per_layer else 0]

    def encoder_position_bias(self, seq_len, layer):
        return self._table(self.encoder_relative_bias, layer).compute_bias(seq_len, seq_len)

    def decoder_position_bias(self, query_len, key_len, offset, layer):
        return self._table(self.decoder_relative_bias, layer).compute_bias(query_len, key_len, offset)

    # --- HF conversion --------------------------------------------------------------------------
    @classmethod
    def config_from_hf(cls, hf):
        proj = hf.get("feed_forward_proj", "relu")
        parts = proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"config.json: feed_forward_proj={proj!r} is not 'ACT' or 'gated-ACT'")
        act = hf.get("dense_act_fn") or ("gelu_new" if proj == "gated-gelu" else parts[-1])
        layers = require(hf, "num_layers")
        model_type = hf.get("model_type", "t5")
        return dict(
            vocab_size=require(hf, "vocab_size"),
            hidden_size=require(hf, "d_model"),
            num_encoder_layers=layers,
            num_decoder_layers=hf.get("num_decoder_layers") or layers,
            encoder_heads=require(hf, "num_heads"),
            decoder_heads=require(hf, "num_heads"),
            encoder_intermediate_size=require(hf, "d_ff"),
            decoder_intermediate_size=require(hf, "d_ff"),
            head_dim=require(hf, "d_kv"),
            hidden_act=act,
            gated_ffn=len(parts) == 2,
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
            dropout=hf.get("dropout_rate", 0.1),
            relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
            relative_bias_per_layer=model_type == "umt5",
            hf_model_type=model_type,
            pad_token_id=hf.get("pad_token_id", 0) if hf.get("pad_token_id") is not None else 0,
            eos_token_id=hf.get("eos_token_id", 1),
            decoder_start_token_id=_first(hf.get("decoder_start_token_id"), hf.get("pad_token_id"), 0),
            initializer_range=hf.get("initializer_factor", 1.0),
        )

    def config_to_hf(self):
        act = self.hidden_act
        proj = ("gated-" if self.gated_ffn else "") + ("gelu" if act == "gelu_new" and self.gated_ffn else act)
        return {
            "model_type": self.hf_model_type,
            "architectures": [self.hf_architecture],
            "vocab_size": self.vocab_size, "d_model": self.hidden_size, "d_kv": self.encoder_head_dim,
            "d_ff": self.encoder_intermediate_size, "num_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers, "num_heads": self.encoder_heads,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "relative_attention_max_distance": self.relative_attention_max_distance,
            "dropout_rate": self.dropout_rate, "layer_norm_epsilon": self.layer_norm_eps,
            "initializer_factor": self.initializer_range, "feed_forward_proj": proj,
            "dense_act_fn": act, "is_gated_act": self.gated_ffn, "is_encoder_decoder": True,
            "pad_token_id": self.pad_token_id, "eos_token_id": self.eos_token_id,
            "decoder_start_token_id": self.decoder_start_token_id,
        }

    def weight_rules(self):
        r = [Rule("shared.weight", self.token_embedding.embeddings)]
        for side in ("encoder", "decoder"):
            r.append(Rule(f"{side}.embed_tokens.weight", self.token_embedding.embeddings,
                          optional=True, export=False))
            blocks = self.encoder_blocks if side == "encoder" else self.decoder_blocks
            tables = self.encoder_relative_bias if side == "encoder" else self.decoder_relative_bias
            names = self.t5_names(side)
            for i, blk in enumerate(blocks):
                r += block_rules(f"{side}.block.{i}.layer", blk, names)
            attention = names["self_attention"][0]
            for i, table in enumerate(tables):
                r.append(Rule(f"{side}.block.{i}.layer.{attention}.relative_attention_bias.weight",
                              table.embeddings))
            norm = self.encoder_final_norm if side == "encoder" else self.decoder_final_norm
            r.append(Rule(f"{side}.final_layer_norm.weight", norm.scale))
        return r

    def t5_names(self, side):
        """HF names of a block's sub-layers on ``side`` (LongT5's encoder attention differs)."""
        return T5_NAMES

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in T5_FIELDS})
        return config


def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None


# Our block's sub-layer -> T5's names (encoder layers: 0 attention, 1 ffn; decoder adds 1 cross).
T5_NAMES = {
    "self_attention": ("0.SelfAttention", ("q", "k", "v", "o")),
    "self_attention_norm": "0.layer_norm",
    "cross_attention": ("1.EncDecAttention", ("q", "k", "v", "o")),
    "cross_attention_norm": "1.layer_norm",
    "ffn_in": ("{ffn}.DenseReluDense.wi", "{ffn}.DenseReluDense.wi_0"),
    "ffn_gate": "{ffn}.DenseReluDense.wi_1",
    "ffn_out": "{ffn}.DenseReluDense.wo",
    "ffn_norm": "{ffn}.layer_norm",
}
