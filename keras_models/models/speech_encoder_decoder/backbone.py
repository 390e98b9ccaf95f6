"""SpeechEncoderDecoder: a Wav2Vec2-family speech encoder (any registered backbone built on
Wav2Vec2Backbone: wav2vec2, HuBERT, Data2VecAudio, WavLM, UniSpeech, SEW...), a text decoder with
cross-attention (a BART-like ``*ForCausalLM`` or TrOCR, as VisionEncoderDecoder's), and
``enc_to_dec_proj`` where the widths differ.

config.json holds ``encoder`` (resolved by its ``model_type``) and ``decoder``. The encoder takes
raw ``input_values`` (batch, samples) and their ``attention_mask``; the decoder's cross-attention
masks the frames the conv stack makes of padding (the encoder's output lengths). An encoder with
``add_adapter`` (the strided downsampling adapter) is refused with a ConfigError naming the key.

Returns ``{"encoder_last_hidden_state", "last_hidden_state"}`` for ``{"input_values",
"attention_mask", "decoder_input_ids", "decoder_attention_mask"}``; the encoder state is taken
after ``enc_to_dec_proj``, as Transformers' SpeechEncoderDecoderModel returns it. Weight names are Transformers': ``encoder.`` + the speech model's own
names, ``decoder.model.decoder.`` + the decoder stack's, ``enc_to_dec_proj``; the head
(``decoder.lm_head`` / ``decoder.output_projection``) belongs to the Seq2SeqLM task.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.models.registry import register_backbone
from keras_models.models.vision_encoder_decoder.backbone import (VisionEncoderDecoderBackbone,
                                                                 VisionEncoderDecoderSpec)
from keras_models.models.wav2vec2.backbone import Wav2Vec2Backbone
from keras_models.spec import tower

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class SpeechEncoderDecoderSpec(VisionEncoderDecoderSpec):
    encoder: dict = tower("encoder", "wav2vec2", doc="the speech model's config (a Wav2Vec2-family backbone)")

    def dummy_inputs(self):
        ones = np.ones((1, 2), "int32")
        return {"input_values": np.zeros((1, 16000), "float32"), "attention_mask": np.ones((1, 16000), "int32"),
                "decoder_input_ids": ones, "decoder_attention_mask": ones}


@_ser
@register_backbone("speech-encoder-decoder")
class SpeechEncoderDecoderBackbone(VisionEncoderDecoderBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` (SpeechEncoderDecoderModel's encoder
    output after ``enc_to_dec_proj`` and the decoder's last hidden state)."""

    spec_cls = SpeechEncoderDecoderSpec
    verified_backends = ("jax", "torch", "tensorflow")
    checkpoint_families = ()
    hf_architecture = "SpeechEncoderDecoderModel"
    hf_known_unused = ("encoder.masked_spec_embed",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        if not isinstance(self.encoder, Wav2Vec2Backbone):
            raise ConfigError(f"config.json [encoder]: model_type {self.spec.encoder.get('model_type')!r} is not a "
                              "Wav2Vec2-family speech encoder (wav2vec2, hubert, wavlm, data2vec-audio...)")

    def build(self, input_shape=None):
        self.encoder.build_from_dummy()
        self.decoder.build_from_dummy()
        if self.enc_to_dec_proj is not None:
            self.enc_to_dec_proj.build((None, None, self.encoder_width))
        self.built = True

    # --- encoder --------------------------------------------------------------------------------
    def encode_audio(self, input_values, attention_mask=None, training=False):
        """The speech model's last hidden state (batch, frames, encoder width)."""
        if input_values is None:
            raise InputError("SpeechEncoderDecoder needs 'input_values' (batch, samples)")
        if len(input_values.shape) != 2:
            raise InputError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        inputs = {"input_values": ops.cast(input_values, self.compute_dtype)}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        return self.encoder(inputs, training=training)

    def encoder_mask(self, attention_mask, frames):
        """(batch, frames) int32: the frames made from real samples."""
        return ops.cast(self.encoder.frame_mask(attention_mask, frames), "int32")

    def encode(self, input_values, attention_mask=None, training=False):
        """The states the decoder cross-attends to (after ``enc_to_dec_proj``)."""
        return self.project(self.encode_audio(input_values, attention_mask, training))

    def encode_inputs(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_values": inputs}
        return self.encode(inputs.get("input_values"), inputs.get("attention_mask"), training)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs:
            raise InputError("SpeechEncoderDecoder takes a dict with 'input_values' and 'decoder_input_ids'")
        mask = inputs.get("attention_mask")
        enc = self.encode(inputs.get("input_values"), mask, training)
        enc_mask = None if mask is None else self.encoder_mask(mask, ops.shape(enc)[1])
        dec = self.decode(inputs["decoder_input_ids"], enc, enc_mask,
                          inputs.get("decoder_attention_mask"), training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}


__all__ = ["SpeechEncoderDecoderSpec", "SpeechEncoderDecoderBackbone"]
