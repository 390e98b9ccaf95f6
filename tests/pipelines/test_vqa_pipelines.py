"""visual-question-answering (ViLT classifier, BLIP generative answers) and
document-question-answering (LayoutLM with user word boxes, Donut) against Transformers'
pipelines on the same tiny checkpoints. visual-question-answering was removed from Transformers 5:
its outputs were recorded once with Transformers 4.57.1
(tests/pipelines/removed_golden/record_vqa.py); document-question-answering is compared with
Transformers 5 live.

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.pipelines.refs import assert_same

pytestmark = pytest.mark.backend_independent
GOLDEN = Path(__file__).parent / "removed_golden"


def _vqa_case(name):
    recorded = json.loads((GOLDEN / "vqa.json").read_text())
    folder = GOLDEN / "vqa"

    def path(x):
        if isinstance(x, list):
            return [path(v) for v in x]
        if isinstance(x, dict):
            return dict(x, image=path(x["image"]))
        return str(folder / f"{x}.png")

    return folder, recorded, path


def test_vqa_vilt_matches_transformers_4():
    folder, recorded, path = _vqa_case("vilt")
    pipe = km.pipeline("visual-question-answering", model=folder / "vilt")
    assert type(pipe.model).__name__ == "ViltQuestionAnswerer"
    rec = recorded["vilt"]
    for (image, question, kwargs), theirs in zip(rec["calls"], rec["outputs"]):
        args = (path(image),) if question is None else (path(image), question)
        assert_same(pipe(*args, **kwargs), theirs, path=f"vqa vilt {question} {kwargs}")
    # batched (images of two sizes padded together with their pixel_mask), image= / question= keywords
    image, question, kwargs = rec["calls"][2]
    assert_same(pipe(image=path(image), question=question, batch_size=2, **kwargs), rec["outputs"][2])
    from PIL import Image

    assert_same(pipe(Image.open(path("img0")), "where is the cat?"), rec["outputs"][0])
    with pytest.raises(PipelineError, match="question"):
        pipe(path("img0"))
    with pytest.raises(PipelineError, match="top_k"):
        pipe(path("img0"), "the cat", top_k=0)
    with pytest.raises(PipelineError, match="'question'"):
        pipe([{"image": path("img0"), "question": ""}])


def test_vqa_blip_generates_as_transformers_4():
    folder, recorded, path = _vqa_case("blip")
    pipe = km.pipeline("vqa", model=folder / "blip", max_new_tokens=recorded["blip_new_tokens"])
    assert type(pipe.model).__name__ == "BlipQuestionAnswering"
    rec = recorded["blip"]
    assert len({json.dumps(o) for o in rec["outputs"]}) > 1  # the answers differ between inputs
    for (image, question, kwargs), theirs in zip(rec["calls"], rec["outputs"]):
        args = (path(image),) if question is None else (path(image), question)
        assert_same(pipe(*args, **kwargs), theirs, path=f"vqa blip {question} {kwargs}")
    with pytest.raises(PipelineError, match="max_new_tokens"):
        pipe(path("img0"), "the cat", max_new_tokens=2, generate_kwargs={"max_new_tokens": 3})


# --- document-question-answering (Transformers 5, live) -----------------------------------------------
DOC_WORDS = ["john", "lives", "in", "paris", "mary", "works", "at", "google", "the", "cat", "sat", "on", "mat",
             "berlin", "city", "hello"]


def _word_boxes(n=len(DOC_WORDS)):
    rng = np.random.RandomState(2)
    out = []
    for i in range(n):
        x0, y0 = rng.randint(0, 900, size=2)
        out.append((DOC_WORDS[i % len(DOC_WORDS)], [int(x0), int(y0), int(x0) + 40, int(y0) + 20]))
    return out


def _layoutlm():
    import transformers as T
    from tests.pipelines.refs import VOCAB

    cfg = T.LayoutLMConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=64, max_2d_position_embeddings=1024)
    return T.LayoutLMForQuestionAnswering(cfg)


def layoutlm_checkpoint():
    from tests.parity import hf_reference
    from tests.pipelines.refs import _tokenizer_saver

    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64"),
              "bbox": np.array([[[0, 0, 0, 0], [10, 20, 30, 40], [50, 60, 70, 80], [1000] * 4]])}
    folder, _ = hf_reference("pipe-layoutlm-qa", _layoutlm, inputs, extra_save=_tokenizer_saver(32), seed=13)
    return folder


def test_document_qa_layoutlm_matches_transformers():
    from tests.pipelines.refs import hf_pipeline_outputs

    folder = layoutlm_checkpoint()
    boxes = _word_boxes()
    calls = [([None, "where does john live"], {"word_boxes": boxes}),
             ([None, "what is the city"], {"word_boxes": boxes, "top_k": 3, "max_answer_len": 2}),
             ([None, "who works at google?"], {"word_boxes": boxes, "top_k": 2, "handle_impossible_answer": True}),
             ([None, "the cat"], {"word_boxes": boxes[:5], "top_k": 4}),
             # a document longer than max_seq_len: windows overlapping by doc_stride
             ([None, "where"], {"word_boxes": _word_boxes(40), "top_k": 3, "max_seq_len": 24, "doc_stride": 8}),
             ([[{"image": None, "question": "who", "word_boxes": boxes},
                {"image": None, "question": "what city", "word_boxes": boxes[3:]}]], {"top_k": 2})]
    expected = hf_pipeline_outputs("document-question-answering", folder, calls)
    pipe = km.pipeline("document-question-answering", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"document-qa {args[1:]} {kwargs}")
    args, kwargs = calls[4]
    assert_same(pipe(*args, batch_size=3, **kwargs), expected[4])  # windows batched together
    with pytest.raises(PipelineError, match="pytesseract"):
        pipe(str(GOLDEN / "vqa" / "img0.png"), "where does john live")
    with pytest.raises(PipelineError, match="word_boxes"):
        pipe(None, "where", word_boxes=[("john", [1, 2, 3])])
    with pytest.raises(PipelineError, match="top_k"):
        pipe(None, "where", word_boxes=boxes, top_k=0)
