"""SpeechT5's heads.

* :class:`SpeechT5SpeechToText` (SpeechT5ForSpeechToText, ASR): a Seq2SeqLM over raw
  ``input_values`` (batch, samples) with the LM head ``text_decoder_postnet.lm_head`` (tied to
  the decoder's token table unless ``tie_word_embeddings`` is false). ``generate(input_values,
  attention_mask=...)`` encodes once and runs the shared generation engine (greedy, sampling, beam
  search) from the decoder start token, as Transformers' generate.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.generation.config import GenerationError
from keras_models.models.registry import register_task
from keras_models.models.speech_to_text.tasks import generate_from_waveforms
from keras_models.models.speecht5.backbone import SpeechT5Backbone
from keras_models.tasks.seq2seq_lm import Seq2SeqLM
from keras_models.tasks.text_to_audio import TextToAudio

_ser = keras.saving.register_keras_serializable(package="keras_models")
HEAD_PATTERNS = ("text_decoder_postnet.*", "speech_decoder_postnet.*")


def compiled_encode(model, inputs, attention_mask):
    """``model.backbone.encode(inputs, attention_mask)`` compiled (jax / tensorflow; cached on the
    model): generation encodes eagerly otherwise, op by op."""
    from keras_models.generation import backend

    if getattr(model, "_speech_encode", None) is None:
        model._speech_encode = backend.compile_fn(model, lambda v, m: model.backbone.encode(v, m))
    return model._speech_encode(ops.convert_to_tensor(inputs), ops.convert_to_tensor(attention_mask, "int32"))


@_ser
@register_task(SpeechT5Backbone, "Seq2SeqLM", ("SpeechT5ForSpeechToText",))
class SpeechT5SpeechToText(Seq2SeqLM):
    hf_lm_head = "text_decoder_postnet.lm_head.weight"
    hf_final_logits_bias = None
    hf_head_patterns = HEAD_PATTERNS

    def __init__(self, backbone, *args, **kwargs):
        if backbone.encoder_input != "speech" or backbone.decoder_input != "text":
            raise GenerationError(f"SpeechT5SpeechToText needs a speech encoder and a text decoder, got "
                                  f"{backbone.encoder_input} -> {backbone.decoder_input} (config.json architectures)")
        super().__init__(backbone, *args, **kwargs)

    def generate(self, input_values=None, generation_config=None, *, attention_mask=None, decoder_input_ids=None,
                 tokenizer=None, **kwargs):
        """Text ids for raw audio ``input_values`` (batch, samples) (or a dict holding them and
        ``attention_mask``), with Transformers' keyword names: the decoder start token (or
        ``decoder_input_ids``) followed by the new ids."""
        return generate_from_waveforms(self, "SpeechT5 speech-to-text", input_values, generation_config, attention_mask,
                                       decoder_input_ids, tokenizer, kwargs,
                                       encode=lambda v, m: compiled_encode(self, v, m))




def _postnet_conv_rules(prefix, conv, norm):
    from keras_models.layers.vision_embeddings import norm_rules
    from keras_models.models.speecht5.backbone import CONV1D_AXES
    from keras_models.presets.weight_map import Rule, Transpose

    return [Rule(f"{prefix}.conv.weight", conv.kernel, Transpose(CONV1D_AXES), base=False)] + norm_rules(
        f"{prefix}.batch_norm", norm, base=False)


@_ser
@register_task(SpeechT5Backbone, "TextToAudio", ("SpeechT5ForTextToSpeech",))
class SpeechT5TextToSpeech(TextToAudio):
    """SpeechT5ForTextToSpeech: ``{"input_ids", "attention_mask", "decoder_input_values" (batch,
    steps, num_mel_bins), "speaker_embeddings" (batch, speaker_embedding_dim),
    "decoder_attention_mask"}`` -> the spectrogram after the post-net (batch, steps *
    reduction_factor, num_mel_bins), as Transformers' ``spectrogram`` output.
    :meth:`generate_speech` is Transformers' autoregressive spectrogram generation (stop
    probability ``threshold``, ``minlenratio`` / ``maxlenratio``, an optional ``vocoder``)."""

    modalities = ("text", "speech")

    def __init__(self, backbone, preprocessor=None, generation_config=None, **kwargs):
        if (backbone.encoder_input, backbone.decoder_input) != self.modalities:
            raise ConfigError(f"{type(self).__name__} needs a {self.modalities[0]} encoder and a {self.modalities[1]} "
                              f"decoder, got {backbone.encoder_input} -> {backbone.decoder_input} (config.json "
                              "architectures)")
        super().__init__(backbone, preprocessor=preprocessor, generation_config=generation_config, **kwargs)
        self.speech_postnet = SpeechPostnet(backbone, name="speech_decoder_postnet", dtype=backbone.dtype_policy)
        self.speech_postnet.build(None)

    def head_rules(self):
        return self.speech_postnet.rules("speech_decoder_postnet")

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)["last_hidden_state"]
        return self.speech_postnet(hidden, training=training)[1]

    def generate(self, inputs=None, *, tokenizer=None, speaker_embeddings=None, **kwargs):
        """The spectrogram (or, with ``vocoder=``, the waveform) of text(s), a dict with
        ``input_ids`` / ``attention_mask``, or an id array (see :meth:`generate_speech`)."""
        ids, mask = self._text_inputs(inputs, tokenizer)
        if isinstance(inputs, dict) and inputs.get("attention_mask") is None:
            mask = None
        return self.generate_speech(ids, speaker_embeddings, attention_mask=mask, **kwargs)

    def generate_speech(self, input_ids, speaker_embeddings=None, attention_mask=None, threshold=0.5,
                        minlenratio=0.0, maxlenratio=20.0, vocoder=None, return_output_lengths=False, seed=None):
        """Transformers' ``generate_speech``: the spectrogram (steps, num_mel_bins) of one row, a
        zero-padded (batch, steps, num_mel_bins) batch, or with ``return_output_lengths`` (padded,
        lengths); a ``vocoder`` (e.g. SpeechT5HifiGanBackbone) turns them into waveforms."""
        return generate_speech(self, input_ids, speaker_embeddings, attention_mask, threshold, minlenratio,
                               maxlenratio, vocoder, return_output_lengths, seed)

    def speech_step(self):
        """The compiled generation step (cached on the model)."""
        if getattr(self, "_speech_step", None) is None:
            from keras_models.generation import backend

            b, post = self.backbone, self.speech_postnet

            def step(frame, speaker, states, cross, cache, idx, rng):
                hidden, cache = b.decode_speech_with_cache(frame, speaker, states, cross, cache, idx,
                                                           dropout_rng=(rng, idx))
                return post.frames(hidden), ops.sigmoid(post.prob_out(hidden))[:, 0], cache

            self._speech_step = backend.compile_fn(self, step)
        return self._speech_step


@_ser
@register_task(SpeechT5Backbone, "SpeechToSpeech", ("SpeechT5ForSpeechToSpeech",))
class SpeechT5SpeechToSpeech(SpeechT5TextToSpeech):
    """SpeechT5ForSpeechToSpeech (voice conversion): ``{"input_values" (batch, samples),
    "attention_mask", "decoder_input_values", "speaker_embeddings", "decoder_attention_mask"}`` ->
    the spectrogram after the post-net, as Transformers'. Load it with
    ``km.models.SpeechT5SpeechToSpeech.from_preset`` (no generic task name covers audio to audio);
    :meth:`generate_speech` / :meth:`generate` take the waveforms."""

    modalities = ("speech", "speech")

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        return None

    def generate(self, input_values=None, *, attention_mask=None, speaker_embeddings=None, **kwargs):
        """The spectrogram (or, with ``vocoder=``, the waveform) of waveforms ``input_values``
        (batch, samples) or a dict holding them and ``attention_mask``."""
        if isinstance(input_values, dict):
            attention_mask = input_values.get("attention_mask", attention_mask)
            input_values = input_values.get("input_values")
        if input_values is None:
            raise InputError("generate: SpeechT5 speech-to-speech needs input_values (batch, samples)")
        return self.generate_speech(input_values, speaker_embeddings, attention_mask=attention_mask, **kwargs)


class SpeechPostnet(keras.layers.Layer):
    """``feat_out`` (mel frames, ``reduction_factor`` per step), ``prob_out`` (stop logits) and the
    conv + BatchNorm (+ tanh but the last) post-net added to the frames."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        b = backbone
        self.num_mel_bins, self.reduction_factor = b.num_mel_bins, b.reduction_factor
        dt = self.dtype_policy
        self.feat_out = keras.layers.Dense(b.num_mel_bins * b.reduction_factor, name="feat_out", dtype=dt)
        self.prob_out = keras.layers.Dense(b.reduction_factor, name="prob_out", dtype=dt)
        self.hidden_size = b.hidden_size
        self.kernel = b.speech_decoder_postnet_kernel
        self.convs, self.norms = [], []
        n = b.speech_decoder_postnet_layers
        for i in range(n):
            out = b.num_mel_bins if i == n - 1 else b.speech_decoder_postnet_units
            self.convs.append(keras.layers.Conv1D(out, self.kernel, use_bias=False, padding="valid",
                                                  name=f"postnet_conv_{i}", dtype=dt))
            self.norms.append(keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"postnet_norm_{i}",
                                                              dtype=dt))
        self.drop = keras.layers.Dropout(b.speech_decoder_postnet_dropout, dtype=dt)
        self.units = b.speech_decoder_postnet_units

    def build(self, input_shape=None):
        self.feat_out.build((None, self.hidden_size))
        self.prob_out.build((None, self.hidden_size))
        width = self.num_mel_bins
        for conv, norm in zip(self.convs, self.norms):
            conv.build((None, None, width))
            width = conv.filters
            norm.build((None, None, width))
        self.built = True

    def frames(self, hidden):
        """(batch, steps, hidden) -> (batch, steps * reduction_factor, num_mel_bins)."""
        b, t = ops.shape(hidden)[0], ops.shape(hidden)[1]
        return ops.reshape(self.feat_out(hidden), (b, t * self.reduction_factor, self.num_mel_bins))

    def postnet(self, frames, training=False):
        x = frames
        pad = (self.kernel - 1) // 2
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(ops.pad(x, ((0, 0), (pad, pad), (0, 0)))), training=training)
            if i < len(self.convs) - 1:
                x = ops.tanh(x)
            x = self.drop(x, training=training)
        return frames + x

    def call(self, hidden, training=False):
        """(frames before the post-net, frames after it, stop logits (batch, steps * r))."""
        before = self.frames(hidden)
        logits = ops.reshape(self.prob_out(hidden), (ops.shape(hidden)[0], -1))
        return before, self.postnet(before, training=training), logits

    def rules(self, prefix):
        from keras_models.layers.vision_embeddings import dense_rules

        r = dense_rules(f"{prefix}.feat_out", self.feat_out, base=False)
        r += dense_rules(f"{prefix}.prob_out", self.prob_out, base=False)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            r += _postnet_conv_rules(f"{prefix}.layers.{i}", conv, norm)
        return r


