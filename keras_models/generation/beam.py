"""Beam search over a fixed-size KV cache, with Transformers' (vectorised, static-shape) rules.

Per batch item, ``K`` running beams and ``K`` finished hypotheses are kept. Each step scores the
``K * vocab`` continuations (log-softmax, processors, plus the beam's running score), keeps the top
``max(2, 1 + n_eos) * K`` of them, moves those that hit a stopping criterion (eos, stop string,
max length) to the finished set when they beat it (scores divided by ``length ** length_penalty``),
and continues with the best ``K`` that did not stop. The search ends when no running beam can beat
the finished ones (``early_stopping`` False / True / "never" as in Transformers), or at max length.
Works for CausalLM and Seq2SeqLM through the same ``Decoder`` adapters as decode.py.
"""

from __future__ import annotations

from keras import ops

from keras_models.generation import backend
from keras_models.generation import processors as P
from keras_models.generation.decode import init_unconditional, is_in, unconditional_logits

BIG = 1.0e9


def gather_beams(x, idx):
    """x (batch, beams, ...) gathered along axis 1 with idx (batch, k)."""
    idx = ops.cast(idx, "int32")
    while len(idx.shape) < len(x.shape):
        idx = idx[..., None]
    return ops.take_along_axis(x, ops.broadcast_to(idx, tuple(idx.shape[:2]) + tuple(x.shape[2:])), axis=1)


