"""MusicGen's heads and generation.

* :class:`MusicgenCausalLM` (``MusicgenForCausalLM``): the decoder and one bias-free LM head per
  codebook; logits ``(batch * num_codebooks, time, vocab_size)`` as Transformers returns them.
* :class:`MusicgenTextToAudio` (``MusicgenForConditionalGeneration``): text -> codes -> waveform.

Generation follows Transformers' MusicGen: the codebooks are generated in a *delay pattern*
(codebook ``k`` lags ``k`` steps behind the first; the positions outside the pattern hold the
decoder start token), all rows in one batch of ``batch * num_codebooks``; with ``guidance_scale >
1`` (classifier-free guidance) the decoder also runs on zeroed (fully masked) text states and the
logits are ``uncond + guidance_scale * (cond - uncond)``. The codes are then decoded by EnCodec
(stereo models: even codebooks left, odd right).
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from keras_models.models.musicgen.backbone import MusicgenBackbone, MusicgenDecoderBackbone
from keras_models.models.registry import register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.tasks.task import Task
from keras_models.tasks.text_to_audio import TextToAudio

_ser = keras.saving.register_keras_serializable(package="keras_models")


class _CodebookHeads:
    """One Dense(vocab_size, no bias) per codebook over the decoder's hidden states."""

    def _make_heads(self, decoder):
        s = decoder.spec
        init = keras.initializers.RandomNormal(stddev=s.initializer_factor)
        self.lm_heads = [keras.layers.Dense(s.vocab_size, use_bias=False, kernel_initializer=init,
                                            name=f"lm_head_{k}", dtype=decoder.dtype_policy)
                         for k in range(s.num_codebooks)]

    def _build_heads(self, width):
        for head in self.lm_heads:
            head.build((None, None, width))

    def codebook_logits(self, hidden):
        """(batch, t, hidden) -> (batch * K, t, vocab): row ``b * K + k`` from head ``k``."""
        out = ops.stack([head(hidden) for head in self.lm_heads], axis=1)
        return ops.reshape(out, (-1, ops.shape(out)[2], ops.shape(out)[3]))

    def _head_rules(self, prefix):
        return [Rule(f"{prefix}lm_heads.{k}.weight", head.kernel, TRANSPOSE, base=False)
                for k, head in enumerate(self.lm_heads)]


def delay_pattern(batch, num_codebooks, max_length, start, stereo=False, prompt=None):
    """(batch * K, max_length) int: -1 where a token is generated, else the forced value (Transformers'
    ``build_delay_pattern_mask`` of the start token followed by ``prompt`` (batch * K, n) codes, or
    nothing). Codebook k (stereo: pair k, K' codebooks per channel) is shifted right by k steps; its
    first k + 1 and last K' - 1 - k positions hold ``start``."""
    k_ch = num_codebooks // 2 if stereo else num_codebooks
    n = 0 if prompt is None else prompt.shape[1]
    out = np.full((batch * num_codebooks, max_length), -1, np.int64)
    for row in range(batch * num_codebooks):
        j = (row % num_codebooks) // 2 if stereo else row % num_codebooks
        out[row, :j + 1] = start
        out[row, j + 1:j + 1 + n] = prompt[row] if n else []
        out[row, max_length - (k_ch - 1 - j):] = start
    return out


