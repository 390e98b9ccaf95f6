"""VisionEncoderDecoder: any registered vision backbone as the encoder, a text decoder with
cross-attention (decoder.py), and ``enc_to_dec_proj`` where the widths differ.

config.json holds the two sub-models' configs under ``encoder`` (resolved by its ``model_type``
to a registered vision backbone: ViT, DeiT, BEiT, Swin, DonutSwin...) and ``decoder`` (TrOCR or a
BART-like ``*ForCausalLM``). The encoder's last hidden state (batch, tokens, width) is projected
to the decoder's width by ``enc_to_dec_proj`` when the widths differ and the decoder sets no
``cross_attention_hidden_size``; the decoder attends to every encoder token (no encoder mask).

Returns ``{"encoder_last_hidden_state", "last_hidden_state"}`` for ``{"pixel_values"
(channels_last), "decoder_input_ids", "decoder_attention_mask"}``. Weight names are Transformers':
``encoder.`` + the vision model's own names, ``decoder.model.decoder.`` + the decoder stack's,
``enc_to_dec_proj``; the head (``decoder.output_projection`` / ``decoder.lm_head``) belongs to
ImageToText.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.models.vision_encoder_decoder.decoder import build_decoder, decoder_kwargs, head_name
from keras_models.presets.weight_map import mount
from keras_models.spec import Spec, build_tower, hf, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


def _decoder_config(value):
    if not isinstance(value, dict):
        raise ValueError("expected an object")
    decoder_kwargs(value)  # a bad decoder config fails at load, naming its key
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class VisionEncoderDecoderSpec(Spec):
    encoder: dict = tower("encoder", "vit", doc="the vision model's config (any registered vision backbone)")
    decoder: dict = hf("decoder", read=_decoder_config, doc="the text decoder's config (trocr, mbart, bart...)")
    decoder_start_token_id: int | None = hf("decoder_start_token_id", None)
    pad_token_id: int | None = hf("pad_token_id", None)
    eos_token_id: int | None = hf("eos_token_id", None)

    def adjust_to_hf(self, out):
        out.update(is_encoder_decoder=True, tie_word_embeddings=False)
        return out

    def dummy_inputs(self):
        e = self.encoder
        size = e.get("image_size", 224)
        h, w = size if isinstance(size, (list, tuple)) else (size, size)
        ones = np.ones((1, 2), "int32")
        return {"pixel_values": np.zeros((1, h, w, e.get("num_channels", 3)), "float32"),
                "decoder_input_ids": ones, "decoder_attention_mask": ones}


@_ser
@register_backbone("vision-encoder-decoder")
class VisionEncoderDecoderBackbone(SpecBackbone):
    """``{"encoder_last_hidden_state", "last_hidden_state"}`` (VisionEncoderDecoderModel's encoder
    output before ``enc_to_dec_proj`` and the decoder's last hidden state)."""

    spec_cls = VisionEncoderDecoderSpec
    verified_backends = _ALL
    # vision-encoder-decoder checkpoints: Nougat (DonutSwin + mBART), TrOCR (ViT / DeiT / BEiT + TrOCR decoder)
    checkpoint_families = ("Nougat", "TrOCR")
    base_model_prefix = ""
    hf_architecture = "VisionEncoderDecoderModel"
    hf_ignore = ("*relative_position_index", "*position_ids")
    hf_known_unused = ("encoder.pooler.*",)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.encoder = build_tower(s.encoder, "encoder", self.dtype_policy)
        self.decoder = build_decoder(s.decoder, "decoder", self.dtype_policy)
        width = getattr(self.encoder, "num_features", None) or getattr(self.encoder, "hidden_size", None)
        if not isinstance(width, int):
            raise ConfigError(f"encoder: model_type {s.encoder.get('model_type')!r} is not a vision backbone "
                              "with a (batch, tokens, hidden) output")
        self.encoder_width = width
        d = self.decoder
        context = d.cross_attention_hidden_size
        if context is not None and context != width:
            raise ConfigError(f"config.json [decoder]: cross_attention_hidden_size={context} must equal the "
                              f"encoder's hidden size ({width})")
        self.enc_to_dec_proj = None
        if width != d.hidden_size and context is None:
            self.enc_to_dec_proj = keras.layers.Dense(d.hidden_size, name="enc_to_dec_proj", dtype=self.dtype_policy)
        # the generation interface reads these off the backbone
        for name in ("vocab_size", "hidden_size", "initializer_range", "decoder_heads", "decoder_head_dim",
                     "num_decoder_layers", "bos_token_id", "forced_bos_token_id", "forced_eos_token_id",
                     "max_position_embeddings"):
            setattr(self, name, getattr(d, name))
        for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
            value = getattr(s, name)
            setattr(self, name, getattr(d, name) if value is None else value)

    def build(self, input_shape=None):
        self.encoder.build_from_dummy()
        self.decoder.build_from_dummy()
        if self.enc_to_dec_proj is not None:
            self.enc_to_dec_proj.build((None, None, self.encoder_width))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- the shared encoder-decoder interface (Seq2SeqLM, its generation) --------------------------
    def decoder_embedding(self):
        return self.decoder.token_embedding

    @property
    def token_embedding(self):
        return self.decoder.token_embedding

    def encode_pixels(self, pixel_values, training=False):
        """The vision model's last hidden state (batch, tokens, encoder width)."""
        if pixel_values is None:
            raise InputError("VisionEncoderDecoder needs 'pixel_values' (batch, height, width, channels)")
        if len(pixel_values.shape) != 4:
            raise InputError(f"pixel_values must be (batch, height, width, channels), got shape "
                             f"{tuple(pixel_values.shape)}")
        return self.encoder({"pixel_values": ops.cast(pixel_values, self.compute_dtype)}, training=training)

    def project(self, states):
        return states if self.enc_to_dec_proj is None else self.enc_to_dec_proj(states)

    def encode_inputs(self, inputs, training=False):
        """The states the decoder cross-attends to (after ``enc_to_dec_proj``)."""
        pixels = inputs.get("pixel_values") if isinstance(inputs, dict) else inputs
        return self.project(self.encode_pixels(pixels, training))

    def init_cache(self, batch_size, max_length, encoder_states=None):
        return self.decoder.init_cache(batch_size, max_length, encoder_states)

    def cross_kv_cache(self, encoder_states):
        return self.decoder.cross_kv_cache(encoder_states)

    def decode(self, decoder_input_ids, encoder_states, encoder_attention_mask=None, decoder_attention_mask=None,
               training=False):
        return self.decoder.decode(decoder_input_ids, encoder_states, encoder_attention_mask,
                                   decoder_attention_mask, training=training)

    def decode_with_cache(self, decoder_input_ids, encoder_states, encoder_attention_mask, cache, cache_index,
                          decoder_attention_mask=None):
        return self.decoder.decode_with_cache(decoder_input_ids, encoder_states, encoder_attention_mask, cache,
                                              cache_index, decoder_attention_mask)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs:
            raise InputError("VisionEncoderDecoder takes a dict with 'pixel_values' and 'decoder_input_ids'")
        enc = self.encode_pixels(inputs.get("pixel_values"), training)
        dec = self.decode(inputs["decoder_input_ids"], self.project(enc), None, inputs.get("decoder_attention_mask"),
                          training=training)
        return {"encoder_last_hidden_state": enc, "last_hidden_state": dec}

    @property
    def hf_lm_head(self):
        """The head's tensor name (ImageToText): the decoder's own head under ``decoder.``."""
        return f"decoder.{head_name(self.spec.decoder)}.weight"

    @classmethod
    def tied_head(cls, hf_config):
        """Whether the head is the token table: the decoder config's ``tie_word_embeddings``."""
        return bool((hf_config.get("decoder") or {}).get("tie_word_embeddings", True))

    # --- weights --------------------------------------------------------------------------------
    def weight_rules(self):
        r = mount(self.encoder.weight_rules(), "encoder.")
        r += mount(self.decoder.decoder_rules(), "decoder.model.decoder.")
        if self.enc_to_dec_proj is not None:
            r += dense_rules("enc_to_dec_proj", self.enc_to_dec_proj, base=False)
        return r


__all__ = ["VisionEncoderDecoderSpec", "VisionEncoderDecoderBackbone"]
