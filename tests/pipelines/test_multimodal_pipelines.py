"""zero-shot-object-detection, image-to-text, visual-question-answering and
document-question-answering against Transformers' pipelines on the same tiny checkpoints.

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
from tests.parity import hf_reference
from tests.pipelines.refs import VOCAB, _tokenizer_saver, assert_same, hf_pipeline_outputs

pytestmark = pytest.mark.backend_independent


def _save_images(folder, sizes):
    from PIL import Image

    rng = np.random.RandomState(0)
    images = folder.parent / "images"
    images.mkdir(exist_ok=True)
    for i, size in enumerate(sizes):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(images / f"img{i}.png")


def _images(folder, n=2):
    return [str(folder.parent / "images" / f"img{i}.png") for i in range(n)]


# --- zero-shot-object-detection (OWL-ViT) ------------------------------------------------------------
def _owlvit():
    import transformers as T

    text = dict(vocab_size=len(VOCAB) + 8, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return T.OwlViTForObjectDetection(T.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=16))


def _owlvit_extras(folder, model):
    import transformers as T

    _tokenizer_saver(16)(folder, model)
    T.OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}
                           ).save_pretrained(folder)
    _save_images(folder, [(40, 56), (30, 30)])


def owlvit_checkpoint():
    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64"),
              "pixel_values": np.zeros((1, 3, 32, 32), "float32")}
    folder, _ = hf_reference("pipe-owlvit", _owlvit, inputs, extra_save=_owlvit_extras, seed=11)
    return folder


def test_zero_shot_object_detection_matches_transformers():
    folder = owlvit_checkpoint()
    imgs = _images(folder)
    calls = [([imgs[0]], {"candidate_labels": ["cat", "dog"]}),
             ([imgs[1]], {"candidate_labels": "cat,the mat,paris", "threshold": 0.3, "top_k": 5}),
             ([imgs[0]], {"candidate_labels": ["hello world"], "threshold": 0.0, "top_k": 3}),
             ([[{"image": imgs[0], "candidate_labels": ["dog"]}, {"image": imgs[1], "candidate_labels": ["cat"]}]],
              {"threshold": 0.5})]
    expected = hf_pipeline_outputs("zero-shot-object-detection", folder, calls)
    assert any(len(e) > 0 for e in expected[:2])
    pipe = km.pipeline("zero-shot-object-detection", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"zero-shot-object-detection {kwargs}")
    # several images (Transformers' own check takes no paths here): one label list for all, or one per image
    assert_same(pipe(imgs, candidate_labels=[["dog"], ["cat"]], threshold=0.5), expected[3])
    assert_same(pipe(imgs, candidate_labels="dog", threshold=0.5)[0], expected[3][0])
    with pytest.raises(PipelineError, match="candidate_labels"):
        pipe(imgs[0])
    with pytest.raises(PipelineError, match="candidate_labels lists"):
        pipe(imgs, candidate_labels=[["dog"]])
    with pytest.raises(PipelineError, match="threshold"):
        pipe(imgs[0], candidate_labels=["cat"], threshold="high")


# --- image-to-text (removed from Transformers 5: outputs recorded once with 4.57.1) -------------------
GOLDEN = Path(__file__).parent / "removed_golden"


def test_image_to_text_matches_transformers_4():
    folder = GOLDEN / "image_to_text"
    recorded = json.loads((GOLDEN / "image_to_text.json").read_text())

    def path(x):
        return [path(v) for v in x] if isinstance(x, list) else str(folder / f"{x}.png")

    pipe = km.pipeline("image-to-text", model=folder / "model")
    for (arg, kwargs), theirs in zip(recorded["calls"], recorded["outputs"]):
        assert_same(pipe(path(arg), **kwargs), theirs, path=f"image-to-text {kwargs}")
    assert_same(pipe(path(["img0", "img1"]), max_new_tokens=5, batch_size=2), recorded["outputs"][1])
    with pytest.raises(PipelineError, match="max_new_tokens"):
        pipe(path("img0"), max_new_tokens=2, generate_kwargs={"max_new_tokens": 3})
