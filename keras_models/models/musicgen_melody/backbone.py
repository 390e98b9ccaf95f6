"""MusicGen Melody: MusicGen's decoder without cross-attention; the conditioning is *prepended*.

* :class:`MusicgenMelodyDecoderBackbone` (``musicgen_melody_decoder``, Transformers'
  ``MusicgenMelodyModel``): MusicGen's codebook decoder (summed per-codebook token tables,
  ``[cos | sin]`` sinusoidal positions, pre-norm bias-free layers) with self-attention only. Given
  ``encoder_hidden_states`` (batch, p, hidden), they are put before the code embeddings, the
  positions run over both and the causal mask covers the whole sequence: the output is (batch, p +
  time, hidden).
* :class:`MusicgenMelodyBackbone` (``musicgen_melody``): the composite. The conditioning prefix is
  ``[chroma (chroma_length frames) | text states]``: the T5 encoder's states (projected by
  ``enc_to_dec_proj`` when the widths differ, zeroed at padded positions) after the melody's chroma
  ``input_features`` (batch, frames, num_chroma), projected by ``audio_enc_to_dec_proj`` when
  ``num_chroma`` differs from the decoder's width and repeated / cut to ``chroma_length`` frames.
  Without ``input_features`` the "null" chroma (one frame, bin 0 set) is used, as Transformers does.
"""

import math
from dataclasses import dataclass

import keras
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.masks import causal_bias, padding_bias
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.models.musicgen.backbone import (MusicgenBackbone, MusicgenDecoderBackbone, MusicgenDecoderSpec,
                                                   MusicgenSpec)
from keras_models.models.registry import register_backbone
from keras_models.spec import const, dim, tower

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class MusicgenMelodyDecoderSpec(MusicgenDecoderSpec):
    cross_attention: bool = const(False, doc="no cross-attention: the conditioning is prepended to the codes")


@_ser
@register_backbone("musicgen_melody_decoder")
class MusicgenMelodyDecoderBackbone(MusicgenDecoderBackbone):
    """``(batch, p + time, hidden)`` for ``{"input_ids" (batch * num_codebooks, time),
    "encoder_hidden_states" (batch, p, hidden), "encoder_attention_mask" (batch, p), "attention_mask"
    (batch, time)}`` (all but ``input_ids`` optional; without a prefix ``p`` = 0)."""

    spec_cls = MusicgenMelodyDecoderSpec
    verified_backends = _ALL
    hf_architecture = "MusicgenMelodyModel"

    def _mask(self, prefix, prefix_mask, attention_mask, t_codes):
        """Transformers' padding mask over ``[prefix | codes]`` (None: none): a missing half is all ones
        when the other is given."""
        if prefix is None:
            return attention_mask
        if prefix_mask is None and attention_mask is None:
            return None
        batch = ops.shape(prefix)[0]
        if prefix_mask is None:
            prefix_mask = ops.ones((batch, ops.shape(prefix)[1]), "int32")
        if attention_mask is None:
            attention_mask = ops.ones((batch, t_codes), "int32")
        return ops.concatenate([ops.cast(prefix_mask, "int32"), ops.cast(attention_mask, "int32")], axis=1)

    def decode(self, input_ids, prefix=None, prefix_mask=None, attention_mask=None, training=False):
        x = self.embedding_dropout(self.embed(input_ids, prefix=prefix), training=training)
        t = ops.shape(x)[1]
        bias = causal_bias(t, t, x.dtype)
        mask = self._mask(prefix, prefix_mask, attention_mask, ops.shape(input_ids)[1])
        if mask is not None:
            bias = bias + padding_bias(mask, x.dtype)
        for blk in self.blocks:
            x = blk(x, bias, training=training)
        return self.final_norm(x)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError(f"MusicGen Melody's decoder takes 'input_ids' (batch * num_codebooks, time), got "
                             f"{sorted(inputs)}")
        return self.decode(inputs["input_ids"], inputs.get("encoder_hidden_states"),
                           inputs.get("encoder_attention_mask"), inputs.get("attention_mask"), training=training)

    def decode_with_cache(self, input_ids, prefix, cache, cache_index):
        """Decode ``input_ids`` (batch * K, t), after ``prefix`` (batch, p, hidden) or None, at positions
        ``cache_index ..``. Returns ``(hidden (batch, p + t, hidden), new_cache)``."""
        if type(cache_index) is not int:
            cache_index = ops.cast(cache_index, "int32")
        x = self.embed(input_ids, cache_index, prefix=prefix)
        t = ops.shape(x)[1]
        max_length = ops.shape(cache["self_kv"][0][0])[2]
        bias = causal_bias(t, max_length, x.dtype, offset=cache_index)
        new_self = []
        for i, blk in enumerate(self.blocks):
            x, layer_cache = blk(x, bias, cache=cache["self_kv"][i], cache_index=cache_index)
            new_self.append(layer_cache)
        return self.final_norm(x), {**cache, "self_kv": tuple(new_self)}


