"""Vision models are plain Keras models: .keras save/load on every backend, save_to_preset round
trip that Transformers reloads, multi-scale feature maps, clear errors."""

import keras
import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.test_beit_family import _beit
from tests.vision.test_convnets import _convnext, _resnet
from tests.vision.test_swin import _swin
from tests.vision.vision_parity import pixels, run, vision_reference

CASES = {
    "beit": (lambda: _beit("BeitForImageClassification"), 32),
    "convnext": (lambda: _convnext("ConvNextForImageClassification"), 32),
    "resnet": (lambda: _resnet("ResNetForImageClassification"), 32),
    "swin": (lambda: _swin("SwinForImageClassification"), 32),
}


def _loaded(name):
    builder, size = CASES[name]
    x = pixels(2, size, size)
    folder, expected = vision_reference(f"saving-{name}", builder, x)
    return km.ImageClassifier.from_preset(folder), x, expected["logits"]


@pytest.mark.parametrize("name", ["beit", "resnet", "swin"])
def test_keras_file_and_preset_round_trip(name, tmp_path):
    model, x, want = _loaded(name)
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert_close(run(again, x), want, what=f"{name} .keras")
    model.save_to_preset(tmp_path / "preset")
    assert_close(run(km.ImageClassifier.from_preset(tmp_path / "preset"), x), want,
                 what=f"{name} preset")


def test_transformers_reloads_saved_preset(tmp_path):
    import torch
    import transformers

    model, x, want = _loaded("convnext")
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        got = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits.numpy()
    assert_close(got, want, what="transformers reload")


def test_feature_maps():
    model, x, _ = _loaded("convnext")
    maps = model.backbone.feature_maps({"pixel_values": x})
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 8), (2, 8, 8, 16)]
    assert_close(maps[-1], keras.ops.convert_to_numpy(model.backbone({"pixel_values": x})), atol=0, what="last map")
    swin, x, _ = _loaded("swin")
    assert [tuple(m.shape) for m in swin.backbone.feature_maps({"pixel_values": x})] == [(2, 8, 8, 8), (2, 4, 4, 16)]


def test_bad_pixel_values():
    model, x, _ = _loaded("swin")
    with pytest.raises(ValueError, match="channels"):
        model({"pixel_values": np.zeros((1, 32, 32, 5), "float32")})
