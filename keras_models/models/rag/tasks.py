"""RagTokenForGeneration / RagSequenceForGeneration on given documents.

Inputs (a dict, Transformers' names): ``context_input_ids`` and ``context_attention_mask``
(batch * n_docs, source_len), ``doc_scores`` (batch, n_docs), ``decoder_input_ids`` (batch, len)
(and optionally ``decoder_attention_mask``). Calling either model returns what Transformers' does:
``{"logits", "doc_scores"}`` where ``logits`` is the generator's (batch * n_docs, len, vocab), or
for RAG-token with ``do_marginalize`` (config.json, or the constructor) the marginalised
log-probabilities (batch, len, vocab).

``generate(context_input_ids=..., context_attention_mask=..., doc_scores=..., max_length=...)``:
  * RAG-token: greedy decoding on the marginalised next-token log-probabilities (the documents'
    decoder rows advance together); forced BOS / EOS as in Transformers. ``num_beams`` > 1: beam
    search with the shared engine's Transformers rules (``num_return_sequences``,
    ``length_penalty``, ``early_stopping``), each beam with its own copy of the documents' rows.
    No sampling.
    (Transformers 5's RagTokenForGeneration.generate ignores ``max_new_tokens``; here it is honoured.)
  * RAG-sequence ("thorough" decoding): the generator decodes every document on its own
    (greedy, or ``num_beams`` beams returning ``num_beams`` sequences), duplicates are dropped
    (``do_deduplication``), every candidate is scored with :meth:`sequence_nll` over all documents
    (``exclude_bos_score``) and the ``num_return_sequences`` best are returned, padded.
Both return numpy ids starting with the decoder start token.
"""

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.generation.backend import compile_fn
from keras_models.generation.config import GenerationError
from keras_models.models.rag.backbone import RagBackbone, marginalize
from keras_models.models.registry import register_task
from keras_models.tasks.task import Task

_ser = keras.saving.register_keras_serializable(package="keras_models")
GENERATION_KEYS = ("decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id", "eos_token_id",
                   "pad_token_id", "bos_token_id", "max_length")


def _np(x):
    return np.asarray(ops.convert_to_numpy(x)) if x is not None else None


class _RagTask(Task):
    def __init__(self, backbone, preprocessor=None, generation=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.generation = dict(generation or {})

    @classmethod
    def from_preset(cls, preset, *args, **kwargs):
        from keras_models.presets.config import read_json
        from keras_models.presets.resolve import resolve_preset

        generation = kwargs.pop("generation", None)
        model = super().from_preset(preset, *args, **kwargs)
        gen = read_json(resolve_preset(preset) / "generation_config.json", required=False) or {}
        model.generation = {k: gen[k] for k in GENERATION_KEYS if gen.get(k) is not None}
        model.generation.update(generation or {})
        return model

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.models.rag.tokenizer import RagTokenizer

        return RagTokenizer.from_preset(folder) if RagTokenizer.present(folder) else None

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)

    def token(self, name):
        if name in self.generation:
            return self.generation[name]
        if name in ("forced_bos_token_id", "forced_eos_token_id"):
            return getattr(self.backbone.generator, name, None)
        return self.backbone.token(name)

    def encode_question(self, inputs):
        return self.backbone.encode_question(inputs)

    def get_config(self):
        c = super().get_config()
        c.update(generation=self.generation)
        return c

    @staticmethod
    def _documents(inputs, kwargs):
        inputs = dict(inputs or {})
        for k in ("context_input_ids", "context_attention_mask", "doc_scores"):
            if k in kwargs:
                inputs[k] = kwargs.pop(k)
        for k in ("context_input_ids", "context_attention_mask", "doc_scores"):
            if inputs.get(k) is None:
                raise InputError(f"generate: pass '{k}' (documents retrieved for each question; see "
                                 "keras_models.models.rag.retrieval for an in-memory index)")
        ids = _np(inputs["context_input_ids"]).astype("int32")
        mask = _np(inputs["context_attention_mask"]).astype("int32")
        scores = _np(inputs["doc_scores"]).astype("float32")
        if scores.ndim != 2 or ids.ndim != 2 or ids.shape[0] != scores.shape[0] * scores.shape[1] \
                or mask.shape != ids.shape:
            raise InputError(f"generate: context_input_ids {ids.shape} / context_attention_mask {mask.shape} must be "
                             f"(batch * n_docs, length) for doc_scores {scores.shape} (batch, n_docs)")
        return ids, mask, scores

    def _max_length(self, kwargs):
        max_new = kwargs.pop("max_new_tokens", None)
        max_length = kwargs.pop("max_length", None)
        if max_new is not None:
            return 1 + int(max_new)
        return int(max_length if max_length is not None else self.generation.get("max_length", 20))


