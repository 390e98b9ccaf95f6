"""``GenerationMixin.generate``: Transformers' keyword names on CausalLM (and Seq2SeqLM).

Inputs: a string, a list of strings, chat messages (a list of {"role", "content"} dicts, or a list
of such conversations), or ids (a dict with ``input_ids`` and optionally ``attention_mask``, or an
int array). Prompts are packed left-padded; the model derives positions from the attention mask,
so padding never changes the result. Ids in -> numpy ids out (prompt then new tokens, finished
rows padded with ``pad_token_id``); strings in -> strings out (prompt + completion, or only the
completion with ``return_full_text=False``); chat in -> the assistant's reply.
"""

from __future__ import annotations

import contextlib
import os
import weakref

import keras
import numpy as np

from keras_models.backend_choice import keep_xla_temporaries_in_heap
from keras_models.generation import backend
from keras_models.generation.beam import BeamSearch
from keras_models.generation.config import GenerationConfig, GenerationError
from keras_models.generation.decode import CausalDecoder, GreedyOrSample
from keras_models.generation.processors import Processors
from keras_models.generation.stop_strings import StopStrings
from keras_models.generation.streamers import as_streamer
from keras_models.tasks.checks import check_token_ids

_COMPILED = weakref.WeakKeyDictionary()  # model -> {static key: compiled fn}
_STOP_TABLES = weakref.WeakKeyDictionary()  # tokenizer -> {stop strings: StopStrings}
# decoder_max_position_embeddings first: an encoder-decoder whose decoder table is shorter (LED)
_CONTEXT_ATTRS = ("decoder_max_position_embeddings", "max_position_embeddings", "max_sequence_length",
                  "n_positions", "context_length")


def _is_messages(x):
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], dict) and "role" in x[0]


