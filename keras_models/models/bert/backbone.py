"""BERT-like encoder backbone: embeddings (word + position + token type) + post-norm blocks.

Configurable by named fields so BERT-shaped families reuse it: ``position_mode`` ("absolute",
or "padding_offset" for RoBERTa's pad-aware positions), ``type_vocab_size`` (0 = none),
``norm_first``.
"""

import keras
from keras import ops

from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import padding_bias
from keras_models.models.backbone import Backbone
from keras_models.models.registry import register_backbone
from keras_models.presets.config import require
from keras_models.presets.weight_map import TRANSPOSE, Rule


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("bert")
class BertBackbone(Backbone):
    base_model_prefix = "bert"
    hf_architecture = "BertModel"
    hf_model_type = "bert"
    hf_ignore = ("*embeddings.position_ids", "*embeddings.token_type_ids")
    hf_known_unused = ("*pooler.dense.*",)

    def __init__(
        self,
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        dropout=0.1,
        attention_dropout=0.1,
        pad_token_id=0,
        position_mode="absolute",
        norm_first=False,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.pad_token_id = pad_token_id
        self.position_mode = position_mode
        self.norm_first = norm_first
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        common = dict(dtype=self.dtype_policy)
        self.token_embedding = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, name="token_embedding", **common
        )
        self.position_embedding = keras.layers.Embedding(
            max_position_embeddings, hidden_size, embeddings_initializer=init,
            name="position_embedding", **common,
        )
        self.token_type_embedding = (
            keras.layers.Embedding(type_vocab_size, hidden_size, embeddings_initializer=init,
                                   name="token_type_embedding", **common)
            if type_vocab_size else None
        )
        self.embeddings_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, name="embeddings_norm", **common
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, **common)
        self.blocks = [
            EncoderBlock(
                hidden_size, num_heads, intermediate_size, hidden_act=hidden_act,
                layer_norm_eps=layer_norm_eps, dropout=dropout,
                attention_dropout=attention_dropout, norm_first=norm_first,
                kernel_initializer=init, name=f"block_{i}", **common,
            )
            for i in range(num_layers)
        ]

    # --- forward ------------------------------------------------------------------------------
    def position_ids(self, input_ids):
        seq_len = ops.shape(input_ids)[1]
        if self.position_mode == "padding_offset":
            # RoBERTa: real tokens count up from pad_token_id + 1; pads sit at pad_token_id.
            mask = ops.cast(ops.not_equal(input_ids, self.pad_token_id), "int32")
            return ops.cumsum(mask, axis=1) * mask + self.pad_token_id
        return ops.broadcast_to(ops.arange(seq_len, dtype="int32")[None, :], ops.shape(input_ids))

    def embed(self, inputs, training=False):
        input_ids = inputs["input_ids"]
        x = self.token_embedding(input_ids)
        positions = inputs.get("position_ids")
        if positions is None:
            positions = self.position_ids(input_ids)
        x = x + self.position_embedding(positions)
        if self.token_type_embedding is not None:
            types = inputs.get("token_type_ids")
            if types is None:
                types = ops.zeros_like(input_ids)
            x = x + self.token_type_embedding(types)
        return self.embeddings_dropout(self.embeddings_norm(x), training=training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        x = self.embed(inputs, training=training)
        mask = inputs.get("attention_mask")
        bias = None if mask is None else padding_bias(mask, x.dtype)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return x

    # --- HF conversion ------------------------------------------------------------------------
    @classmethod
    def config_from_hf(cls, hf):
        kind = hf.get("position_embedding_type", "absolute")
        if kind not in (None, "absolute"):
            from keras_models.errors import ConfigError

            raise ConfigError(f"config.json: position_embedding_type={kind!r} is not supported yet")
        return dict(
            vocab_size=require(hf, "vocab_size"),
            hidden_size=require(hf, "hidden_size"),
            num_layers=require(hf, "num_hidden_layers"),
            num_heads=require(hf, "num_attention_heads"),
            intermediate_size=require(hf, "intermediate_size"),
            hidden_act=hf.get("hidden_act", "gelu"),
            max_position_embeddings=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            pad_token_id=hf.get("pad_token_id") or 0,
            initializer_range=hf.get("initializer_range", 0.02),
        )

    def config_to_hf(self):
        return {
            "model_type": self.hf_model_type,
            "architectures": [self.hf_architecture],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_dropout_prob": self.dropout_rate,
            "attention_probs_dropout_prob": self.attention_dropout,
            "pad_token_id": self.pad_token_id,
            "initializer_range": self.initializer_range,
            "position_embedding_type": "absolute",
        }

    def weight_rules(self):
        r = [
            Rule("embeddings.word_embeddings.weight", self.token_embedding.embeddings),
            Rule("embeddings.position_embeddings.weight", self.position_embedding.embeddings),
            Rule("embeddings.LayerNorm.weight", self.embeddings_norm.gamma),
            Rule("embeddings.LayerNorm.bias", self.embeddings_norm.beta),
        ]
        if self.token_type_embedding is not None:
            r.append(Rule("embeddings.token_type_embeddings.weight", self.token_type_embedding.embeddings))
        for i, b in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            pairs = [
                ("attention.self.query", b.attention.query),
                ("attention.self.key", b.attention.key),
                ("attention.self.value", b.attention.value),
                ("attention.output.dense", b.attention.output_dense),
                ("intermediate.dense", b.intermediate),
                ("output.dense", b.output_dense),
            ]
            for name, dense in pairs:
                r.append(Rule(p + name + ".weight", dense.kernel, TRANSPOSE))
                r.append(Rule(p + name + ".bias", dense.bias))
            for name, norm in (("attention.output.LayerNorm", b.attention_norm), ("output.LayerNorm", b.output_norm)):
                r.append(Rule(p + name + ".weight", norm.gamma))
                r.append(Rule(p + name + ".bias", norm.beta))
        return r

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            num_heads=self.num_heads, intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act, max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size, layer_norm_eps=self.layer_norm_eps,
            dropout=self.dropout_rate, attention_dropout=self.attention_dropout,
            pad_token_id=self.pad_token_id, position_mode=self.position_mode,
            norm_first=self.norm_first, initializer_range=self.initializer_range,
        )
        return config