def _sampler(settings):
    """``logits (rows, vocab) -> ids``: Transformers' warpers in their order (temperature, top-k,
    top-p) on the guided logits, then one draw per row from a numpy generator seeded by ``seed``."""
    temperature = settings.get("temperature")
    top_k, top_p = settings.get("top_k"), settings.get("top_p")
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise GenerationError(f"generate: temperature must be a positive number, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise GenerationError(f"generate: top_k must be a non-negative integer, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise GenerationError(f"generate: top_p must be in (0, 1], got {top_p!r}")
    rng = np.random.default_rng(settings.get("seed"))

    def pick(logits):
        x = logits.astype("float64")
        if temperature is not None and temperature != 1:
            x = x / temperature
        if top_k and top_k < x.shape[-1]:
            kth = np.sort(x, axis=-1)[:, -top_k][:, None]
            x = np.where(x < kth, -np.inf, x)
        if top_p is not None and top_p < 1:
            order = np.argsort(-x, axis=-1, kind="stable")
            sorted_x = np.take_along_axis(x, order, -1)
            probs = np.exp(sorted_x - sorted_x[:, :1])
            probs /= probs.sum(-1, keepdims=True)
            drop = np.cumsum(probs, -1) - probs > top_p  # keep the smallest prefix reaching top_p
            np.put_along_axis(x, order, np.where(drop, -np.inf, sorted_x), -1)
        probs = np.exp(x - x.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        draws = rng.random((x.shape[0], 1))
        return np.minimum((np.cumsum(probs, -1) < draws).sum(-1), x.shape[-1] - 1)

    return pick


_CODE_SETTINGS = {"max_length", "max_new_tokens", "do_sample", "guidance_scale", "decoder_start_token_id",
                  "pad_token_id", "eos_token_id", "temperature", "top_k", "top_p", "seed"}


def code_generation_settings(backbone, settings, extra, model, hint=""):
    """Checks ``settings`` (only the common keys and ``extra`` allowed) and returns ``(pick,
    guidance, start, pad)``: the next-code rule (argmax or a sampler), the guidance scale (None
    when unguided), and the decoder start / pad ids (the config's unless given)."""
    unknown = sorted(set(settings) - _CODE_SETTINGS - set(extra))
    if unknown:
        raise GenerationError(f"generate: unknown or unsupported arguments {unknown}{hint}")
    if settings.get("eos_token_id") is not None:
        raise GenerationError(f"generate: eos_token_id (early stopping) is not implemented for {model}")
    pick = _sampler(settings) if settings.get("do_sample") else (lambda logits: logits.argmax(-1))
    guidance = settings.get("guidance_scale")
    guidance = guidance if guidance is not None and guidance > 1 else None
    start = settings.get("decoder_start_token_id")
    start = backbone.decoder_start_token_id if start is None else start
    pad = settings.get("pad_token_id")
    pad = backbone.pad_token_id if pad is None else pad
    if start is None or pad is None:
        raise GenerationError("generate: no decoder_start_token_id / pad_token_id in the config; pass them")
    return pick, guidance, start, pad


def code_generation_length(settings, prompt_length, num_codebooks, stereo):
    """Total code steps (``prompt_length`` + max_new_tokens, or max_length), checked against what
    the delay pattern needs."""
    if settings.get("max_new_tokens") is not None:
        max_length = prompt_length + int(settings["max_new_tokens"])
    elif settings.get("max_length") is not None:
        max_length = int(settings["max_length"])
    else:
        raise GenerationError("generate: pass max_new_tokens (or max_length)")
    k_ch = num_codebooks // 2 if stereo else num_codebooks
    if max_length < max(2 * k_ch - 1, k_ch + prompt_length):
        raise GenerationError(f"generate: max_new_tokens must be at least {max(2 * k_ch - 1 - prompt_length, k_ch)}"
                              f" for {num_codebooks} codebooks (the delay pattern)")
    return max_length


def next_codes(logits, batch, num_codebooks, guidance, pick):
    """The picked codes from a step's logits (classifier-free guidance: conditional rows first)."""
    logits = ops.convert_to_numpy(logits)
    if guidance is not None:
        c, u = logits[:batch * num_codebooks], logits[batch * num_codebooks:]
        logits = u + (c - u) * np.float32(guidance)
    return pick(logits)


def undelayed_codes(tokens, pad, batch, num_codebooks):
    """(1, batch, codebooks, frames) codes: the delay pattern's pad positions removed."""
    kept = tokens[tokens != pad]
    n = kept.size // (batch * num_codebooks)
    if kept.size != batch * num_codebooks * n:
        raise GenerationError("generate: a generated code equals pad_token_id; the delay pattern cannot be removed")
    return kept.reshape(1, batch, num_codebooks, n).astype("int32")


@_ser
@register_task(MusicgenDecoderBackbone, "CausalLM", ("MusicgenForCausalLM",))
class MusicgenCausalLM(_CodebookHeads, Task):
    """Logits (batch * num_codebooks, time, vocab_size) for ``{"input_ids" (batch * num_codebooks,
    time), "attention_mask", "encoder_hidden_states", "encoder_attention_mask"}``."""

    hf_head_patterns = ("lm_heads.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self._make_heads(backbone)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self._build_heads(self.backbone.hidden_size)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        return self.codebook_logits(self.backbone(inputs, training=training))

    def head_rules(self):
        return self._head_rules("")


@_ser
@register_task(MusicgenBackbone, "TextToAudio", ("MusicgenForConditionalGeneration",))
class MusicgenTextToAudio(_CodebookHeads, TextToAudio):
    """Logits (batch * num_codebooks, time, vocab_size) for ``{"input_ids", "attention_mask",
    "decoder_input_ids" (batch * num_codebooks, time)}``; ``generate`` (see the module docstring)."""

    hf_head_patterns = ("decoder.lm_heads.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self._make_heads(backbone.decoder)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self._build_heads(self.backbone.hidden_size)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False):
        return self.codebook_logits(self.backbone(inputs, training=training)["last_hidden_state"])

    def head_rules(self):
        return self._head_rules("decoder.")

    # --- generation -------------------------------------------------------------------------------
    def get_unconditional_inputs(self, num_samples=1):
        """Inputs for generating with no text (Transformers' ``get_unconditional_inputs``): one fully
        masked token per sample, so the conditioning is all zeros (MusicGen Melody: and the null
        chroma). ``model.generate(model.get_unconditional_inputs(2), max_new_tokens=256)``."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise InputError(f"get_unconditional_inputs: num_samples must be a positive integer, got {num_samples!r}")
        zeros = np.zeros((num_samples, 1), "int32")
        return {"input_ids": zeros, "attention_mask": zeros.copy()}

    def _compiled(self, key, make):
        """``make()`` compiled for this backend (generation.backend.compile_fn), cached per model.
        Under torch it runs with autograd off (generation.backend.no_grad): with it on, every step's
        attention kept the whole KV cache alive for a backward pass through all the steps (memory
        growing with layers x steps: the 24-layer model ran out of memory over 256 steps)."""
        cache = self.__dict__.get("_musicgen_compiled")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_musicgen_compiled", cache)  # not a tracked Keras attribute
        if key not in cache:
            from keras_models.generation.backend import EAGER_LOOP, compile_fn, no_grad

            fn = compile_fn(self, make())
            if EAGER_LOOP:
                def fn(*args, _fn=fn):
                    with no_grad():
                        return _fn(*args)
            cache[key] = fn
        return cache[key]

    def _prepare_fn(self, guided):
        """(ids, mask) -> (conditioning states, their mask, the cross-attention K/V): with guidance,
        the unconditional rows (zero states, all masked) follow the conditional ones."""
        b = self.backbone

        def prepare(ids, mask):
            _, cond = b.encode_text(ids, mask)
            if guided:
                cond = ops.concatenate([cond, ops.zeros_like(cond)], axis=0)
                mask = ops.concatenate([mask, ops.zeros_like(mask)], axis=0)
            return cond, mask, b.decoder.cross_kv_cache(cond)

        return prepare

    def _step_fn(self):
        """(ids (rows, 1), cache, index, states, mask) -> (last logits (rows, vocab) float32, cache)."""
        dec = self.backbone.decoder

        def step(ids, cache, index, states, mask):
            hidden, cache = dec.decode_with_cache(ids, states, mask, cache, index)
            return ops.cast(self.codebook_logits(hidden)[:, -1], "float32"), cache

        return step

    def generate_codes(self, input_ids, attention_mask, settings):
        b = self.backbone
        pick, guidance, start, pad = code_generation_settings(b, settings, {"input_values", "padding_mask"},
                                                              "MusicGen")
        guided = guidance is not None
        batch = input_ids.shape[0]
        prompt, scales = None, None
        if settings.get("input_values") is not None:
            prompt, scales = self._audio_prompt(settings["input_values"], settings.get("padding_mask"), batch)
        prompt_length = 1 + (0 if prompt is None else prompt.shape[1])
        k, stereo = b.num_codebooks, b.audio_channels == 2
        max_length = code_generation_length(settings, prompt_length, k, stereo)
        cond, mask, cross_kv = self._compiled(("prepare", guided), lambda: self._prepare_fn(guided))(
            ops.convert_to_tensor(input_ids), ops.convert_to_tensor(attention_mask))
        rows = 2 * batch if guided else batch
        cache = {**b.decoder.init_cache(rows, max_length), "cross_kv": cross_kv}
        pattern = delay_pattern(batch, k, max_length, start, stereo, prompt)
        tokens = np.where(pattern == -1, 0, pattern)  # positions to generate filled in as they come
        step = self._compiled("step", self._step_fn)
        for i in range(max_length - 1):
            ids = tokens[:, i:i + 1]
            if guided:
                ids = np.concatenate([ids, ids], axis=0)
            logits, cache = step(ops.convert_to_tensor(ids.astype("int32")), cache,
                                 ops.convert_to_tensor(np.int32(i)), cond, mask)
            nxt = next_codes(logits, batch, k, guidance, pick)
            tokens[:, i + 1] = np.where(pattern[:, i + 1] == -1, nxt, pattern[:, i + 1])
        return undelayed_codes(tokens, pad, batch, k), scales

    def _audio_prompt(self, input_values, padding_mask, batch):
        """EnCodec codes (batch * K, frames) of an audio prompt (batch, channels, samples) and its scales
        (stereo models: each channel encoded on its own, codebooks interleaved left / right)."""
        b = self.backbone
        codec = b.audio_encoder
        x = np.asarray(ops.convert_to_numpy(input_values), "float32")
        if x.ndim == 2:
            x = x[:, None]
        if x.ndim != 3 or x.shape[0] != batch:
            raise InputError(f"input_values: expected (batch={batch}, channels, samples), got shape {x.shape}")
        mask = None if padding_mask is None else np.asarray(ops.convert_to_numpy(padding_mask))
        if b.audio_channels == 1:
            enc = codec.encode(x, mask)
            codes, scales = ops.convert_to_numpy(enc["audio_codes"]), enc["audio_scales"]
        else:
            if x.shape[1] != 2:
                raise InputError(f"input_values: a stereo MusicGen prompt needs 2 channels, got {x.shape[1]}")
            left, right = codec.encode(x[:, :1], mask), codec.encode(x[:, 1:], mask)
            if any(s is not None for s in left["audio_scales"] + right["audio_scales"]):
                raise InputError("input_values: stereo prompts through a normalising EnCodec are not implemented")
            codes = np.stack([ops.convert_to_numpy(left["audio_codes"]), ops.convert_to_numpy(right["audio_codes"])],
                             axis=3)
            codes = codes.reshape(codes.shape[:2] + (-1, codes.shape[-1]))
            scales = None
        if codes.shape[0] != 1:
            raise InputError(f"input_values: the prompt was encoded in {codes.shape[0]} chunks; MusicGen needs one "
                             "(an EnCodec without chunk_length_s)")
        if codes.shape[2] != b.num_codebooks:
            raise InputError(f"input_values: EnCodec gave {codes.shape[2]} codebooks, the decoder reads "
                             f"{b.num_codebooks}")
        if scales is not None and all(s is None for s in scales):
            scales = None
        return codes[0].reshape(batch * b.num_codebooks, -1), scales

    def decode_audio(self, codes, audio_scales=None):
        codec = self.backbone.audio_encoder
        if self.backbone.audio_channels == 2:
            left = codec.decode(codes[:, :, ::2])
            right = codec.decode(codes[:, :, 1::2])
            return ops.convert_to_numpy(ops.concatenate([left, right], axis=1))
        return ops.convert_to_numpy(codec.decode(codes, audio_scales))


__all__ = ["MusicgenCausalLM", "MusicgenTextToAudio", "delay_pattern"]
