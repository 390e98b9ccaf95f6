"""question-answering: extractive answers with character spans, as Transformers 4.x documented it
(Transformers 5 removed this pipeline; we keep its behaviour).

A long context is split into windows of ``max_seq_len`` tokens overlapping by ``doc_stride``.
In each window, start/end logits outside the context (question, special tokens, padding; the CLS
token is kept, it stands for "no answer") are masked, softmaxed, and every span ``start <= end <
start + max_answer_len`` is scored ``p_start * p_end``. Answers are mapped back to characters
through the tokenizer's offsets (widened to whole words with ``align_to_words``); the same answer
text found in several windows adds up its scores.
"""

from __future__ import annotations

import numpy as np

from keras_models.pipelines.base import PipelineError
from keras_models.pipelines.text import TextPipeline


class QuestionAnsweringPipeline(TextPipeline):
    task = "question-answering"
    call_params = ("top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                   "handle_impossible_answer", "align_to_words", "padding")

    def __call__(self, *args, **kwargs):
        question, context = kwargs.pop("question", None), kwargs.pop("context", None)
        if args and (question is not None or context is not None):
            raise PipelineError("question-answering: pass inputs positionally or as question=/context=, not both")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            inputs = {"question": args[0], "context": args[1]}
        elif len(args) == 1:
            inputs = args[0]
        elif args:
            inputs = list(args)
        elif question is not None and context is not None:
            if isinstance(question, list):
                contexts = [context] * len(question) if isinstance(context, str) else list(context)
                if len(contexts) != len(question):
                    raise PipelineError("question-answering: question and context lists differ in length")
                inputs = [{"question": q, "context": c} for q, c in zip(question, contexts)]
            else:
                inputs = {"question": question, "context": context}
        else:
            raise PipelineError("question-answering: give question= and context= (or {'question', 'context'} dicts)")
        return super().__call__(inputs, **kwargs)

    def normalize_inputs(self, inputs, params):
        single = isinstance(inputs, dict)
        items = [inputs] if single else list(inputs)
        if not items:
            raise PipelineError("question-answering: no inputs")
        for item in items:
            if not isinstance(item, dict) or not {"question", "context"} <= set(item):
                raise PipelineError("question-answering: each input is a dict with 'question' and 'context'")
            for key in ("question", "context"):
                if not isinstance(item[key], str) or not item[key]:
                    raise PipelineError(f"question-answering: {key!r} must be a non-empty str")
        return single, items

    def prepare_params(self, params):
        max_seq_len = params.get("max_seq_len") or min(self.max_length(), 384)
        doc_stride = params.get("doc_stride")
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise PipelineError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
        top_k = params.get("top_k", 1)
        if top_k < 1:
            raise PipelineError(f"top_k must be >= 1, got {top_k}")
        max_answer_len = params.get("max_answer_len", 15)
        if max_answer_len < 1:
            raise PipelineError(f"max_answer_len must be >= 1, got {max_answer_len}")
        return {"max_seq_len": max_seq_len, "doc_stride": doc_stride, "top_k": top_k,
                "max_answer_len": max_answer_len,
                "handle_impossible_answer": bool(params.get("handle_impossible_answer", False)),
                "align_to_words": params.get("align_to_words", True)}

    def preprocess(self, item, max_seq_len, doc_stride, **_):
        tok = self._require_tokenizer()
        question_first = tok.padding_side == "right"
        first, second = (item["question"], item["context"]) if question_first else (item["context"], item["question"])
        try:
            enc = tok._encode_batch(
                [first], [second], truncation="only_second" if question_first else "only_first",
                max_length=max_seq_len, stride=doc_stride,
            )[0]
        except Exception as e:  # the Rust tokenizer rejects a stride that leaves no room
            raise PipelineError(
                f"question-answering: cannot split the context with max_seq_len={max_seq_len}, "
                f"doc_stride={doc_stride}: {e}"
            ) from e
        chunks = []
        for span in [enc] + list(enc.overflowing):
            p_mask = [int(s != 1) if question_first else 0 for s in span.sequence_ids]
            if tok.cls_token_id is not None:
                p_mask = [0 if i == tok.cls_token_id else m for i, m in zip(span.ids, p_mask)]
            chunks.append({"features": self.features(span), "p_mask": p_mask, "encoding": span,
                           "question_first": question_first})
        return chunks

    def run_model(self, batch):
        out = self.call_model(self.model, batch)
        return {"start": out["start_logits"], "end": out["end_logits"]}

    def postprocess(self, item, chunks, outputs, top_k=1, max_answer_len=15, handle_impossible_answer=False,
                    align_to_words=True, **_):
        min_null = 1000000.0
        answers = []
        for chunk, out in zip(chunks, outputs):
            starts, ends, scores, min_null = select_spans(
                out["start"], out["end"], chunk["p_mask"], chunk["features"]["attention_mask"],
                min_null, top_k, handle_impossible_answer, max_answer_len,
            )
            enc, seq_index = chunk["encoding"], 1 if chunk["question_first"] else 0
            for s, e, score in zip(starts, ends, scores):
                begin, end = _char_span(enc, int(s), int(e), seq_index, align_to_words)
                text = item["context"][begin:end]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += float(score)
                else:
                    answers.append({"score": float(score), "start": begin, "end": end, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def select_spans(start, end, p_mask, attention_mask, min_null_score, top_k, handle_impossible, max_answer_len):
    """Best (start, end, score) token spans of one window (see the module docstring)."""
    allowed = (1 - np.asarray(p_mask, dtype=np.int64)) & np.asarray(attention_mask, dtype=np.int64)
    start = np.where(allowed == 0, -10000.0, np.asarray(start, dtype=np.float64))[None]
    end = np.where(allowed == 0, -10000.0, np.asarray(end, dtype=np.float64))[None]
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start /= start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end /= end.sum()
    if handle_impossible:
        min_null_score = min(min_null_score, float(start[0, 0] * end[0, 0]))
    start[0, 0] = end[0, 0] = 0.0
    candidates = np.tril(np.triu(start[0][:, None] * end[0][None, :]), max_answer_len - 1)
    flat = candidates.ravel()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        part = np.argpartition(-flat, top_k)[:top_k]
        order = part[np.argsort(-flat[part])]
    starts, ends = np.unravel_index(order, candidates.shape)
    ok_tokens = allowed.nonzero()[0]
    keep = np.isin(starts, ok_tokens) & np.isin(ends, ok_tokens)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], min_null_score


def _char_span(enc, s, e, sequence_index, align_to_words):
    if align_to_words:
        try:
            first_word, last_word = enc.token_to_word(s), enc.token_to_word(e)
            return (enc.word_to_chars(first_word, sequence_index)[0],
                    enc.word_to_chars(last_word, sequence_index)[1])
        except Exception:  # tokens outside any word (CLS): fall back to token offsets
            pass
    return enc.offsets[s][0], enc.offsets[e][1]
