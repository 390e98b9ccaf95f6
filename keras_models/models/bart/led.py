"""LED (Longformer-Encoder-Decoder): BART with Longformer attention in the encoder.

Named differences from BART: learned positions without offset, separate encoder / decoder
position tables (``decoder_max_position_embeddings``), and encoder self-attention that is local
(``attention_window``, one even width per layer: tokens see ``window // 2`` neighbours each side)
plus global tokens from ``global_attention_mask`` (none when it is not given, as in Transformers),
which use their own ``query_global`` / ``key_global`` / ``value_global`` projections.
"""

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.longformer_attention import longformer_bias
from keras_models.layers.masks import padding_bias
from keras_models.models.bart.backbone import BART_NAMES, BartBackbone
from keras_models.models.bart.families import config_from_hf as bart_config_from_hf
from keras_models.models.bart.families import config_to_hf as bart_config_to_hf
from keras_models.models.bart.tasks import BartQuestionAnswerer
from keras_models.models.encoder_decoder.rules import dense_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.config import require
from keras_models.tasks.seq2seq_lm import Seq2SeqLM

_ser = keras.saving.register_keras_serializable(package="keras_models")

LED_ENCODER_NAMES = {
    **BART_NAMES,
    "self_attention": ("self_attn", ("longformer_self_attn.query", "longformer_self_attn.key",
                                     "longformer_self_attn.value", "output")),
}


@_ser
@register_backbone("led")
class LEDBackbone(BartBackbone):
    base_model_prefix = "led"
    hf_architecture = "LEDModel"
    encoder_block_names = LED_ENCODER_NAMES
    encoder_block_options = {"self_attention_kind": "longformer"}
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, *args, attention_window=512, position_offset=0, hf_model_type="led", **kwargs):
        super().__init__(*args, position_offset=position_offset, hf_model_type=hf_model_type, **kwargs)
        windows = attention_window if isinstance(attention_window, (list, tuple)) else \
            [attention_window] * self.num_encoder_layers
        if len(windows) != self.num_encoder_layers or any(w <= 0 or w % 2 for w in windows):
            raise ConfigError(f"attention_window={attention_window!r}: one positive even width per "
                              f"encoder layer ({self.num_encoder_layers}) is needed")
        self.attention_window = [int(w) for w in windows]
        self.hf_architecture = "LEDModel"

    def encode_inputs(self, inputs, training=False):
        return self.encode(inputs["input_ids"], inputs.get("attention_mask"), training=training,
                           global_attention_mask=inputs.get("global_attention_mask"))

    def encode(self, input_ids, attention_mask=None, training=False, global_attention_mask=None):
        x = self.embed_encoder(input_ids, training=training)
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        glob = None
        if global_attention_mask is not None:  # padding tokens are never global
            glob = ops.cast(global_attention_mask, x.dtype) * ops.cast(attention_mask, x.dtype)
        pad = padding_bias(attention_mask, x.dtype)
        for window, blk in zip(self.attention_window, self.encoder_blocks):
            local = longformer_bias(attention_mask, window, glob, x.dtype)
            bias = local if glob is None else {"local": local, "global": pad, "is_global": glob}
            x = blk(x, bias, training=training)
        return self.embedding_dropout(x, training=training)

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["global_attention_mask"] = inputs["attention_mask"] * 0
        return inputs

    # --- HF conversion --------------------------------------------------------------------------
    @classmethod
    def config_from_hf(cls, hf):
        c = bart_config_from_hf({**hf, "model_type": "bart",
                                 "max_position_embeddings": require(hf, "max_encoder_position_embeddings")})
        c.update(position_offset=0, hf_model_type="led", attention_window=hf.get("attention_window", 512),
                 decoder_max_position_embeddings=require(hf, "max_decoder_position_embeddings"))
        return c

    def config_to_hf(self):
        c = bart_config_to_hf(self)
        c.pop("max_position_embeddings")
        c.pop("scale_embedding")
        c.update(model_type="led", architectures=[self.hf_architecture],
                 max_encoder_position_embeddings=self.max_position_embeddings,
                 max_decoder_position_embeddings=self.decoder_max_position_embeddings,
                 attention_window=list(self.attention_window))
        return c

    def weight_rules(self):
        r = super().weight_rules()
        for i, blk in enumerate(self.encoder_blocks):
            a = self.encoder_blocks[i].self_attention
            prefix = f"encoder.layers.{i}.self_attn.longformer_self_attn"
            for name in ("query_global", "key_global", "value_global"):
                r += dense_rules(f"{prefix}.{name}", getattr(a, name))
        return r

    def get_config(self):
        config = super().get_config()
        config["attention_window"] = list(self.attention_window)
        return config


@_ser
@register_task(LEDBackbone, "Seq2SeqLM", ("LEDForConditionalGeneration",))
class LEDSeq2SeqLM(Seq2SeqLM):
    pass


@_ser
@register_task(LEDBackbone, "QuestionAnswerer", ("LEDForQuestionAnswering",))
class LEDQuestionAnswerer(BartQuestionAnswerer):
    pass


__all__ = ["LEDBackbone", "LEDSeq2SeqLM", "LEDQuestionAnswerer"]
