"""T5 family (T5 v1.0, v1.1 / FLAN-T5 / UL2 gated-GELU, mT5, UMT5) on the shared encoder-decoder.

T5 quirks as named fields: RMS norms without bias, pre-norm, no attention scaling, bias-free
projections, learned bucketed relative position bias (computed by the first layer and shared,
or one table per layer with ``relative_bias_per_layer`` for UMT5). No absolute positions.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.layers.bucketed_position_bias import BucketedPositionBias
from keras_models.models.encoder_decoder.backbone import EncoderDecoderBackbone
from keras_models.models.encoder_decoder.rules import block_rules
from keras_models.models.encoder_decoder.spec import keep_explicit_nulls
from keras_models.models.registry import register_backbone
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, const, dim, hf

T5_FIELDS = ("relative_attention_num_buckets", "relative_attention_max_distance",
             "relative_bias_per_layer", "hf_model_type")


@dataclass(frozen=True, kw_only=True)
class T5Spec(Spec):
    # feed_forward_proj ('ACT' or 'gated-ACT') when absent from config.json; None: not read
    feed_forward_proj: ClassVar[str | None] = "relu"

    vocab_size: int = dim("vocab_size")
    hidden_size: int = dim("d_model")
    num_encoder_layers: int = dim("num_layers")
    num_decoder_layers: int = dim("num_decoder_layers", None, doc="None: num_layers")
    encoder_heads: int = dim("num_heads")
    decoder_heads: int = dim("num_heads")
    encoder_intermediate_size: int = dim("d_ff")
    decoder_intermediate_size: int = dim("d_ff")
    head_dim: int | None = dim("d_kv")
    hidden_act: str = hf("dense_act_fn", "relu", doc="default: from feed_forward_proj")
    gated_ffn: bool = hf("is_gated_act", False, doc="read from feed_forward_proj")
    layer_norm_eps: float = hf("layer_norm_epsilon", 1e-6)
    dropout: float = hf("dropout_rate", 0.1)
    relative_attention_num_buckets: int = dim("relative_attention_num_buckets", 32)
    relative_attention_max_distance: int = dim("relative_attention_max_distance", 128)
    pad_token_id: int = hf("pad_token_id", 0)
    eos_token_id: int | None = hf("eos_token_id", 1)
    decoder_start_token_id: int = hf("decoder_start_token_id", 0, doc="default: pad_token_id")
    initializer_range: float = hf("initializer_factor", 1.0)
    relative_bias_per_layer: bool = const(False, doc="one relative bias table per layer (UMT5)")
    hf_model_type: str = const("t5", doc="the config.json model_type written back")
    norm_type: str = const("rms")
    norm_first: bool = const(True)
    use_bias: bool = const(False)
    attention_scale: float = const(1.0)
    final_norm: bool = const(True)
    bos_token_id: int | None = const(None)

    @classmethod
    def from_hf(cls, config, source="config.json"):
        if cls is T5Spec and isinstance(config, dict):  # mT5 / UMT5: their own spec
            cls = T5_SPECS.get(config.get("model_type", "t5"), cls)
        return super(T5Spec, cls).from_hf(config, source)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values.setdefault("num_decoder_layers", values["num_encoder_layers"])
        values.setdefault("decoder_start_token_id", values.get("pad_token_id", 0))
        if cls.feed_forward_proj is not None:
            proj = config.get("feed_forward_proj") or cls.feed_forward_proj
            parts = proj.split("-")
            if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
                raise ConfigError(f"{source}: feed_forward_proj={proj!r} is not 'ACT' or 'gated-ACT'")
            values["gated_ffn"] = len(parts) == 2
            if config.get("dense_act_fn") is None:
                values["hidden_act"] = "gelu_new" if proj == "gated-gelu" else parts[-1]
        return keep_explicit_nulls(cls, config, values)

    def adjust_to_hf(self, out):
        if out.get("d_kv") is None:
            out["d_kv"] = self.hidden_size // self.encoder_heads
        if self.feed_forward_proj is not None:
            act = "gelu" if self.hidden_act == "gelu_new" and self.gated_ffn else self.hidden_act
            out["feed_forward_proj"] = ("gated-" if self.gated_ffn else "") + act
        out["is_encoder_decoder"] = True
        return out


@dataclass(frozen=True, kw_only=True)
class MT5Spec(T5Spec):
    feed_forward_proj: ClassVar[str | None] = "gated-gelu"
    hidden_act: str = hf("dense_act_fn", "gelu_new", doc="default: from feed_forward_proj")
    gated_ffn: bool = hf("is_gated_act", True, doc="read from feed_forward_proj")
    hf_model_type: str = const("mt5")


@dataclass(frozen=True, kw_only=True)
class UMT5Spec(MT5Spec):
    relative_bias_per_layer: bool = const(True)
    hf_model_type: str = const("umt5")


T5_SPECS = {"t5": T5Spec, "mt5": MT5Spec, "umt5": UMT5Spec}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("t5", "mt5", "umt5")
class T5Backbone(EncoderDecoderBackbone):
    verified_backends = ("jax", "torch", "tensorflow")  # parity tests pass on all three
    checkpoint_families = ("FLAN-T5", "UL2", "FLAN-UL2", "ByT5", "MADLAD-400", "T5v1.1")  # checkpoint-only rows (docs/models.md)
    base_model_prefix = ""
    hf_architecture = "T5Model"
    spec_cls = T5Spec  # mT5 / UMT5 read their own spec by model_type
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

    # --- HF conversion (config.json: spec_cls) ------------------------------------------------------
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