@_ser
@register_task(RagBackbone, "RagTokenGenerator", ("RagTokenForGeneration",))
class RagTokenGenerator(_RagTask):
    """RagTokenForGeneration (see the module docstring)."""

    def __init__(self, backbone, preprocessor=None, do_marginalize=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.do_marginalize = backbone.spec.do_marginalize if do_marginalize is None else bool(do_marginalize)

    def call(self, inputs, training=False):
        out = self.backbone(inputs, training=training)
        if self.do_marginalize:
            out = dict(out, logits=marginalize(out["logits"], out["doc_scores"]))
        return out

    marginalize = staticmethod(marginalize)

    def generate(self, inputs=None, *, do_sample=False, num_beams=1, **kwargs):
        if do_sample:
            raise GenerationError("RagTokenGenerator.generate: only greedy and beam search (do_sample=False)")
        ids, mask, scores = self._documents(inputs, kwargs)
        max_length = self._max_length(kwargs)
        names = ("decoder_start_token_id", "eos_token_id", "pad_token_id", "forced_bos_token_id", "forced_eos_token_id")
        tok = {k: kwargs.pop(k, None) for k in names}
        tok = {k: (v if v is not None else self.token(k)) for k, v in tok.items()}
        beam_kw = {k: kwargs.pop(k) for k in ("num_return_sequences", "length_penalty", "early_stopping")
                   if k in kwargs}
        if kwargs:
            raise GenerationError(f"RagTokenGenerator.generate: unsupported arguments {sorted(kwargs)}")
        if tok["decoder_start_token_id"] is None:
            raise GenerationError("generate: no decoder_start_token_id in the config; pass one")
        if num_beams != 1:
            return self._beam_search(ids, mask, scores, max_length, tok, int(num_beams), beam_kw)
        if beam_kw.get("num_return_sequences", 1) != 1:
            raise GenerationError("RagTokenGenerator.generate: num_return_sequences > 1 needs num_beams")
        eos = tok["eos_token_id"]
        eos = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        pad = tok["pad_token_id"] if tok["pad_token_id"] is not None else 0
        gen, b, n = self.backbone.generator, scores.shape[0], scores.shape[1]
        states = gen.encode({"input_ids": ids, "attention_mask": mask})
        cache = gen.init_cache(b * n, max_length, states)
        enc_mask, doc_scores = ops.convert_to_tensor(mask), ops.convert_to_tensor(scores)

        def step_fn(step_ids, cache, index):
            logits, cache = gen.call_decoder_with_cache(step_ids, states, enc_mask, cache, index)
            return marginalize(logits, doc_scores)[:, -1], cache

        step_fn = compile_fn(self, step_fn)  # one trace: every step has the same shapes
        out = np.full((b, 1), tok["decoder_start_token_id"], "int32")
        done = np.zeros((b,), bool)
        for step in range(max_length - 1):
            step_ids = ops.convert_to_tensor(np.repeat(out[:, -1:], n, axis=0))
            lp, cache = step_fn(step_ids, cache, ops.convert_to_tensor(step, "int32"))
            lp = _np(lp).astype("float64")
            cur_len = out.shape[1]
            for forced, at in ((tok["forced_bos_token_id"], cur_len == 1),
                               (tok["forced_eos_token_id"], cur_len == max_length - 1)):
                if forced is not None and at:
                    lp[:, :] = -np.inf
                    lp[:, forced] = 0.0
            nxt = lp.argmax(-1).astype("int32")
            nxt = np.where(done, pad, nxt)
            out = np.concatenate([out, nxt[:, None]], axis=1)
            done |= np.isin(nxt, list(eos))
            if done.all():
                break
        return out


    def _beam_search(self, ids, mask, scores, max_length, tok, k, beam_kw):
        """Beam search on the marginalised next-token log-probabilities with the shared engine's
        Transformers rules (keras_models/generation/beam.py), as RagTokenForGeneration runs
        ``_beam_search``: every beam carries its own copy of the documents' decoder rows (batch *
        beams * n_docs), reordered with the beams."""
        from keras_models.generation.backend import make_rng
        from keras_models.generation.beam import BeamSearch
        from keras_models.generation.config import GenerationConfig
        from keras_models.generation.processors import Processors

        gen, b, n = self.backbone.generator, scores.shape[0], scores.shape[1]
        eos = tok["eos_token_id"]
        eos = tuple(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        pad = tok["pad_token_id"] if tok["pad_token_id"] is not None else 0
        config = GenerationConfig(num_beams=k, max_length=max_length, do_sample=False,
                                  forced_bos_token_id=tok["forced_bos_token_id"],
                                  forced_eos_token_id=tok["forced_eos_token_id"], eos_token_id=list(eos) or None,
                                  pad_token_id=pad, **beam_kw).validate()
        rows = b * k
        # (batch * n_docs, ...) -> (batch * beams * n_docs, ...): each beam a copy of its item's documents
        order = (np.arange(b)[:, None, None] * n + np.arange(n)[None, None, :] + 0 * np.arange(k)[None, :, None])
        order = order.reshape(-1)
        states = ops.take(gen.encode({"input_ids": ids, "attention_mask": mask}), order, axis=0)
        enc_mask = ops.convert_to_tensor(mask[order])
        doc_scores = ops.convert_to_tensor(np.repeat(scores, k, axis=0))

        class Decoder:
            def init_cache(self, rows_, length):
                return gen.init_cache(rows_ * n, length, states)

            def forward(self, step_ids, cache, index, mask_, extra, last_only=False):
                step_ids = ops.repeat(step_ids, n, axis=0)
                logits, cache = gen.call_decoder_with_cache(step_ids, states, enc_mask, cache, index)
                return marginalize(logits, doc_scores), cache

        def reorder(cache, idx):  # beam rows -> their n document rows
            full = ops.reshape(ops.cast(idx, "int32")[:, None] * n + ops.arange(n, dtype="int32")[None, :], (-1,))
            return keras.tree.map_structure(lambda t: ops.take(t, full, axis=0), cache)

        fill = pad if pad else (eos[0] if eos else pad)
        procs = Processors(config, 0, eos, sampling=False, min_keep=len(eos) + 1 if eos else 2, prompt_len=1)
        search = BeamSearch(Decoder(), procs, eos, fill, k, config.length_penalty, config.early_stopping,
                            reorder_cache=reorder)
        tokens = np.full((rows, max_length), pad, "int32")
        tokens[:, 0] = tok["decoder_start_token_id"]
        full_mask = np.zeros((rows, max_length), "int32")
        full_mask[:, 0] = 1
        inputs = {"tokens": ops.convert_to_tensor(tokens), "mask": ops.convert_to_tensor(full_mask), "extra": {},
                  "limit": ops.convert_to_tensor(max_length, "int32"), "rng": make_rng(None, rows)}
        result = search.run(inputs, 1)
        count = beam_kw.get("num_return_sequences", 1)
        seqs = _np(result["sequences"])[:, :count]
        lengths = _np(result["lengths"])[:, :count]
        return seqs.reshape(-1, seqs.shape[-1])[:, :1 + int(lengths.max())]


@_ser
@register_task(RagBackbone, "RagSequenceGenerator", ("RagSequenceForGeneration",))
class RagSequenceGenerator(_RagTask):
    """RagSequenceForGeneration (see the module docstring)."""

    def call(self, inputs, training=False):
        return self.backbone(inputs, training=training)

    def sequence_nll(self, logits, doc_scores, labels, exclude_bos_score=None, reduce_loss=None, epsilon=None):
        """RAG-sequence negative log-likelihood of ``labels`` (batch, len) (the decoder inputs the
        logits were computed on; targets are them shifted left): per document the sum of token
        log-probabilities, the document's log-softmaxed score added once (at the second position),
        log-sum-exp over documents. (batch,), or a scalar with ``reduce_loss``."""
        spec = self.backbone.spec
        exclude_bos_score = spec.exclude_bos_score if exclude_bos_score is None else exclude_bos_score
        reduce_loss = spec.reduce_loss if reduce_loss is None else reduce_loss
        epsilon = spec.label_smoothing if epsilon is None else epsilon
        pad = self.backbone.generator.pad_token_id
        bos = self.backbone.spec.bos_token_id or self.backbone.generator.bos_token_id
        n = doc_scores.shape[1]
        labels = ops.cast(labels, "int32")
        target = ops.concatenate([labels[:, 1:], ops.full((ops.shape(labels)[0], 1), pad, "int32")], axis=1)
        lp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        lp = ops.reshape(lp, (-1, n) + tuple(lp.shape[1:]))  # (batch, n, len, vocab)
        doc = ops.log_softmax(ops.cast(doc_scores, "float32"), axis=1)[:, :, None, None]
        lp = ops.concatenate([lp[:, :, :1], lp[:, :, 1:2] + doc, lp[:, :, 2:]], axis=2)
        idx = ops.broadcast_to(target[:, None, :, None], tuple(ops.shape(lp)[:3]) + (1,))
        ll = ops.take_along_axis(lp, idx, axis=-1)[..., 0]
        smooth = ops.sum(lp, axis=-1)
        keep = ops.cast(ops.not_equal(target, pad), "float32")[:, None, :]
        ll, smooth = ll * keep, smooth * keep
        if exclude_bos_score and bos is not None:  # only when every target starts with BOS (a tensor test)
            use_bos = ops.all(ops.equal(target[:, 0], bos))
            ll = ops.where(use_bos, ops.sum(ll[:, :, 1:], axis=2), ops.sum(ll, axis=2))
        else:
            ll = ops.sum(ll, axis=2)
        nll = -ops.logsumexp(ll, axis=1)
        smooth_loss = -ops.logsumexp(ops.sum(smooth, axis=2), axis=1)
        if reduce_loss:
            nll, smooth_loss = ops.sum(nll), ops.sum(smooth_loss)
        vocab = lp.shape[-1]
        return (1.0 - epsilon) * nll + (epsilon / vocab) * smooth_loss

    def generate(self, inputs=None, *, num_return_sequences=1, num_beams=1, do_deduplication=None, **kwargs):
        ids, mask, scores = self._documents(inputs, kwargs)
        max_length = self._max_length(kwargs)
        dedupe = self.backbone.spec.do_deduplication if do_deduplication is None else do_deduplication
        if kwargs.pop("do_sample", False):
            raise GenerationError("RagSequenceGenerator.generate: sampling is not supported (greedy or beam search)")
        gen, n = self.backbone.generator, scores.shape[1]
        pad, eos = gen.pad_token_id, gen.eos_token_id

        def score_fn(inputs):
            out = self(inputs)
            return self.sequence_nll(out["logits"], out["doc_scores"], inputs["decoder_input_ids"],
                                     exclude_bos_score=True, reduce_loss=False)

        score_fn = compile_fn(self, score_fn)
        hypos = []
        for i in range(scores.shape[0]):
            docs = ids[i * n:(i + 1) * n]
            # Transformers calls the generator without a mask: it is inferred from the pad token
            gen_mask = (docs != pad).astype("int32") if pad is not None and pad != eos and (docs == pad).any() \
                else np.ones_like(docs)
            seqs = np.asarray(gen.generate({"input_ids": docs, "attention_mask": gen_mask}, max_length=max_length,
                                           num_beams=num_beams, num_return_sequences=num_beams, do_sample=False,
                                           **kwargs)).astype("int32")
            if dedupe:
                seqs = np.stack(list({tuple(s.tolist()): s for s in seqs}.values()))
            k = seqs.shape[0]
            loss = _np(score_fn({"context_input_ids": np.tile(docs, (k, 1)),
                                 "context_attention_mask": np.tile(mask[i * n:(i + 1) * n], (k, 1)),
                                 "doc_scores": np.repeat(scores[i:i + 1], k, axis=0), "decoder_input_ids": seqs}))
            best = np.argsort(loss, kind="stable")[:num_return_sequences]
            hypos.append(seqs[best])
        width = max(h.shape[1] for h in hypos)
        result = np.full((sum(h.shape[0] for h in hypos), width), pad if pad is not None else 0, "int32")
        row = 0
        for h in hypos:
            result[row:row + h.shape[0], :h.shape[1]] = h
            row += h.shape[0]
        return result


__all__ = ["RagTokenGenerator", "RagSequenceGenerator"]
