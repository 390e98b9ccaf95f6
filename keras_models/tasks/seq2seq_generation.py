"""Seq2SeqLM on keras_models.generation's loops (greedy, sampling, beam search).

The encoder runs once; its states (repeated per beam / returned sequence) reach the compiled
decode loop as the loop's ``extra`` input, so they are traced arguments, never baked-in constants.
The decoder prompt is the decoder start token; ``forced_bos_token_id`` (mBART / NLLB target
languages, BART-CNN) and ``forced_eos_token_id`` are logits processors, as in Transformers: the
generation config's value, else the checkpoint's (config.json / generation_config.json).
"""

import keras
import numpy as np
from keras import ops

from keras_models.backend_choice import keep_xla_temporaries_in_heap
from keras_models.generation.config import GenerationError
from keras_models.generation.mixin import GenerationMixin


def forced_tokens_and_start(model, generation_config, kwargs):
    """The decoder start token of a seq2seq ``generate`` call (the call's, else the given generation
    config's, else the model's), and ``model``'s forced BOS / EOS put into ``kwargs`` unless the
    call or the generation config sets them."""
    gen = generation_config if generation_config is not None else model.generation_config
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        given = name in kwargs or (isinstance(gen, dict) and name in gen) or (
            gen is not None and not isinstance(gen, dict) and name in gen.explicit)
        if not given and getattr(model, name) is not None:
            kwargs[name] = getattr(model, name)
    start = kwargs.pop("decoder_start_token_id", None)
    if start is None and generation_config is not None:
        start = (generation_config.get("decoder_start_token_id") if isinstance(generation_config, dict)
                 else getattr(generation_config, "decoder_start_token_id", None))
    return model.decoder_start_token_id if start is None else start


class Seq2SeqDecoderAdapter:
    """The generation engine's Decoder interface over ``call_decoder_with_cache``.

    The cross-attention K/V of every decoder layer depend only on the encoder states, so the
    prefill computes them once and every step reuses them. ``init_cache`` leaves a zero-length
    placeholder per layer, (rows, heads, 0, head_dim): the same tree and batch axis as the filled
    buffer (beam reordering and the cache-size estimate read it as before); the first forward, the
    prefill, which the engine runs before its loop, sees that static zero length and fills it, so
    a loop step never carries the computation. (A ``cond`` on the cache index inside each step,
    the earlier form, made XLA:CPU lay the loop's K/V buffers out for the branch and copy all of
    them back for the attention product in every step: 37 MB read and written per token on
    Whisper-base, ~15% of its decode time under jax.)"""

    def __init__(self, model):
        self.model = model

    def init_cache(self, rows, max_length):
        """The self-attention cache plus an empty cross-attention K/V placeholder per layer."""
        cache = self.model.init_cache(rows, max_length)
        if getattr(self.model, "_gen_extra", None) is not None:
            b = self.model.backbone
            shape = (rows, b.decoder_heads, 0, b.decoder_head_dim)
            cache["cross_kv"] = tuple((ops.zeros(shape, dtype=b.compute_dtype),
                                       ops.zeros(shape, dtype=b.compute_dtype))
                                      for _ in range(b.num_decoder_layers))
        return cache

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        # (last_only is a no-op here: a decoder prompt is one or two start tokens)
        if "cross_kv" in cache and int(cache["cross_kv"][0][0].shape[2]) == 0:  # the prefill
            cache = dict(cache)
            cache["cross_kv"] = keras.tree.map_structure(
                lambda new, old: ops.cast(new, old.dtype),
                self.model.backbone.cross_kv_cache(extra["encoder_states"]), cache["cross_kv"])
        return self.model.call_decoder_with_cache(
            ids, extra["encoder_states"], extra["encoder_attention_mask"], cache, index, mask)


class Seq2SeqGenerationMixin(GenerationMixin):
    decoder_adapter = Seq2SeqDecoderAdapter
    _gen_encoder = None

    def generate(self, inputs=None, generation_config=None, *, decoder_input_ids=None, tokenizer=None,
                 **kwargs):
        """Generate target ids with Transformers' keyword names. ``inputs``: source text(s), a
        dict with ``input_ids`` / ``attention_mask``, or an id array. Returns the decoder start
        token followed by the new ids (or decoded texts for text inputs)."""
        keep_xla_temporaries_in_heap()  # jax on the CPU (KM_JAX_HEAP_TEMPS); no-op elsewhere
        tok = self._gen_tokenizer(tokenizer)
        texts = None
        if inputs is None:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                       and all(isinstance(t, str) for t in inputs)):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if tok is None:
                raise GenerationError("generate: text inputs need a tokenizer (pass tokenizer=)")
            enc = tok(texts, padding=True, return_tensors=None)
            ids, mask = np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])
        elif isinstance(inputs, dict):
            if "input_ids" not in inputs:
                raise GenerationError(f"generate: an input dict needs 'input_ids', got {sorted(inputs)}")
            ids = np.asarray(ops.convert_to_numpy(inputs["input_ids"]))
            m = inputs.get("attention_mask")
            mask = np.ones_like(ids) if m is None else np.asarray(ops.convert_to_numpy(m))
        else:
            ids = np.asarray(ops.convert_to_numpy(inputs))
            mask = np.ones_like(ids)
        if ids.ndim == 1:
            ids, mask = ids[None], mask[None]
        start = forced_tokens_and_start(self, generation_config, kwargs)
        if decoder_input_ids is None:
            if start is None:
                raise GenerationError("generate: no decoder_start_token_id in the config; pass one")
            decoder_input_ids = np.full((ids.shape[0], 1), start, "int32")
        states = self.encode({"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32")})
        self._gen_encoder = (states, ops.convert_to_tensor(mask.astype("int32")), ids.astype("int32"))
        try:
            out = GenerationMixin.generate(self, {"input_ids": np.asarray(decoder_input_ids)},
                                           generation_config, tokenizer=tok, **kwargs)
        finally:
            self._gen_encoder = None
        if texts is not None:
            decoded = tok.batch_decode(np.asarray(out).tolist(), skip_special_tokens=True)
            return decoded[0] if isinstance(inputs, str) else decoded
        return out

    # Hooks into the engine: encoder states repeated like the decoder rows, fed as loop input.
    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        states, enc_mask, _ = self._gen_encoder
        self._gen_extra = {
            "encoder_states": ops.repeat(states, rows_per_prompt, axis=0),
            "encoder_attention_mask": ops.repeat(enc_mask, rows_per_prompt, axis=0),
        }
        return super()._gen_buffers(ids, mask, rows_per_prompt, max_length, pad)

    def _gen_source_ids(self, prompt_ids, rows_per_prompt):
        """Encoder n-grams and the encoder repetition penalty read the encoder's input ids (padding
        included, as Transformers)."""
        return np.repeat(self._gen_encoder[2], rows_per_prompt, axis=0)

    def _gen_check_processors(self, config):
        if config.guidance_scale is not None and config.guidance_scale != 1:
            raise GenerationError(
                "generate: guidance_scale (classifier-free guidance) is supported for decoder-only models "
                "(CausalLM) only: Transformers' unconditional pass feeds the decoder ids to the model "
                "without encoder inputs, which an encoder-decoder cannot run")

