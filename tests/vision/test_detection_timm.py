"""DETR checkpoints with a timm ResNet backbone (``use_timm_backbone``, as facebook/detr-resnet-50),
against references recorded with Transformers 5.25 + timm (tests/vision/detr_timm_golden/record.py:
timm needs torchvision, which cannot be installed against this CPU torch).

Two cases: a bottleneck ResNet ("resnet50" blocks, sine positions, auxiliary_loss) and a basic one
("resnet18" blocks, learned positions), both narrower and shallower than the names say (the
library reads widths and depths from the checkpoint's tensors). Each is compared on a padded batch
of two images: logits, boxes, decoder and encoder last hidden states. Also: the config.json form
older hub checkpoints carry (``use_timm_backbone: true``, ``backbone: resnet50``, no
``backbone_config``) loads the same model; our export writes timm's tensor names and Transformers
5's ``timm_backbone`` config and reloads equal; a dilated or unknown timm backbone is refused.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close

GOLDEN = Path(__file__).parent / "detr_timm_golden"
KEYS = ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state")


def _check(model, want, what):
    out = model({"pixel_values": want["pixel_values"], "pixel_mask": want["pixel_mask"]})
    for key in KEYS:
        assert_close(out[key], want[key], what=f"{what} {key}")


@pytest.mark.parametrize("case", ["detr_resnet50", "detr_resnet18"])
def test_timm_resnet_detr_matches_the_recorded_reference(case):
    want = dict(np.load(GOLDEN / f"{case}.npz"))
    model = km.ObjectDetector.from_preset(GOLDEN / case)
    assert model.backbone.spec.timm_backbone["backbone"] == case.split("_")[1]
    _check(model, want, case)


def test_legacy_config_form_and_round_trip(tmp_path):
    case = "detr_resnet50"
    want = dict(np.load(GOLDEN / f"{case}.npz"))
    legacy = tmp_path / "legacy"
    shutil.copytree(GOLDEN / case, legacy)
    config = json.loads((legacy / "config.json").read_text())
    config.pop("backbone_config")
    config.update(use_timm_backbone=True, backbone="resnet50", dilation=False)
    (legacy / "config.json").write_text(json.dumps(config))
    model = km.ObjectDetector.from_preset(legacy)
    _check(model, want, "legacy config")

    model.save_to_preset(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["backbone_config"]["model_type"] == "timm_backbone"
    assert saved["backbone_config"]["backbone"] == "resnet50"
    from safetensors import safe_open

    with safe_open(tmp_path / "saved" / "model.safetensors", "numpy") as f:
        names = set(f.keys())
    with safe_open(GOLDEN / case / "model.safetensors", "numpy") as f:
        assert {n for n in f.keys() if ".conv_encoder." in n} <= names
    _check(km.ObjectDetector.from_preset(tmp_path / "saved"), want, "round trip")

    config["dilation"] = True
    (legacy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="dilated timm ResNet"):
        km.ObjectDetector.from_preset(legacy)
    config.update(dilation=False, backbone="resnet50d")
    (legacy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="backbone='resnet50d' is not supported"):
        km.ObjectDetector.from_preset(legacy)


def test_widths_come_from_the_name_without_a_checkpoint():
    config = json.loads((GOLDEN / "detr_resnet18" / "config.json").read_text())
    spec = km.models.DetrBackbone.spec_cls.from_hf(config, "memory")
    bb = spec.backbone_config
    assert (bb["layer_type"], bb["depths"], bb["hidden_sizes"]) == ("basic", [2, 2, 2, 2], [64, 128, 256, 512])
