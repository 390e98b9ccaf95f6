"""image-classification and image-feature-extraction against Transformers' pipelines (tiny ViT)."""

import keras_models as km
from tests.pipelines.refs import assert_same, hf_pipeline_outputs, vit_checkpoint


def _images(folder):
    return [str(folder.parent / "images" / f"img{i}.png") for i in range(3)]


def test_image_classification_matches_transformers():
    folder = vit_checkpoint()
    imgs = _images(folder)
    calls = [([imgs[0]], {}), ([imgs], {"top_k": 2}), ([imgs[2]], {"function_to_apply": "sigmoid", "top_k": 3})]
    expected = hf_pipeline_outputs("image-classification", folder, calls)
    pipe = km.pipeline("image-classification", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"image-classification {kwargs}")
    assert_same(pipe(imgs, top_k=2, batch_size=3), expected[1])


def test_image_feature_extraction_matches_transformers():
    folder = vit_checkpoint()
    imgs = _images(folder)
    calls = [([imgs[1]], {}), ([imgs[:2]], {})]
    expected = hf_pipeline_outputs("image-feature-extraction", folder, calls)
    pipe = km.pipeline("image-feature-extraction", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path="image-feature-extraction")
