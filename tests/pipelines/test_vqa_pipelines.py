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
