"""MusicGen Melody's task models.

* :class:`MusicgenMelodyCausalLM` (``MusicgenMelodyForCausalLM``): logits (batch * num_codebooks,
  p + time, vocab_size) over ``[prefix | codes]``, as Transformers returns them.
* :class:`MusicgenMelodyTextToAudio` (``MusicgenMelodyForConditionalGeneration``): logits likewise;
  ``generate`` as MusicGen's (delay pattern, greedy or sampled, classifier-free guidance with
  ``guidance_scale > 1``: the unconditional rows get zero text states and the null chroma) with the
  conditioning prefix decoded once, in the first step, before the codes. ``input_features`` (the
  melody's chroma, from :class:`~keras_models.preprocessing.audio.MusicgenMelodyFeatureExtractor`
  or any (batch, frames, num_chroma) array) is passed as a keyword.
"""

import keras
import numpy as np
from keras import ops

from keras_models.generation.config import GenerationError
from keras_models.models.musicgen.tasks import (MusicgenCausalLM, MusicgenTextToAudio, code_generation_length,
                                                code_generation_settings, delay_pattern, next_codes,
                                                undelayed_codes)
from keras_models.models.musicgen_melody.backbone import MusicgenMelodyBackbone, MusicgenMelodyDecoderBackbone
from keras_models.models.registry import register_task

_ser = keras.saving.register_keras_serializable(package="keras_models")


@_ser
@register_task(MusicgenMelodyDecoderBackbone, "CausalLM", ("MusicgenMelodyForCausalLM",))
class MusicgenMelodyCausalLM(MusicgenCausalLM):
    """Logits (batch * num_codebooks, p + time, vocab_size) for ``{"input_ids" (batch * num_codebooks,
    time), "encoder_hidden_states" (batch, p, hidden) (the prepended conditioning), "attention_mask",
    "encoder_attention_mask"}``."""


@_ser
@register_task(MusicgenMelodyBackbone, "TextToAudio", ("MusicgenMelodyForConditionalGeneration",))
class MusicgenMelodyTextToAudio(MusicgenTextToAudio):
    """Logits (batch * num_codebooks, p + time, vocab_size) for ``{"input_ids", "attention_mask",
    "input_features" (optional), "decoder_input_ids" (batch * num_codebooks, time)}``; ``generate``
    (see the module docstring)."""

    def _prefix_fn(self, guided):
        """(ids, mask, chroma features) -> the conditioning prefix; with guidance the unconditional
        rows (zero text states, the null chroma) follow the conditional ones."""
        b = self.backbone

        def prefix(ids, mask, features):
            _, cond = b.encode_text(ids, mask)
            chroma = b.chroma_states(features)
            if guided:
                null = b.chroma_states(b.null_chroma(ops.shape(cond)[0], features.shape[1]))
                chroma = ops.concatenate([chroma, null], axis=0)
                cond = ops.concatenate([cond, ops.zeros_like(cond)], axis=0)
            return ops.concatenate([chroma, cond], axis=1)

        return prefix

    def _first_fn(self):
        """(ids (rows, 1), cache, prefix) -> (last logits (rows, vocab) float32, cache): the prefix and
        the first codes at position 0."""
        dec = self.backbone.decoder

        def first(ids, cache, prefix):
            hidden, cache = dec.decode_with_cache(ids, prefix, cache, 0)
            return ops.cast(self.codebook_logits(hidden)[:, -1], "float32"), cache

        return first

    def _melody_step_fn(self):
        dec = self.backbone.decoder

        def step(ids, cache, index):
            hidden, cache = dec.decode_with_cache(ids, None, cache, index)
            return ops.cast(self.codebook_logits(hidden)[:, -1], "float32"), cache

        return step

    def generate_codes(self, input_ids, attention_mask, settings):
        b = self.backbone
        pick, guidance, start, pad = code_generation_settings(
            b, settings, {"input_features"}, "MusicGen Melody",
            " (MusicGen Melody is conditioned on a melody's chroma, 'input_features', not on an audio prompt)")
        guided = guidance is not None
        batch = input_ids.shape[0]
        features = settings.get("input_features")
        if features is None:  # the null chroma: one frame, bin 0 set
            features = np.zeros((batch, 1, b.num_chroma), "float32")
            features[:, :, 0] = 1
        else:
            features = np.asarray(ops.convert_to_numpy(features), "float32")
            if features.ndim != 3 or features.shape[0] != batch or features.shape[2] != b.num_chroma:
                raise GenerationError(f"generate: input_features must be (batch={batch}, frames, num_chroma="
                                      f"{b.num_chroma}), got shape {features.shape}")
        k, stereo = b.num_codebooks, b.audio_channels == 2
        max_length = code_generation_length(settings, 1, k, stereo)
        fn = self._compiled(("melody_prefix", guided), lambda: self._prefix_fn(guided))
        prefix = fn(ops.convert_to_tensor(input_ids), ops.convert_to_tensor(attention_mask),
                    ops.convert_to_tensor(features))
        p = int(prefix.shape[1])
        rows = 2 * batch if guided else batch
        cache = b.decoder.init_cache(rows, p + max_length)
        pattern = delay_pattern(batch, k, max_length, start, stereo)
        tokens = np.where(pattern == -1, 0, pattern)
        first = self._compiled("melody_first", self._first_fn)
        step = self._compiled("melody_step", self._melody_step_fn)
        for i in range(max_length - 1):
            ids = tokens[:, i:i + 1]
            if guided:
                ids = np.concatenate([ids, ids], axis=0)
            ids = ops.convert_to_tensor(ids.astype("int32"))
            if i == 0:
                logits, cache = first(ids, cache, prefix)
            else:
                logits, cache = step(ids, cache, ops.convert_to_tensor(np.int32(p + i)))
            nxt = next_codes(logits, batch, k, guidance, pick)
            tokens[:, i + 1] = np.where(pattern[:, i + 1] == -1, nxt, pattern[:, i + 1])
        return undelayed_codes(tokens, pad, batch, k), None


__all__ = ["MusicgenMelodyCausalLM", "MusicgenMelodyTextToAudio"]
