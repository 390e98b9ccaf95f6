"""Greedy and sampling decode loops over a fixed-size KV cache (traceable, backend-neutral).

A ``Decoder`` adapts a model to two calls: ``init_cache(rows, max_length)`` and
``forward(ids, cache, index, mask, extra, last_only=False) -> (logits, cache)`` (CausalLM:
``call_with_cache``; ``last_only`` lets a prefill skip the LM head on all but the last position;
Seq2SeqLM: ``tasks.seq2seq_generation.Seq2SeqDecoderAdapter`` with the encoder states in ``extra``). The loop state is a
dict of tensors: the (rows, L) token buffer with the prompt left-padded at ``[0, P)``, the (rows, L)
attention mask over the whole cache, the cache, ``cur`` (filled positions), ``finished`` rows and
the next-token logits. ``prefill`` runs the prompt and picks the first token; each ``step`` feeds the
last token and picks the next one. Finished rows receive ``pad_token_id``.
"""

from __future__ import annotations

from keras import ops

from keras_models.generation import backend
from keras_models.generation import processors as P


class CausalDecoder:
    def __init__(self, model):
        self.model = model

    def init_cache(self, rows, max_length):
        return self.model.init_cache(rows, max_length)

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only)


def write_column(buffer, cur, values):
    """buffer[:, cur] = values, as a select (traceable with a tensor ``cur``). In the eager torch
    loop (``backend.direct_ops``) with a Python int ``cur``: written in place (the loop owns its
    buffers), one column instead of a select over the whole buffer."""
    if type(cur) is int and backend.direct_ops(buffer, values):
        return backend.write_time_slice(buffer, values[:, None], cur, axis=1)
    length = int(buffer.shape[1])
    hit = ops.equal(ops.arange(length, dtype="int32"), cur)[None, :]
    return ops.where(hit, ops.cast(values, buffer.dtype)[:, None], buffer)


def is_in(ids, targets):
    """(rows,) bool: ids in the static tuple ``targets``."""
    if backend.direct_ops(ids):
        import torch

        if not targets:
            return torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        return torch.isin(ids, torch.tensor(targets, dtype=ids.dtype, device=ids.device))
    if not targets:
        return ops.zeros(ops.shape(ids), dtype="bool")
    t = ops.convert_to_tensor(list(targets), dtype="int32")
    return ops.any(ops.equal(ops.cast(ids, "int32")[:, None], t[None, :]), axis=-1)


def unconditional_logits(decoder, state, tokens, cur, prompt_len):
    """Classifier-free guidance's unconditional branch, as Transformers runs it: a second sequence
    that starts from the prompt's last token and continues with each row's generated tokens, with
    its own cache (``state["uncond_cache"]``, never reordered by beam search). Feeds
    ``tokens[:, cur - 1]`` at position ``cur - prompt_len``; returns (logits (rows, vocab), cache)."""
    cache = state["uncond_cache"]
    rows = int(tokens.shape[0])
    width = int(state["uncond_width"].shape[0])
    index = cur - prompt_len
    last = ops.take(tokens, cur - 1, axis=1)[:, None]
    mask = ops.cast(ops.arange(width, dtype="int32") <= index, "int32")
    mask = ops.broadcast_to(mask[None, :], (rows, width))
    logits, cache = decoder.forward(last, cache, index, mask, state["extra"])
    return ops.cast(logits[:, -1, :], "float32"), cache


def init_unconditional(decoder, state, rows, width):
    """Add the unconditional branch's cache (``width`` = 1 + the new tokens) to a loop state."""
    state["uncond_cache"] = decoder.init_cache(rows, width)
    state["uncond_width"] = ops.zeros((width,), "int32")  # its static width, carried as a shape
    return state


