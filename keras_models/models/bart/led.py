"""LED (Longformer-Encoder-Decoder): BART with Longformer attention in the encoder.

Named differences from BART: learned positions without offset, separate encoder / decoder
position tables (``decoder_max_position_embeddings``), and encoder self-attention that is local
(``attention_window``, one even width per layer: tokens see ``window // 2`` neighbours each side)
plus global tokens from ``global_attention_mask`` (none when it is not given, as in Transformers),
which use their own ``query_global`` / ``key_global`` / ``value_global`` projections.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.longformer_attention import longformer_bias
from keras_models.layers.masks import padding_bias
from keras_models.models.bart.backbone import BART_NAMES, BartBackbone
from keras_models.models.bart.families import BartSpec
from keras_models.models.bart.tasks import BartLikeSeq2SeqLM, BartQuestionAnswerer
from keras_models.models.encoder_decoder.rules import dense_rules
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf

_ser = keras.saving.register_keras_serializable(package="keras_models")

LED_ENCODER_NAMES = {
    **BART_NAMES,
    "self_attention": ("self_attn", ("longformer_self_attn.query", "longformer_self_attn.key",
                                     "longformer_self_attn.value", "output")),
}


@dataclass(frozen=True, kw_only=True)
class LEDSpec(BartSpec):
    architecture: ClassVar[str] = "LEDModel"
    max_position_embeddings: int = dim("max_encoder_position_embeddings")
    decoder_max_position_embeddings: int = dim("max_decoder_position_embeddings")
    attention_window: int | tuple = hf("attention_window", 512, doc="one even width, or one per encoder layer")
    scale_embedding: bool = const(False)
    forced_eos_token_id: int | None = hf("forced_eos_token_id", None)
    hf_model_type: str = const("led")
    position_offset: int = const(0)


@_ser
@register_backbone("led")
class LEDBackbone(BartBackbone):
    base_model_prefix = "led"
    hf_architecture = "LEDModel"
    spec_cls = LEDSpec
    reads_untied_tables = True  # tie_word_embeddings false: own encoder / decoder / shared tables
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

    # --- HF conversion (config.json: LEDSpec) ---------------------------------------------------
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
class LEDSeq2SeqLM(BartLikeSeq2SeqLM):
    pass


@_ser
@register_task(LEDBackbone, "QuestionAnswerer", ("LEDForQuestionAnswering",))
class LEDQuestionAnswerer(BartQuestionAnswerer):
    pass


__all__ = ["LEDBackbone", "LEDSeq2SeqLM", "LEDQuestionAnswerer"]
