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
from keras_models.models.musicgen.tasks import MusicgenCausalLM, MusicgenTextToAudio, _sampler, delay_pattern
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
        unknown = sorted(set(settings) - {"max_length", "max_new_tokens", "do_sample", "guidance_scale",
                                          "decoder_start_token_id", "pad_token_id", "eos_token_id",
                                          "temperature", "top_k", "top_p", "seed", "input_features"})
        if unknown:
            raise GenerationError(f"generate: unknown or unsupported arguments {unknown} (MusicGen Melody is "
                                  "conditioned on a melody's chroma, 'input_features', not on an audio prompt)")
        pick = _sampler(settings) if settings.get("do_sample") else (lambda logits: logits.argmax(-1))
        if settings.get("eos_token_id") is not None:
            raise GenerationError("generate: eos_token_id (early stopping) is not implemented for MusicGen Melody")
        guidance = settings.get("guidance_scale")
        guided = guidance is not None and guidance > 1
        start = settings.get("decoder_start_token_id")
        start = b.decoder_start_token_id if start is None else start
        pad = settings.get("pad_token_id")
        pad = b.pad_token_id if pad is None else pad
        if start is None or pad is None:
            raise GenerationError("generate: no decoder_start_token_id / pad_token_id in the config; pass them")
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
        if settings.get("max_new_tokens") is not None:
            max_length = 1 + int(settings["max_new_tokens"])
        elif settings.get("max_length") is not None:
            max_length = int(settings["max_length"])
        else:
            raise GenerationError("generate: pass max_new_tokens (or max_length)")
        k = b.num_codebooks
        stereo = b.audio_channels == 2
        k_ch = k // 2 if stereo else k
        if max_length < max(2 * k_ch - 1, k_ch + 1):
            raise GenerationError(f"generate: max_new_tokens must be at least {max(2 * k_ch - 2, k_ch)} for {k} "
                                  "codebooks (the delay pattern)")
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
            logits = ops.convert_to_numpy(logits)
            if guided:
                c, u = logits[:batch * k], logits[batch * k:]
                logits = u + (c - u) * np.float32(guidance)
            nxt = pick(logits)
            tokens[:, i + 1] = np.where(pattern[:, i + 1] == -1, nxt, pattern[:, i + 1])
        kept = tokens[tokens != pad]
        n = kept.size // (batch * k)
        if kept.size != batch * k * n:
            raise GenerationError("generate: a generated code equals pad_token_id; the delay pattern cannot be removed")
        return kept.reshape(1, batch, k, n).astype("int32"), None


__all__ = ["MusicgenMelodyCausalLM", "MusicgenMelodyTextToAudio"]