class BeamSearch:
    def __init__(self, decoder, processors, eos_ids, fill_id, num_beams, length_penalty, early_stopping,
                 sampling=False, stop=None, reorder_cache=None):
        self.decoder = decoder
        self.processors = processors
        self.eos_ids = tuple(eos_ids or ())
        self.fill_id = int(fill_id)
        self.k = int(num_beams)
        self.length_penalty = float(length_penalty)
        self.early_stopping = early_stopping
        self.sampling = sampling
        self.stop = stop
        self.keep = max(2, 1 + len(self.eos_ids)) * self.k
        self.reorder_cache = reorder_cache or (
            lambda cache, idx: backend.tree_map(lambda t: ops.take(t, idx, axis=0), cache)
        )

    # inputs: tokens/mask (batch*K, L) with the prompt at [0, P), already repeated per beam
    def prefill(self, inputs, prompt_len):
        tokens, mask = inputs["tokens"], inputs["mask"]
        rows, length = int(tokens.shape[0]), int(tokens.shape[1])
        batch, k = rows // self.k, self.k
        cache = self.decoder.init_cache(rows, length)
        logits, cache = self.decoder.forward(tokens[:, :prompt_len], cache, ops.convert_to_tensor(0, "int32"),
                                             mask, inputs["extra"], last_only=True)
        running = ops.reshape(tokens, (batch, k, length))
        running = ops.where(ops.arange(length)[None, None, :] < prompt_len, running, self.fill_id)
        init_scores = ops.convert_to_tensor([0.0] + [-BIG] * (k - 1), "float32")
        state = {
            "running": running, "sequences": running,
            "running_scores": ops.broadcast_to(init_scores[None, :], (batch, k)),
            "scores": ops.full((batch, k), -BIG, "float32"),
            "lengths": ops.zeros((batch, k), "int32"),
            "finished": ops.zeros((batch, k), "bool"),
            "unsatisfied": ops.ones((batch, 1), "bool"),
            "hits": ops.zeros((batch, k), "bool"),
            "mask": mask, "cache": cache, "logits": ops.cast(logits[:, -1, :], "float32"),
            "cur": ops.convert_to_tensor(prompt_len, "int32"), "done": ops.convert_to_tensor(False),
            "rng": inputs["rng"], "extra": inputs["extra"],
            "limit": ops.cast(inputs.get("limit", length), "int32"),
        }
        if "source" in inputs:
            state["source"] = inputs["source"]
        if self.processors.needs_uncond:
            init_unconditional(self.decoder, state, rows, length - prompt_len)
        return self.select(state, prompt_len)

    def select(self, state, prompt_len):
        running, cur = state["running"], state["cur"]
        batch, k, length = (int(s) for s in running.shape)
        flat = ops.reshape(running, (batch * k, length))
        logp = ops.log_softmax(state["logits"], axis=-1)
        vocab = int(logp.shape[-1])
        presence = None
        if self.processors.needs_presence:
            valid = ops.logical_and(ops.arange(length)[None, :] < cur, state["mask"] > 0)
            presence = P.presence_from_tokens(flat, valid, vocab)
        uncond, new_uncond_cache = None, None
        if self.processors.needs_uncond:
            uncond, new_uncond_cache = unconditional_logits(self.decoder, state, flat, cur, prompt_len)
        logp = self.processors(logp, flat, cur, presence, limit=state["limit"], source=state.get("source"),
                               uncond=uncond)
        acc = ops.reshape(logp, (batch, k, vocab)) + state["running_scores"][:, :, None]
        acc = ops.reshape(acc, (batch, k * vocab))

        if self.sampling:  # sample `keep` continuations without replacement (Gumbel top-k)
            u = backend.uniform(state["rng"], cur - prompt_len, tuple(acc.shape))  # t-th new token
            idx = ops.top_k(acc - ops.log(-ops.log(u)), self.keep, sorted=True)[1]
            top_logp = ops.take_along_axis(acc, idx, axis=1)
            order = ops.flip(ops.argsort(top_logp, axis=-1), axis=-1)
            idx = ops.take_along_axis(idx, order, axis=1)
            top_logp = ops.take_along_axis(top_logp, order, axis=1)
        else:
            top_logp, idx = ops.top_k(acc, self.keep, sorted=True)
        src_beam = idx // vocab
        token = ops.cast(idx % vocab, "int32")
        top_seq = gather_beams(running, src_beam)
        at_cur = ops.equal(ops.arange(length, dtype="int32"), cur)[None, None, :]
        top_seq = ops.where(at_cur, token[:, :, None], top_seq)

        # which continuations hit a stopping criterion
        hits = ops.logical_or(is_in(ops.reshape(token, (-1,)), self.eos_ids), cur + 1 >= state["limit"])
        if self.stop is not None:
            hits = ops.logical_or(hits, self.stop(ops.reshape(top_seq, (batch * self.keep, length)), cur + 1))
        hits = ops.reshape(hits, (batch, self.keep))

        # running beams for the next step: the best K that did not stop
        run_logp = top_logp - ops.cast(hits, "float32") * BIG
        nxt = ops.top_k(run_logp, k, sorted=True)[1]
        new_running = gather_beams(top_seq, nxt)
        new_running_scores = gather_beams(run_logp, nxt)
        beam_idx = gather_beams(src_beam, nxt) + ops.arange(batch, dtype="int32")[:, None] * k

        # finished hypotheses: merge the newly stopped ones among the top K, keep the best K
        top_mask = ops.arange(self.keep) < k
        just_done = ops.logical_and(hits, top_mask[None, :])
        gen_len = ops.cast(cur + 1 - prompt_len, "float32")
        cand = top_logp / ops.power(gen_len, self.length_penalty)
        if self.early_stopping is True:
            full = ops.all(state["finished"], axis=-1, keepdims=True)
            cand = cand - ops.cast(full, "float32") * BIG
        cand = cand - ops.cast(ops.logical_not(state["unsatisfied"]), "float32") * BIG
        cand = cand - ops.cast(ops.logical_not(just_done), "float32") * BIG
        merged_seq = ops.concatenate([state["sequences"], top_seq], axis=1)
        merged_scores = ops.concatenate([state["scores"], cand], axis=1)
        merged_len = ops.concatenate(
            [state["lengths"], ops.cast(ops.full((batch, self.keep), 1.0) * gen_len, "int32")], axis=1)
        merged_fin = ops.concatenate([state["finished"], just_done], axis=1)
        best = ops.top_k(merged_scores, k, sorted=True)[1]

        new = dict(state)
        new["sequences"] = gather_beams(merged_seq, best)
        new["scores"] = gather_beams(merged_scores, best)
        new["lengths"] = gather_beams(merged_len, best)
        new["finished"] = finished = gather_beams(merged_fin, best)
        new["running"], new["running_scores"], new["hits"] = new_running, new_running_scores, hits
        new["cache"] = self.reorder_cache(state["cache"], ops.reshape(beam_idx, (-1,)))
        if new_uncond_cache is not None:  # as Transformers: the unconditional cache follows rows, not beams
            new["uncond_cache"] = new_uncond_cache
        new["mask"] = ops.where(at_cur[0], 1, state["mask"])
        cur = cur + 1
        new["cur"] = cur

        # can a running beam still beat the worst finished hypothesis?
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_len = ops.cast(state["limit"] - prompt_len, "float32")
        else:
            best_len = ops.cast(cur - prompt_len, "float32")
        best_running = new_running_scores[:, :1] / ops.power(best_len, self.length_penalty)
        worst = ops.where(finished, ops.min(new["scores"], axis=1, keepdims=True), -BIG)
        unsatisfied = ops.logical_and(
            state["unsatisfied"], ops.any(best_running > worst, axis=-1, keepdims=True))
        new["unsatisfied"] = unsatisfied
        go_on = ops.any(unsatisfied)
        if self.early_stopping is True:
            go_on = ops.logical_and(go_on, ops.logical_not(ops.all(finished)))
        go_on = ops.logical_and(go_on, ops.logical_not(ops.all(hits)))
        new["done"] = ops.logical_not(go_on)
        return new

    def step(self, state, prompt_len):
        cur = state["cur"]
        batch, k, length = (int(s) for s in state["running"].shape)
        flat = ops.reshape(state["running"], (batch * k, length))
        last = ops.take(flat, cur - 1, axis=1)[:, None]
        logits, cache = self.decoder.forward(last, state["cache"], cur - 1, state["mask"], state["extra"])
        state = dict(state)
        state["cache"] = cache
        state["logits"] = ops.cast(logits[:, -1, :], "float32")
        return self.select(state, prompt_len)

    @staticmethod
    def cond(state):
        return ops.logical_and(state["cur"] < state["limit"], ops.logical_not(state["done"]))

    def run(self, inputs, prompt_len):
        length = int(inputs["tokens"].shape[1])
        state = self.prefill(inputs, prompt_len)
        state = backend.while_loop(self.cond, lambda s: self.step(s, prompt_len), state,
                                   max(length - prompt_len - 1, 0))
        return {"sequences": state["sequences"], "lengths": state["lengths"], "scores": state["scores"]}