def generate_speech(model, input_values, speaker_embeddings, attention_mask, threshold, minlenratio, maxlenratio,
                    vocoder, return_output_lengths, seed=None):
    """Transformers' SpeechT5 spectrogram generation: from an all-zero frame, each step runs the
    speech decoder on the last frame (KV cache), predicts ``reduction_factor`` frames and a stop
    probability; a row ends when its summed stop probability reaches ``threshold`` (after
    ``minlenratio``, at the latest ``maxlenratio`` x encoder length / reduction_factor steps) and
    gets the post-net of the frames made so far. The step is compiled (jax / tensorflow); the
    pre-net's dropout masks come from the engine's counter-based generator (``seed``)."""
    from keras_models.generation import backend

    b = model.backbone
    post = model.speech_postnet
    values = np.asarray(ops.convert_to_numpy(input_values))
    if b.encoder_input == "speech":
        values = values.astype("float32")
    if values.ndim == 1:
        values = values[None]
    batch = values.shape[0]
    if attention_mask is None:
        if b.encoder_input == "text":
            attention_mask = (values != b.pad_token_id).astype("int32")
        else:
            attention_mask = np.ones(values.shape, "int32")
    attention_mask = np.asarray(ops.convert_to_numpy(attention_mask)).astype("int32").reshape(values.shape)
    if speaker_embeddings is None:
        speaker_embeddings = np.zeros((1, b.speaker_embedding_dim), "float32")
    speaker = np.asarray(ops.convert_to_numpy(speaker_embeddings), "float32")
    if speaker.ndim == 1:
        speaker = speaker[None]
    if speaker.shape[-1] != b.speaker_embedding_dim or speaker.shape[0] not in (1, batch):
        raise InputError(f"speaker_embeddings: expected ({batch}, {b.speaker_embedding_dim}), got {speaker.shape}")
    states = compiled_encode(model, values, attention_mask)
    enc_len = int(states.shape[1])
    enc_mask = b.encoder_mask(attention_mask, enc_len)
    r, mels = b.reduction_factor, b.num_mel_bins
    maxlen = int(enc_len * maxlenratio / r)
    minlen = int(enc_len * minlenratio / r)
    steps = max(maxlen, minlen, 1)
    cache = b.init_cache(batch, steps + 1, states)
    cross = b._cross_bias(enc_mask, states.dtype)
    speaker = ops.convert_to_tensor(speaker)
    rng = backend.make_rng(seed, batch)
    run = model.speech_step()
    frame = ops.zeros((batch, 1, mels), states.dtype)
    made, results = [], {}
    idx = 0
    while True:
        step = idx if backend.EAGER_LOOP else ops.convert_to_tensor(np.int32(idx))
        spectrum, prob, cache = run(frame, speaker, states, cross, cache, step, rng)
        frame = spectrum[:, -1:, :]
        spectrum, prob = ops.convert_to_numpy(spectrum), ops.convert_to_numpy(prob)
        made.append(spectrum)
        idx += 1
        if idx < minlen:
            continue
        meet = range(batch) if idx >= maxlen else np.nonzero(prob.sum(-1) >= threshold)[0].tolist()
        meet = [i for i in meet if i not in results]
        if meet:
            spectrogram = ops.convert_to_numpy(post.postnet(ops.convert_to_tensor(np.concatenate(made, axis=1))))
            for i in meet:
                results[i] = spectrogram[i]
        if len(results) >= batch:
            break
    rows = [results[i] for i in range(batch)]
    lengths = [len(row) for row in rows]
    padded = np.zeros((batch, max(lengths), mels), "float32")
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    if vocoder is not None:
        waves = np.asarray(ops.convert_to_numpy(vocoder(padded if batch > 1 or return_output_lengths else rows[0])))
        if return_output_lengths:
            return waves, [int(waves.shape[1] / max(lengths)) * n for n in lengths]
        return waves
    if return_output_lengths:
        return padded, lengths
    return rows[0] if batch == 1 else padded


__all__ = ["SpeechT5SpeechToText", "SpeechT5TextToSpeech", "SpeechT5SpeechToSpeech", "SpeechPostnet",
           "generate_speech"]