class GreedyOrSample:
    """The loop pieces for one static configuration (see module docstring)."""

    def __init__(self, decoder, processors, eos_ids, pad_id, sampling, stop=None, prompt_len=None):
        self.decoder = decoder
        self.processors = processors
        self.eos_ids = tuple(eos_ids or ())
        self.pad_id = int(pad_id)
        self.sampling = sampling
        self.stop = stop
        self.prompt_len = prompt_len

    def prefill(self, inputs, prompt_len):
        tokens, mask = inputs["tokens"], inputs["mask"]
        rows, length = int(tokens.shape[0]), int(tokens.shape[1])
        cache = self.decoder.init_cache(rows, length)
        start = 0 if backend.EAGER_LOOP else ops.convert_to_tensor(0, "int32")
        logits, cache = self.decoder.forward(tokens[:, :prompt_len], cache, start, mask, inputs["extra"],
                                             last_only=True)
        logits = ops.cast(logits[:, -1, :], "float32")
        vocab = int(logits.shape[-1])
        if self.processors.needs_presence:
            presence = P.presence_from_tokens(tokens[:, :prompt_len], mask[:, :prompt_len] > 0, vocab)
        else:
            presence = ops.zeros((rows, 1), "float32")
        state = {
            "tokens": tokens, "mask": mask, "cache": cache, "logits": logits, "presence": presence,
            # an eager loop (torch) keeps ``cur`` a Python int: attention then reads only the
            # filled part of the KV buffer (see backend.visible_length)
            "cur": prompt_len if backend.EAGER_LOOP else ops.convert_to_tensor(prompt_len, "int32"),
            "finished": ops.zeros((rows,), "bool"),
            "rng": inputs["rng"], "extra": inputs["extra"],
            "limit": ops.cast(inputs.get("limit", length), "int32"),
        }
        if "source" in inputs:
            state["source"] = inputs["source"]
        self.prompt_len = prompt_len
        if self.processors.needs_uncond:
            init_unconditional(self.decoder, state, rows, length - prompt_len)
        return self.select(state)

    def select(self, state):
        tokens, cur = state["tokens"], state["cur"]
        state = dict(state)
        uncond = None
        if self.processors.needs_uncond:
            uncond, state["uncond_cache"] = unconditional_logits(self.decoder, state, tokens, cur, self.prompt_len)
        scores = self.processors(state["logits"], tokens, cur, state["presence"], limit=state["limit"],
                                 source=state.get("source"), uncond=uncond)
        if self.sampling:
            # the uniforms of the t-th new token (a backend may pad the prompt to a bucket)
            u = backend.uniform(state["rng"], cur - self.prompt_len, tuple(scores.shape))
            nxt = P.sample(scores, u)
        else:
            nxt = P.greedy(scores)
        if backend.direct_ops(state["finished"], nxt):
            import torch

            nxt = torch.where(state["finished"], self.pad_id, nxt)
            ones = torch.ones_like(nxt)
        else:
            nxt = ops.where(state["finished"], self.pad_id, nxt)
            ones = ops.ones_like(nxt)
        state["tokens"] = tokens = write_column(tokens, cur, nxt)
        state["mask"] = write_column(state["mask"], cur, ones)
        if self.processors.needs_presence:
            vocab = int(state["presence"].shape[-1])
            state["presence"] = ops.maximum(state["presence"], ops.one_hot(nxt, vocab, dtype="float32"))
        cur = cur + 1
        done = is_in(nxt, self.eos_ids)
        if self.stop is not None:
            done = ops.logical_or(done, self.stop(tokens, cur))
        if backend.direct_ops(state["finished"], done):
            state["finished"] = state["finished"] | done
        else:
            state["finished"] = ops.logical_or(state["finished"], done)
        state["cur"] = cur
        return state

    def step(self, state):
        cur = state["cur"]
        direct = type(cur) is int and backend.direct_ops(state["tokens"])
        if direct:  # a copy: the loop writes the token buffer in place
            last = state["tokens"][:, cur - 1 : cur].clone()
        else:
            last = ops.take(state["tokens"], cur - 1, axis=1)[:, None]
        logits, cache = self.decoder.forward(last, state["cache"], cur - 1, state["mask"], state["extra"])
        state = dict(state)
        state["cache"] = cache
        state["logits"] = logits[:, -1, :].float() if direct else ops.cast(logits[:, -1, :], "float32")
        return self.select(state)

    @staticmethod
    def cond(state):
        if backend.direct_ops(state["finished"]):
            return (state["cur"] < state["limit"]) & ~state["finished"].all()
        return ops.logical_and(state["cur"] < state["limit"], ops.logical_not(ops.all(state["finished"])))

    def run(self, inputs, prompt_len):
        """Prefill and loop to the end (the compiled, non-streaming path)."""
        length = int(inputs["tokens"].shape[1])
        state = self.prefill(inputs, prompt_len)
        state = backend.while_loop(self.cond, self.step, state, max(length - prompt_len - 1, 0))
        return {"tokens": state["tokens"], "cur": state["cur"]}
