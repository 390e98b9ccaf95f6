"""Swin: shifted windows, padding to the window, patch merging, absolute positions; backbone and
classifier at the checkpoint resolution and another one."""

import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, pixels, run, vision_reference


def _swin(cls):
    import transformers

    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[2, 2], num_heads=[2, 4],
                                  window_size=4, num_labels=3, hidden_act="gelu_new")
    return getattr(transformers, cls)(cfg)


def _swin_abs(cls):
    import transformers

    cfg = transformers.SwinConfig(image_size=24, patch_size=3, embed_dim=12, depths=[1, 2], num_heads=[3, 3],
                                  window_size=4, num_labels=2, use_absolute_embeddings=True, qkv_bias=False,
                                  mlp_ratio=2.0, layer_norm_eps=1e-6)
    return getattr(transformers, cls)(cfg)


FAMILIES = {"swin": (_swin, 32), "swin_abs": (_swin_abs, 24)}


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["SwinModel", "SwinForImageClassification"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parity(family, head):
    resolution = "native" if head.endswith("Model") else "other"
    builder, size = FAMILIES[family]
    h, w = (size, size) if resolution == "native" else (size + size // 2, size + size // 4)
    x = pixels(2, h, w)
    extra = {"interpolate_pos_encoding": True} if resolution == "other" else {}
    folder, expected = vision_reference(f"{family}-{head}", lambda: builder(head), x, **extra)
    if head == "SwinModel":
        model = km.Backbone.from_preset(folder)
        assert_close(run(model, x), expected["last_hidden_state"], what=f"{family} {resolution}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_task_close(model, x, expected, what=f"{family} {resolution}")
