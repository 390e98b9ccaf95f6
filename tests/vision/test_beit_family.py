"""BEiT, DiT and Data2Vec-Vision: relative position bias (per layer / shared / none), layer scale,
absolute positions or not, mean pooling or [CLS], a mask token in the weights (DiT); native and
interpolated resolutions."""

import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, pixels, run, vision_reference

COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              image_size=32, patch_size=8, num_labels=3)


def _beit(cls):
    import transformers

    cfg = transformers.BeitConfig(use_relative_position_bias=True, layer_scale_init_value=0.3, **COMMON)
    return getattr(transformers, cls)(cfg)


def _beit_shared_abs(cls):
    import transformers

    cfg = transformers.BeitConfig(use_shared_relative_position_bias=True, use_absolute_position_embeddings=True,
                                  use_mean_pooling=False, layer_scale_init_value=0.0, layer_norm_eps=1e-6,
                                  **COMMON)
    return getattr(transformers, cls)(cfg)


def _data2vec(cls):
    import transformers

    cfg = transformers.Data2VecVisionConfig(use_relative_position_bias=True,
                                            use_shared_relative_position_bias=True, **COMMON)
    return getattr(transformers, cls)(cfg)


def _dit(cls):
    """DiT (microsoft/dit-*): BEiT with absolute positions, no relative bias, layer scale, mean pooling,
    a mask token in the weights (use_mask_token, from its masked-image pre-training)."""
    import transformers

    cfg = transformers.BeitConfig(use_absolute_position_embeddings=True, use_relative_position_bias=False,
                                  use_shared_relative_position_bias=False, layer_scale_init_value=0.1,
                                  use_mean_pooling=True, use_mask_token=True, **COMMON)
    return getattr(transformers, cls)(cfg)


FAMILIES = {"beit": (_beit, "Beit"), "beit_shared_abs": (_beit_shared_abs, "Beit"),
            "data2vec": (_data2vec, "Data2VecVision"), "dit": (_dit, "Beit")}


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["Model", "ForImageClassification"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parity(family, head):
    resolution = "native" if head.endswith("Model") else "other"
    builder, prefix = FAMILIES[family]
    h, w = (32, 32) if resolution == "native" else (48, 40)
    x = pixels(2, h, w)
    extra = {"interpolate_pos_encoding": True} if resolution == "other" else {}
    folder, expected = vision_reference(f"{family}-{head}", lambda: builder(prefix + head), x, **extra)
    if head == "Model":
        model = km.Backbone.from_preset(folder)
        assert_close(run(model, x), expected["last_hidden_state"], what=f"{family} {resolution}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_task_close(model, x, expected, what=f"{family} {resolution}")
