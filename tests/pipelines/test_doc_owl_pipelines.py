"""zero-shot-object-detection with OWLv2 (and its numpy image processor) and
document-question-answering with LayoutLMv3-style checkpoints, against Transformers 5's pipelines
and image processors on the same tiny checkpoints.

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.parity import hf_reference
from tests.pipelines.refs import VOCAB, _tokenizer_saver, assert_same, hf_pipeline_outputs

pytestmark = pytest.mark.backend_independent


# --- OWLv2 image processor ----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"size": {"height": 32, "width": 32}},
                                     {"size": {"height": 24, "width": 40}, "image_mean": [0.5, 0.4, 0.3]},
                                     {"size": {"height": 64, "width": 64}, "resample": 0},
                                     {"size": {"height": 30, "width": 30}, "do_pad": False}])
def test_owlv2_image_processor_matches_transformers(options, tmp_path):
    """Pad to a square, Gaussian anti-aliasing + linear zoom (scipy's, mirrored edges), normalise:
    Transformers' pixel_values (channels last) for shrinking, enlarging and non-square sizes."""
    import transformers as T

    from keras_models.preprocessing.image import ImageProcessor

    T.Owlv2ImageProcessor(**options).save_pretrained(tmp_path)
    hf = T.AutoImageProcessor.from_pretrained(tmp_path)
    ours = ImageProcessor.from_preset(tmp_path)
    assert type(ours).__name__ == "Owlv2ImageProcessor"
    rng = np.random.RandomState(3)
    for shape in [(40, 56), (30, 30), (57, 13), (7, 5), (100, 120)]:
        image = rng.randint(0, 255, size=shape + (3,), dtype=np.uint8)
        theirs = hf(images=[image], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        np.testing.assert_allclose(ours([image])["pixel_values"][0], theirs, atol=1e-5, err_msg=str(shape))


# --- zero-shot-object-detection (OWLv2) ----------------------------------------------------------------
def _owlv2():
    import transformers as T

    text = dict(vocab_size=len(VOCAB) + 8, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return T.Owlv2ForObjectDetection(T.Owlv2Config(text_config=text, vision_config=vision, projection_dim=16))


def _owlv2_extras(folder, model):
    import transformers as T
    from PIL import Image

    _tokenizer_saver(16)(folder, model)
    T.Owlv2ImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    rng = np.random.RandomState(0)
    for i, size in enumerate([(40, 56), (50, 30)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(folder / f"img{i}.png")


def owlv2_checkpoint():
    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64"),
              "pixel_values": np.zeros((1, 3, 32, 32), "float32")}
    folder, _ = hf_reference("pipe-owlv2", _owlv2, inputs, extra_save=_owlv2_extras, seed=11)
    return folder


def test_zero_shot_object_detection_owlv2_matches_transformers():
    folder = owlv2_checkpoint()
    imgs = [str(folder / "img0.png"), str(folder / "img1.png")]
    calls = [([imgs[0]], {"candidate_labels": ["cat", "dog"]}),
             ([imgs[1]], {"candidate_labels": "cat,the mat,paris", "threshold": 0.3, "top_k": 5}),
             ([imgs[1]], {"candidate_labels": ["hello world"], "threshold": 0.0, "top_k": 4})]
    expected = hf_pipeline_outputs("zero-shot-object-detection", folder, calls)
    assert any(len(e) > 0 for e in expected[:2])
    pipe = km.pipeline("zero-shot-object-detection", model=folder)
    assert type(pipe.image_processor).__name__ == "Owlv2ImageProcessor"
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"zero-shot-object-detection owlv2 {kwargs}")
    with pytest.raises(PipelineError, match="Owlv2ImageProcessor"):
        from keras_models.preprocessing.image import ImageProcessor

        pipe.model.preprocessor.image_processor = ImageProcessor(image_processor_type="OwlViTImageProcessor")
        type(pipe)(pipe.model)