@dataclass(frozen=True, kw_only=True)
class MusicgenMelodySpec(MusicgenSpec):
    decoder: dict = tower("decoder", "musicgen_melody_decoder", doc="the codebook decoder's config")
    num_chroma: int = dim("num_chroma", 12)
    chroma_length: int = dim("chroma_length", 235, doc="frames of chroma in the prefix (repeated / cut to it)")


@_ser
@register_backbone("musicgen_melody")
class MusicgenMelodyBackbone(MusicgenBackbone):
    """``{"encoder_last_hidden_state", "encoder_hidden_states", "last_hidden_state"}`` for
    ``{"input_ids", "attention_mask"`` (the text), ``"input_features"`` (batch, frames, num_chroma,
    optional), ``"decoder_input_ids"`` (batch * num_codebooks, time), ``"decoder_attention_mask"``
    (optional)``}``: the text encoder's output, the conditioning prefix and the decoder's last hidden
    state over ``[prefix | codes]``."""

    spec_cls = MusicgenMelodySpec
    verified_backends = _ALL
    hf_architecture = "MusicgenMelodyForConditionalGeneration"

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        if not isinstance(self.decoder, MusicgenMelodyDecoderBackbone):
            from keras_models.errors import ConfigError

            raise ConfigError(f"config.json [decoder]: model_type {s.decoder.get('model_type')!r} is not "
                              "'musicgen_melody_decoder'")
        self.num_chroma = s.num_chroma
        self.chroma_length = s.chroma_length
        self.audio_enc_to_dec_proj = None
        if s.num_chroma != self.hidden_size:
            self.audio_enc_to_dec_proj = keras.layers.Dense(self.hidden_size, name="audio_enc_to_dec_proj",
                                                            dtype=self.dtype_policy)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.audio_enc_to_dec_proj is not None:
            self.audio_enc_to_dec_proj.build((None, None, self.num_chroma))

    def null_chroma(self, batch, frames=1):
        """The "no melody" chroma: (batch, frames, num_chroma), bin 0 set."""
        one_hot = ops.one_hot(ops.zeros((batch, frames), "int32"), self.num_chroma)
        return ops.cast(one_hot, self.compute_dtype)

    def chroma_states(self, input_features):
        """(batch, frames, num_chroma) -> (batch, chroma_length, hidden): projected, repeated / cut."""
        x = ops.cast(input_features, self.compute_dtype)
        if len(x.shape) != 3 or x.shape[-1] != self.num_chroma:
            raise InputError(f"input_features: expected (batch, frames, num_chroma={self.num_chroma}), got shape "
                             f"{tuple(x.shape)}")
        if self.audio_enc_to_dec_proj is not None:
            x = self.audio_enc_to_dec_proj(x)
        frames = x.shape[1]
        if frames is None:
            raise InputError("input_features: the number of chroma frames must be static")
        if frames < self.chroma_length:
            x = ops.tile(x, (1, int(math.ceil(self.chroma_length / frames)), 1))
        return x[:, :self.chroma_length]

    def conditioning(self, input_ids=None, attention_mask=None, input_features=None, training=False):
        """``(text encoder output or None, prefix (batch, p, hidden))``."""
        states, parts = None, []
        if input_ids is not None:
            states, cond = self.encode_text(input_ids, attention_mask, training=training)
            if input_features is None:
                input_features = self.null_chroma(ops.shape(cond)[0])
            parts = [cond]
        if input_features is not None:
            parts = [self.chroma_states(input_features)] + parts
        if not parts:
            raise InputError("MusicGen Melody needs text ('input_ids') or a melody ('input_features')")
        return states, ops.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "decoder_input_ids" not in inputs or not (
                "input_ids" in inputs or "input_features" in inputs):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise InputError("MusicGen Melody takes a dict with 'input_ids' (the text) and / or 'input_features' (the "
                             f"chroma), and 'decoder_input_ids' (batch * num_codebooks, time); got {got}")
        states, prefix = self.conditioning(inputs.get("input_ids"), inputs.get("attention_mask"),
                                           inputs.get("input_features"), training=training)
        dec = self.decoder.decode(inputs["decoder_input_ids"], prefix, None, inputs.get("decoder_attention_mask"),
                                  training=training)
        out = {"encoder_hidden_states": prefix, "last_hidden_state": dec}
        if states is not None:
            out["encoder_last_hidden_state"] = states
        return out

    def weight_rules(self):
        r = super().weight_rules()
        if self.audio_enc_to_dec_proj is not None:
            r += dense_rules("audio_enc_to_dec_proj", self.audio_enc_to_dec_proj, base=False)
        return r


__all__ = ["MusicgenMelodyDecoderSpec", "MusicgenMelodyDecoderBackbone", "MusicgenMelodySpec",
           "MusicgenMelodyBackbone"]
