"""More vision families: Swin V2, SegFormer, MobileViT, ViTMAE (encoder), ViTDet. Backbone and
head parity at the checkpoint resolution and (where positions interpolate) at another one."""

import math

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import hf_hidden_to_ours, pixels, run, vision_reference


def _other(size):
    return size + size // 2, size + size // 4


# --- Swin V2 ----------------------------------------------------------------------------------
def _clamp_logit_scale(model):
    """Push one (shifted) block's logit scale past the clamp (log 100), so the clamp shows."""
    import torch

    base = getattr(model, "swinv2", model)
    with torch.no_grad():
        base.encoder.layers[0].blocks[1].attention.self.logit_scale[0] = math.log(150.0)
    return model


def _swinv2(cls):
    import transformers

    cfg = transformers.Swinv2Config(image_size=32, patch_size=4, embed_dim=8, depths=[2, 2], num_heads=[2, 4],
                                    window_size=4, num_labels=3, hidden_act="gelu_new")
    return _clamp_logit_scale(getattr(transformers, cls)(cfg))


def _swinv2_pretrained_ws(cls):
    import transformers

    # stage 1's 3x3 map (24/4/2) is smaller than the 4x4 window: window 3, no shift
    cfg = transformers.Swinv2Config(image_size=24, patch_size=4, embed_dim=12, depths=[2, 2], num_heads=[3, 3],
                                    window_size=4, pretrained_window_sizes=[3, 2], num_labels=2, qkv_bias=False,
                                    mlp_ratio=2.0, layer_norm_eps=1e-6)
    return getattr(transformers, cls)(cfg)


SWINV2 = {"swinv2": (_swinv2, 32), "swinv2_pws": (_swinv2_pretrained_ws, 24)}


@pytest.mark.parametrize("resolution", ["native", "other"])
@pytest.mark.parametrize("head", ["Swinv2Model", "Swinv2ForImageClassification"])
@pytest.mark.parametrize("family", sorted(SWINV2))
def test_swinv2(family, head, resolution):
    builder, size = SWINV2[family]
    x = pixels(2, *((size, size) if resolution == "native" else _other(size)))
    folder, expected = vision_reference(f"{family}-{head}", lambda: builder(head), x)
    if head == "Swinv2Model":
        model = km.Backbone.from_preset(folder)
        assert type(model).__name__ == "Swinv2Backbone"
        assert_close(run(model, x), expected["last_hidden_state"], what=f"{family} {resolution}")
    else:
        model = km.ImageClassifier.from_preset(folder)
        assert model.head_from_checkpoint
        assert_close(run(model, x), expected["logits"], what=f"{family} {resolution}")


# --- .keras and save_to_preset round trips (Transformers reloads the export) --------------------
ROUND_TRIP = {
    "swinv2": (lambda: _swinv2("Swinv2ForImageClassification"), (32, 32), km.ImageClassifier, "logits"),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_round_trip(name, tmp_path):
    import keras
    import torch
    import transformers

    builder, size, task, key = ROUND_TRIP[name]
    x = pixels(2, *size)
    folder, expected = vision_reference(f"{name}-round-trip", builder, x)
    model = task.from_preset(folder)
    model.save(tmp_path / "model.keras")
    assert_close(run(keras.saving.load_model(tmp_path / "model.keras"), x), expected[key], what=f"{name} .keras")
    model.save_to_preset(tmp_path / "preset")
    hf_cls = getattr(transformers, builder().__class__.__name__)
    hf = hf_cls.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        got = getattr(hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), key).numpy()
    assert_close(got, expected[key], what=f"{name} transformers reload")