def left_pad(rows, pad_id):
    """List of id lists -> (ids, mask) int32 arrays, left-padded to the longest row."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r):] = r
            mask[i, width - len(r):] = 1
    return ids, mask


def context_length(model):
    backbone = getattr(model, "backbone", None)
    for obj in (backbone, getattr(backbone, "options", None), model):
        if obj is None:
            continue
        for name in _CONTEXT_ATTRS:
            value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


class GenerationMixin:
    """Adds ``generate``; the class provides ``init_cache`` and ``call_with_cache``."""

    generation_config = None
    decoder_adapter = CausalDecoder
    generation_buckets = (16, 64)  # prompt / cache length multiples under jax and tensorflow

    # --- presets --------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        from keras_models.presets.resolve import resolve_preset

        model = super().from_preset(preset, *args, **kwargs)
        model.generation_config = GenerationConfig.from_folder(resolve_preset(preset))
        return model

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        if self.generation_config is not None:
            from pathlib import Path

            self.generation_config.to_json_file(Path(folder) / "generation_config.json")

    # --- inputs ---------------------------------------------------------------------------------
    def _gen_tokenizer(self, tokenizer=None):
        if tokenizer is not None:
            return tokenizer
        return getattr(getattr(self, "preprocessor", None), "tokenizer", None)

    def _gen_prepare_prompts(self, inputs, tokenizer, pad_id):
        """-> (ids, mask, kind) with kind in {"ids", "text", "texts", "chat", "chats"}."""
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                       and all(isinstance(t, str) for t in inputs)):
            kind = "text" if isinstance(inputs, str) else "texts"
            texts = [inputs] if kind == "text" else list(inputs)
            tok = self._gen_need_tokenizer(tokenizer, "string prompts")
            rows = tok(texts, return_tensors=None, return_attention_mask=False)["input_ids"]
            return (*left_pad(rows, pad_id), kind)
        if _is_messages(inputs) or (isinstance(inputs, (list, tuple)) and inputs and _is_messages(inputs[0])):
            kind = "chat" if _is_messages(inputs) else "chats"
            convs = [inputs] if kind == "chat" else list(inputs)
            tok = self._gen_need_tokenizer(tokenizer, "chat messages")
            texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
            rows = tok(texts, add_special_tokens=False, return_tensors=None, return_attention_mask=False)["input_ids"]
            return (*left_pad(rows, pad_id), kind)
        if isinstance(inputs, dict):
            if "input_ids" not in inputs:
                raise GenerationError(f"generate: an input dict needs 'input_ids', got keys {sorted(inputs)}")
            ids = np.asarray(backend_to_numpy(inputs["input_ids"]))
            mask = inputs.get("attention_mask")
            mask = None if mask is None else np.asarray(backend_to_numpy(mask))
        else:
            try:
                ids = np.asarray(backend_to_numpy(inputs))
            except Exception as e:  # noqa: BLE001
                raise GenerationError(f"generate: cannot read inputs of type {type(inputs).__name__}") from e
            mask = None
        if ids.ndim == 1:
            ids = ids[None, :]
            mask = None if mask is None else mask.reshape(1, -1)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise GenerationError(f"generate: input_ids must be a (batch, length) int array, got {ids.dtype} {ids.shape}")
        if mask is None:
            mask = np.ones_like(ids)
        if mask.shape != ids.shape:
            raise GenerationError(f"generate: attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
        rows = [ids[i][mask[i] != 0].tolist() for i in range(ids.shape[0])]
        new_ids, new_mask = left_pad(rows, pad_id)
        if new_ids.shape == ids.shape:  # already left-padded: keep the caller's padding ids
            keep = (new_mask == mask.astype(bool).astype(np.int32)).all()
            if keep:
                new_ids = ids.astype(np.int32)
        return new_ids, new_mask, "ids"

    @staticmethod
    def _gen_need_tokenizer(tokenizer, what):
        if tokenizer is None:
            raise GenerationError(f"generate: {what} need a tokenizer; this model has none (pass tokenizer=)")
        return tokenizer

    # --- generate -------------------------------------------------------------------------------
    def generate(self, inputs=None, generation_config=None, *, streamer=None, seed=None, tokenizer=None,
                 return_full_text=True, **kwargs):
        """Generate with Transformers' keyword names (see GenerationConfig for the full list)."""
        keep_xla_temporaries_in_heap()  # jax on the CPU (KM_JAX_HEAP_TEMPS); no-op elsewhere
        if inputs is None:
            inputs = {k: kwargs.pop(k) for k in ("input_ids", "attention_mask") if k in kwargs}
            if not inputs:
                raise GenerationError("generate: no inputs given")
        base = generation_config or self.generation_config or GenerationConfig()
        if isinstance(base, dict):
            base = GenerationConfig(**base)
        config = base.copy().update(**kwargs).validate()
        config.warn_unused_sampling(kwargs)
        self._gen_check_processors(config)
        tok = self._gen_tokenizer(tokenizer)
        eos = config.eos_token_id
        if eos is None and tok is not None and tok.eos_token_id is not None:
            eos = (int(tok.eos_token_id),)
        eos = tuple(eos or ())
        pad = config.pad_token_id
        if pad is None and tok is not None and tok.pad_token_id is not None and config.eos_token_id is None:
            pad = int(tok.pad_token_id)
        if pad is None:
            pad = eos[0] if eos else 0
        ids, mask, kind = self._gen_prepare_prompts(inputs, tok, pad)
        check_token_ids(self, np.where(mask != 0, ids, 0), "input_ids", "generate")
        batch, prompt_len = ids.shape
        if prompt_len == 0:
            raise GenerationError("generate: empty prompt (give at least one token)")
        ctx = context_length(self)
        if ctx is not None and prompt_len > ctx:
            raise GenerationError(f"generate: the prompt has {prompt_len} tokens, longer than the model's "
                                  f"context of {ctx}")
        max_length, min_length = config.resolved_lengths(prompt_len, ctx)
        if ctx is not None and max_length > ctx:
            raise GenerationError(f"generate: prompt ({prompt_len}) + new tokens ({max_length - prompt_len}) "
                                  f"exceeds the model's context of {ctx}; lower max_new_tokens")
        streamer = as_streamer(streamer)
        if streamer is not None and (batch > 1 or config.num_beams > 1 or config.num_return_sequences > 1):
            raise GenerationError("generate: streamer needs a single prompt, num_beams=1 and num_return_sequences=1")
        if max_length <= prompt_len:
            out = ids
        else:
            stop = None
            if config.stop_strings:
                stop = self._gen_stop_strings(self._gen_need_tokenizer(tok, "stop_strings"), config.stop_strings)
            self._gen_check_cache_size(batch * config.num_beams * config.num_return_sequences, max_length)
            run_ids, run_mask, shift, cache_len = self._gen_bucketed(ids, mask, max_length, pad, config, ctx)
            args = (config, run_ids, run_mask, cache_len, min_length + shift, eos, pad, stop, seed)
            if config.num_beams > 1:
                out = self._gen_run_beam(*args, limit=max_length + shift, shift=shift)
            else:
                out = self._gen_run_sample(*args, streamer, limit=max_length + shift, shift=shift)
            out = out[:, shift:]
        return self._gen_format_output(out, mask, kind, tok, return_full_text)

    def _gen_check_cache_size(self, rows, max_length):
        """Refuse a generation whose KV cache would not fit in this machine's memory (a model
        without a position limit, such as T5, accepts any ``max_new_tokens``), before allocating
        it: the cache's bytes per position, from two tiny caches, times the length."""
        try:
            sizes = [sum(int(np.prod(t.shape)) * np.dtype(keras.backend.standardize_dtype(t.dtype)).itemsize
                         for t in keras.tree.flatten(self.decoder_adapter(self).init_cache(rows, n)))
                     for n in (1, 2)]
        except Exception:  # noqa: BLE001  (a cache that cannot be built this early: not estimated)
            return
        need = sizes[0] + (sizes[1] - sizes[0]) * (max_length - 1)
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return
        if need > have:
            raise GenerationError(
                f"generate: a {max_length}-position KV cache for {rows} sequences needs about "
                f"{need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB; lower max_new_tokens")

    def _gen_bucketed(self, ids, mask, max_length, pad, config, ctx):
        """Left-pad the prompt to a multiple of ``generation_buckets[0]`` and round the cache up
        to a multiple of ``generation_buckets[1]``, so that compiled decode functions are reused
        across prompt and output lengths (jax / tensorflow; the model reads positions from the
        mask, so the extra padding changes nothing). Not for a backbone whose numerics depend on the
        buffer slot itself (``slot_dependent``: Llama 4's query temperature), where extra padding
        would shift them. Returns (ids, mask, shift, cache_length)."""
        buckets = self.generation_buckets
        if (not buckets or backend.BACKEND == "torch" or self.decoder_adapter is not CausalDecoder
                or config.no_repeat_ngram_size  # n-grams would see the extra padding
                or getattr(getattr(self, "backbone", None), "slot_dependent", False)):
            return ids, mask, 0, max_length
        prompt_len = ids.shape[1]
        shift = -(-prompt_len // buckets[0]) * buckets[0] - prompt_len
        cache_len = -(-(max_length + shift) // buckets[1]) * buckets[1]
        if ctx is not None and cache_len > ctx:
            cache_len = max(max_length + shift, ctx)
        ids = np.pad(ids, ((0, 0), (shift, 0)), constant_values=pad)
        mask = np.pad(mask, ((0, 0), (shift, 0)))
        return ids, mask, shift, cache_len

    def _gen_stop_strings(self, tok, stop_strings):
        per_tok = _STOP_TABLES.setdefault(tok, {})
        key = tuple(stop_strings)
        if key not in per_tok:
            per_tok[key] = StopStrings(tok, stop_strings, model_vocab_size=getattr(self, "vocabulary_size", None))
        return per_tok[key]

    # Tensors the compiled decode loop reads as ``state["extra"]`` (encoder states, image keys and
    # values...): a task's ``_gen_buffers`` sets them for the rows the engine runs; they enter every
    # compiled call as inputs, and their shapes are part of the compiled function's key.
    _gen_extra = None

    def _gen_compiled(self, key, make):
        extra = dict(self._gen_extra or {})
        if extra:
            key = key + tuple((k, tuple(tuple(t.shape) for t in keras.tree.flatten(v))) for k, v in sorted(extra.items()))
        fns = _COMPILED.setdefault(self, {})
        if key not in fns:
            fns[key] = make()
        fns = fns[key]
        if not extra:
            return fns

        def with_extra(fn):
            return lambda state: fn({**state, "extra": dict(extra)})

        if isinstance(fns, tuple):  # (prefill, step): the state carries "extra" after prefill
            return (with_extra(fns[0]),) + tuple(fns[1:])
        return with_extra(fns)

    @staticmethod
    def _gen_repeat_rows(tree, rows_per_prompt):
        """A per-prompt tensor tree repeated for the rows the engine runs (beams, returned sequences)."""
        return keras.tree.map_structure(lambda t: keras.ops.repeat(t, rows_per_prompt, axis=0), tree)

    _gen_per_prompt = None
    # Whisper's timestamp logits rule for the next run: (no_timestamps_token_id, eos id,
    # max_initial_timestamp_index), see processors.whisper_timestamps; None: off
    _gen_timestamps = None

    @contextlib.contextmanager
    def _gen_prompt_inputs(self, **trees):
        """Within the block, ``generate`` feeds ``trees`` (one row per prompt: image or encoder keys
        and values...) to the compiled loop as ``state["extra"]``, repeated for its rows."""
        self._gen_per_prompt = trees
        try:
            yield
        finally:
            self._gen_per_prompt = None
            self._gen_extra = None

    def _gen_buffers(self, ids, mask, rows_per_prompt, max_length, pad):
        if self._gen_per_prompt:
            self._gen_extra = {k: self._gen_repeat_rows(v, rows_per_prompt) for k, v in self._gen_per_prompt.items()}
        ids = np.repeat(ids, rows_per_prompt, axis=0)
        mask = np.repeat(mask, rows_per_prompt, axis=0)
        rows, prompt_len = ids.shape
        tokens = np.full((rows, max_length), pad, dtype=np.int32)
        full_mask = np.zeros((rows, max_length), dtype=np.int32)
        tokens[:, :prompt_len] = ids
        full_mask[:, :prompt_len] = mask
        return tokens, full_mask

    def _gen_static_key(self, kind, config, eos, pad, stop, shape, extra=()):
        """What a compiled decode function depends on (lengths enter as tensors, not here)."""
        fields = {k: v for k, v in config.to_dict().items() if k not in ("max_length", "max_new_tokens")}
        return (kind, shape, repr(sorted(fields.items())), eos, pad,
                None if stop is None else tuple(stop.stop_strings), self._gen_timestamps) + tuple(extra)

    def _gen_run_sample(self, config, ids, mask, max_length, min_length, eos, pad, stop, seed, streamer, limit=None,
                        shift=0):
        n = config.num_return_sequences
        tokens, full_mask = self._gen_buffers(ids, mask, n, max_length, pad)
        prompt_len = ids.shape[1]
        procs = Processors(config, min_length, eos, sampling=config.do_sample, prompt_len=prompt_len, offset=shift,
                           timestamps=self._gen_timestamps)
        loop = GreedyOrSample(self.decoder_adapter(self), procs, eos, pad, config.do_sample, stop,
                              prompt_len=prompt_len)
        limit = max_length if limit is None else limit
        inputs = {"tokens": tokens, "mask": full_mask, "extra": {}, "limit": np.int32(limit),
                  "rng": backend.make_rng(seed, tokens.shape[0])}
        if procs.needs_source:
            inputs["source"] = self._gen_source_ids(ids[:, shift:], n)
        key = self._gen_static_key("sample", config, eos, pad, stop, tokens.shape,
                                   (prompt_len, min_length, streamer is None, shift))
        with backend.no_grad():
            inputs = {k: (v if k in ("rng", "extra") else _to_tensor(v)) for k, v in inputs.items()}
            if streamer is None:
                run = self._gen_compiled(key, lambda: backend.compile_fn(self, lambda x: loop.run(x, prompt_len)))
                result = run(inputs)
                cur = int(backend_to_numpy(result["cur"]))
                return backend_to_numpy(result["tokens"])[:, :cur]
            prefill, step = self._gen_compiled(key, lambda: (
                backend.compile_fn(self, lambda x: loop.prefill(x, prompt_len)),
                backend.compile_fn(self, loop.step)))
            streamer.put(ids[0][mask[0] > 0])
            state = prefill(inputs)
            cur = prompt_len + 1
            streamer.put(backend_to_numpy(state["tokens"])[:, cur - 1])
            while cur < limit and not bool(backend_to_numpy(state["finished"]).all()):
                state = step(state)
                cur += 1
                streamer.put(backend_to_numpy(state["tokens"])[:, cur - 1])
            streamer.end()
            return backend_to_numpy(state["tokens"])[:, :cur]

    def _gen_source_ids(self, prompt_ids, rows_per_prompt):
        """What Transformers' encoder n-gram / encoder repetition processors read: for a decoder-only
        model the prompt ids as given (left padding included), repeated per returned row."""
        return np.repeat(np.asarray(prompt_ids, "int32"), rows_per_prompt, axis=0)

    def _gen_check_processors(self, config):
        """Refuse what this model cannot run (hook: Seq2SeqLM has no unconditional pass)."""

    def _gen_cache_reorderer(self):
        """Gather cache rows along each leaf's batch axis, found by comparing init_cache(1, 1) with
        init_cache(2, 1) (leaves without a batch axis are left alone). An axis that grows by m > 1
        holds m consecutive rows per sequence (a batch-merged (batch * heads, ...) buffer); whole
        groups of m rows are gathered."""
        import keras

        flat_one = [tuple(t.shape) for t in keras.tree.flatten(self.decoder_adapter(self).init_cache(1, 1))]
        flat_two = [tuple(t.shape) for t in keras.tree.flatten(self.decoder_adapter(self).init_cache(2, 1))]
        axes = [next(((i, b - a) for i, (a, b) in enumerate(zip(s1, s2)) if a != b), None)
                for s1, s2 in zip(flat_one, flat_two)]

        def reorder(cache, idx):
            import keras

            leaves = keras.tree.flatten(cache)
            out = [leaf if ax is None else _take_row_groups(leaf, idx, *ax) for leaf, ax in zip(leaves, axes)]
            return keras.tree.pack_sequence_as(cache, out)

        return reorder

    def _gen_run_beam(self, config, ids, mask, max_length, min_length, eos, pad, stop, seed, limit=None, shift=0):
        k = config.num_beams
        tokens, full_mask = self._gen_buffers(ids, mask, k, max_length, pad)
        prompt_len = ids.shape[1]
        # Transformers fills unused positions with pad (or eos[0] when pad is 0 / unset)
        fill = config.pad_token_id if config.pad_token_id else (eos[0] if eos else -1)
        fill = pad if fill == -1 else fill
        min_keep = len(eos) + 1 if eos else 2
        procs = Processors(config, min_length, eos, sampling=config.do_sample, min_keep=min_keep,
                           prompt_len=prompt_len, offset=shift, timestamps=self._gen_timestamps)
        search = BeamSearch(self.decoder_adapter(self), procs, eos, fill, k, config.length_penalty,
                            config.early_stopping, sampling=config.do_sample, stop=stop,
                            reorder_cache=getattr(self, "reorder_cache", None) or self._gen_cache_reorderer())
        limit = max_length if limit is None else limit
        inputs = {"tokens": tokens, "mask": full_mask, "extra": {}, "limit": np.int32(limit),
                  "rng": backend.make_rng(seed, tokens.shape[0])}
        if procs.needs_source:
            inputs["source"] = self._gen_source_ids(ids[:, shift:], k)
        key = self._gen_static_key("beam", config, eos, pad, stop, tokens.shape, (prompt_len, min_length, shift))
        with backend.no_grad():
            inputs = {k_: (v if k_ in ("rng", "extra") else _to_tensor(v)) for k_, v in inputs.items()}
            run = self._gen_compiled(key, lambda: backend.compile_fn(self, lambda x: search.run(x, prompt_len)))
            result = run(inputs)
        n = config.num_return_sequences
        seqs = backend_to_numpy(result["sequences"])[:, :n]
        lengths = backend_to_numpy(result["lengths"])[:, :n]
        out_len = prompt_len + int(lengths.max())
        return seqs.reshape(-1, seqs.shape[-1])[:, :out_len]

    def _gen_format_output(self, out, prompt_mask, kind, tok, return_full_text):
        out = np.asarray(out).astype(np.int32)
        if kind == "ids":
            return out
        prompt_len = prompt_mask.shape[1]
        pads = np.repeat(prompt_len - prompt_mask.sum(axis=1), out.shape[0] // prompt_mask.shape[0])
        full = return_full_text and not kind.startswith("chat")
        rows = [row[pad if full else prompt_len:].tolist() for row, pad in zip(out, pads)]
        texts = tok.batch_decode(rows, skip_special_tokens=True)
        if kind in ("text", "chat") and len(texts) == 1:
            return texts[0]
        return texts


def ops_take(x, idx, axis):
    from keras import ops

    return ops.take(x, idx, axis=axis)


def _take_row_groups(x, idx, axis, rows):
    """Sequences ``idx`` of ``x`` whose ``axis`` holds ``rows`` consecutive entries per sequence."""
    if rows == 1:
        return ops_take(x, idx, axis)
    from keras import ops

    shape = tuple(x.shape)
    grouped = ops.reshape(x, shape[:axis] + (shape[axis] // rows, rows) + shape[axis + 1:])
    out = ops.take(grouped, idx, axis=axis)
    return ops.reshape(out, shape[:axis] + (ops.shape(out)[axis] * rows,) + shape[axis + 1:])


def _to_tensor(x):
    from keras import ops

    return ops.convert_to_tensor(x)


def backend_to_numpy(x):
    from keras import ops

    if isinstance(x, (np.ndarray, list, tuple, int)):
        return np.asarray(x)
    return ops.convert_to_numpy(x)
