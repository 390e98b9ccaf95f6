"""token-classification against Transformers' pipeline; question-answering (removed in
Transformers 5) against a brute-force oracle over the reference model's own logits."""

import numpy as np
import pytest

import keras_models as km
from tests.pipelines.refs import assert_same, checkpoint, hf_pipeline_outputs, km_pipeline

NER_TEXT = "John lives in Parisian cities near new york 日 and mary works at google."
NER_CALLS = [([NER_TEXT], {"aggregation_strategy": s}) for s in ("none", "simple", "first", "average", "max")] + [
    ([NER_TEXT], {"ignore_labels": []}),
    ([["hello world", NER_TEXT]], {"aggregation_strategy": "simple", "ignore_labels": ["O", "PER"]}),
    ([["John", "lives", "in", "Parisian", "cities"]], {"is_split_into_words": True, "aggregation_strategy": "first"}),
]
NER_STRIDE_CALLS = [([NER_TEXT], {"aggregation_strategy": s, "stride": 3, "ignore_labels": []})
                    for s in ("simple", "first", "max")]


@pytest.mark.parametrize("ckpt,calls", [("ner", NER_CALLS), ("ner_short", NER_STRIDE_CALLS)], ids=["ner", "stride"])
def test_token_classification_matches_transformers(ckpt, calls):
    folder = checkpoint(ckpt)
    expected = hf_pipeline_outputs("token-classification", folder, calls)
    assert any(e for e in expected), "degenerate reference: no entities at all"
    pipe = km_pipeline("ner", ckpt)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"ner {kwargs}")


def test_token_classification_batching_and_errors():
    pipe = km_pipeline("ner", "ner")
    texts = [NER_TEXT, "hello", "mary lives in london"]
    assert_same(pipe(texts, batch_size=2, aggregation_strategy="simple"),
                [pipe(t, aggregation_strategy="simple") for t in texts])
    with pytest.raises(km.pipelines.PipelineError, match="aggregation_strategy"):
        pipe(NER_TEXT, aggregation_strategy="longest")
    with pytest.raises(km.pipelines.PipelineError, match="stride"):
        pipe(NER_TEXT, aggregation_strategy="none", stride=2)


# --- question answering ---------------------------------------------------------------------------
QUESTION = "where does john live?"
CONTEXT = "John lives in Paris, the capital of France. Mary works at Google in London, a new city."


def _oracle(folder, question, context, top_k=1, max_answer_len=15, max_seq_len=None, doc_stride=None,
            handle_impossible_answer=False, align_to_words=True):
    """Enumerate every allowed span of every window with the HF tokenizer and model."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    max_seq_len = max_seq_len or min(tok.model_max_length, 384)
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    enc = tok(question, context, truncation="only_second", max_length=max_seq_len, stride=doc_stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    token_type_ids=enc["token_type_ids"])
    found, null = {}, []
    for w in range(enc["input_ids"].shape[0]):
        seq = enc.sequence_ids(w)
        ok = [i for i, s in enumerate(seq) if s == 1 or enc["input_ids"][w, i] == tok.cls_token_id]
        def probs(logits):
            x = logits[w].double().numpy()[ok]
            p = np.exp(x - x.max())
            return dict(zip(ok, p / p.sum()))
        ps, pe = probs(out.start_logits), probs(out.end_logits)
        null.append(ps[0] * pe[0])
        spans = sorted(((ps[s] * pe[e], s, e) for s in ok for e in ok
                        if s != 0 and e != 0 and s <= e < s + max_answer_len), reverse=True)
        for score, s, e in spans[:top_k]:  # each window proposes its top_k spans
            if align_to_words:
                a = enc.word_to_chars(w, enc.token_to_word(w, s), sequence_index=1).start
                b = enc.word_to_chars(w, enc.token_to_word(w, e), sequence_index=1).end
            else:
                a, b = enc["offset_mapping"][w, s, 0].item(), enc["offset_mapping"][w, e, 1].item()
            key = context[a:b].lower()
            if key in found:  # the same answer text proposed again adds up
                found[key]["score"] += score
            else:
                found[key] = {"score": score, "start": a, "end": b, "answer": context[a:b]}
    answers = list(found.values())
    if handle_impossible_answer:
        answers.append({"score": float(min(null)), "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: -x["score"])[:top_k]
    return answers[0] if len(answers) == 1 else answers


QA_CASES = [
    ("qa", {}),
    ("qa", {"top_k": 3}),
    ("qa", {"top_k": 2, "max_answer_len": 2, "align_to_words": False}),
    ("qa", {"handle_impossible_answer": True, "top_k": 2}),
    ("qa_short", {"doc_stride": 4, "top_k": 3}),
    ("qa_short", {"top_k": 4, "handle_impossible_answer": True}),
]


@pytest.mark.parametrize("ckpt,kwargs", QA_CASES)
def test_question_answering_oracle(ckpt, kwargs):
    folder = checkpoint(ckpt)
    expected = _oracle(folder, QUESTION, CONTEXT, **kwargs)
    pipe = km_pipeline("question-answering", ckpt)
    assert_same(pipe(question=QUESTION, context=CONTEXT, **kwargs), expected)


def test_question_answering_input_forms():
    pipe = km_pipeline("question-answering", "qa")
    one = pipe(QUESTION, CONTEXT)
    assert_same(pipe({"question": QUESTION, "context": CONTEXT}), one)
    many = pipe(question=[QUESTION, "who works at google?"], context=CONTEXT, batch_size=2)
    assert len(many) == 2
    assert_same(many[0], one)
    assert CONTEXT[many[1]["start"]:many[1]["end"]] == many[1]["answer"]
    with pytest.raises(km.pipelines.PipelineError, match="doc_stride"):
        pipe(QUESTION, CONTEXT, doc_stride=1000, max_seq_len=20)
    with pytest.raises(km.pipelines.PipelineError, match="'context'"):
        pipe({"question": QUESTION, "context": ""})
