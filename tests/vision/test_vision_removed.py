"""Vision architectures removed from Transformers 5 (VAN, ViT Hybrid, EfficientFormer), against
references recorded with Transformers 4.57.1 (tests/vision/removed_golden/record.py: a tiny seeded
checkpoint + inputs and outputs per family; no Transformers model is built here). Each family: the
classifier's logits through the public ``from_preset`` on every backend; in the torch pass also the
backbone's output and a ``save_to_preset`` reload with equal logits (Transformers 5 cannot load
these checkpoints)."""

from pathlib import Path

import keras
import numpy as np

import keras_models as km
from tests.parity import assert_close, assert_keras_round_trip
from tests.vision.test_vision_hier import backbone_output
from tests.vision.vision_parity import hf_hidden_to_ours, run

GOLDEN = Path(__file__).parent / "removed_golden"


def _check(name, tmp_path, hidden=None):
    data = dict(np.load(GOLDEN / f"{name}.npz"))
    x = data["pixel_values"]
    model = km.ImageClassifier.from_preset(GOLDEN / name)
    assert model.head_from_checkpoint
    assert_close(run(model, x), data["logits"], what=f"{name} logits")
    if keras.backend.backend() == "torch":  # eager torch is cheap; see tests/vision/test_vision_hier.py
        assert_close(backbone_output(model, x, hidden), hf_hidden_to_ours(data["hidden"]), what=f"{name} hidden")
        model.save_to_preset(tmp_path / "preset")
        again = km.ImageClassifier.from_preset(tmp_path / "preset")
        assert_close(run(again, x), data["logits"], what=f"{name} save_to_preset reload")
    return model


def test_van(tmp_path):
    # odd image size (22x26), layer scale 0.3, gelu_new; the unused final layernorm is ignored
    _check("van", tmp_path)


def test_vit_hybrid(tmp_path):
    # a 3-stage BiT (bottleneck, SAME padding) whose 2nd stage feeds the ViT through 2x2 patches
    model = _check("vit_hybrid", tmp_path)
    assert model.backbone.bit_out_stage == 1
    if keras.backend.backend() == "torch":  # the unused 3rd BiT stage must be built on a .keras reload too
        assert_keras_round_trip(model, {"pixel_values": np.load(GOLDEN / "vit_hybrid.npz")["pixel_values"]}, tmp_path)


def test_efficientformer(tmp_path):
    # the distillation-head variant; two 3D (attention) blocks after one 4D block in the last stage
    model = _check("efficientformer", tmp_path)
    assert model.distilled
