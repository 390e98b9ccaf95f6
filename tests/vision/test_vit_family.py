"""ViT, DeiT, ViT-MSN, DINOv2 (+ registers, SwiGLU): backbone and classifier parity at the
checkpoint resolution and at an interpolated one, under the current Keras backend."""

import keras
import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, pixels, run, vision_reference

COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8, num_labels=3)


def _vit(cls):
    import transformers

    cfg = transformers.ViTConfig(intermediate_size=37, layer_norm_eps=1e-6, hidden_act="gelu_new", **COMMON)
    return getattr(transformers, cls)(cfg)


def _vit_nobias(cls):
    import transformers

    cfg = transformers.ViTConfig(intermediate_size=20, qkv_bias=False, num_channels=2,
                                 **{**COMMON, "patch_size": 4, "image_size": 16})
    return getattr(transformers, cls)(cfg)


def _vit_msn(cls):
    import transformers

    return getattr(transformers, cls)(transformers.ViTMSNConfig(intermediate_size=37, **COMMON))


def _deit(cls):
    import transformers

    return getattr(transformers, cls)(transformers.DeiTConfig(intermediate_size=37, **COMMON))


def _dinov2(cls):
    import transformers

    cfg = transformers.Dinov2Config(mlp_ratio=2, layerscale_value=0.5, **COMMON)
    return getattr(transformers, cls)(cfg)


def _dinov2_swiglu(cls):
    import transformers

    cfg = transformers.Dinov2Config(use_swiglu_ffn=True, **COMMON)
    return getattr(transformers, cls)(cfg)


def _dinov2_reg(cls):
    import transformers

    cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=3, **COMMON)
    return getattr(transformers, cls)(cfg)


# name -> (builder, backbone class, classifier classes, needs interpolate flag, channels, size)
FAMILIES = {
    "vit": (_vit, "ViTModel", ["ViTForImageClassification"], True, 3, 32),
    "vit_nobias": (_vit_nobias, "ViTModel", ["ViTForImageClassification"], True, 2, 16),
    "vit_msn": (_vit_msn, "ViTMSNModel", ["ViTMSNForImageClassification"], True, 3, 32),
    "deit": (_deit, "DeiTModel", ["DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"],
             True, 3, 32),
    "dinov2": (_dinov2, "Dinov2Model", ["Dinov2ForImageClassification"], False, 3, 32),
    "dinov2_swiglu": (_dinov2_swiglu, "Dinov2Model", ["Dinov2ForImageClassification"], False, 3, 32),
    "dinov2_reg": (_dinov2_reg, "Dinov2WithRegistersModel",
                   ["Dinov2WithRegistersForImageClassification"], False, 3, 32),
}
# Backbones at the checkpoint resolution, classifiers at another one (interpolated positions);
# plain ViT both ways for both.
CASES = [(f, c, "native" if c == spec[1] else "other") for f, spec in FAMILIES.items()
         for c in [spec[1]] + spec[2]]
CASES += [("vit", "ViTModel", "other"), ("vit", "ViTForImageClassification", "native")]


@pytest.mark.parametrize("family,hf_cls,resolution", CASES)
def test_parity(family, hf_cls, resolution):
    builder, _, _, flag, channels, size = FAMILIES[family]
    h, w = (size, size) if resolution == "native" else (size + size // 2, size + size // 4)
    x = pixels(2, h, w, channels)
    extra = {"interpolate_pos_encoding": True} if flag and resolution == "other" else {}
    folder, expected = vision_reference(f"{family}-{hf_cls}", lambda: builder(hf_cls), x, **extra)
    if hf_cls.endswith("Model"):
        model = km.Backbone.from_preset(folder)
        assert_close(run(model, x), expected["last_hidden_state"], what=f"{family} {resolution}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_task_close(model, x, expected, what=f"{hf_cls} {resolution}")


def test_vit_feature_maps():
    folder, _ = vision_reference("dinov2_reg-Dinov2WithRegistersModel", lambda: _dinov2_reg("Dinov2WithRegistersModel"),
                                 pixels(2, 32, 32))
    model = km.Backbone.from_preset(folder)
    x = pixels(1, 48, 40)
    maps = model.feature_maps({"pixel_values": x}, out_indices=[0, 1])
    assert [tuple(m.shape) for m in maps] == [(1, 6, 5, 32)] * 2
    full = run(model, x)
    # the last block's map is the backbone output without [CLS] and the 3 registers
    want = keras.ops.convert_to_numpy(keras.ops.reshape(full[:, 4:], (1, 6, 5, 32)))
    assert_close(maps[1], want, atol=1e-6 * max(1.0, float(np.abs(want).max())), what="last map")
