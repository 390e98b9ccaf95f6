"""NAT and DiNAT (neighborhood attention) against Transformers.

Transformers' NAT / DiNAT call NATTEN's natten2dqkrpb / natten2dav, which no NATTEN on PyPI with a
CPU build still has; the reference models run with the brute-force stand-in of
tests/vision/natten_reference.py (full attention + neighborhood mask), itself checked against
NATTEN where it is installed (``test_reference_against_natten``).

* DiNAT: live Transformers 5 references: DinatForImageClassification (dilations that make a
  stage map smaller than kernel x dilation, so it is padded; layer scale; gelu_new; eps 1e-6) and
  DinatBackbone feature maps (out_features stem + stage1 + stage3, kernel 5, an odd map length
  under dilation 2, no qkv bias), through the public ``from_preset`` on every backend.
* NAT (removed from Transformers 5): references recorded with 4.57.1
  (tests/vision/removed_golden/record_nat.py).
"""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, assert_keras_round_trip, hf_reference
from tests.vision import natten_reference
from tests.vision.vision_parity import pixels, run

GOLDEN = Path(__file__).parent / "removed_golden"


@pytest.fixture
def patched_dinat(monkeypatch):
    from transformers.models.dinat import modeling_dinat

    monkeypatch.setattr(modeling_dinat, "natten2dqkrpb", natten_reference.heads_first(natten_reference.natten2dqkrpb))
    monkeypatch.setattr(modeling_dinat, "natten2dav", natten_reference.heads_first(natten_reference.natten2dav))
    monkeypatch.setattr(modeling_dinat, "requires_backends", lambda *a, **k: None)


def _dinat(kind):
    import transformers

    if kind == "classifier":
        cfg = transformers.DinatConfig(embed_dim=8, depths=[2, 2, 1], num_heads=[2, 2, 4], kernel_size=3,
                                       dilations=[[1, 2], [2, 1], [1]], mlp_ratio=2.0, hidden_act="gelu_new",
                                       layer_norm_eps=1e-6, layer_scale_init_value=0.5, num_labels=3)
        return transformers.DinatForImageClassification(cfg)
    cfg = transformers.DinatConfig(embed_dim=8, depths=[2, 1, 1], num_heads=[1, 2, 2], kernel_size=5,
                                   dilations=[[2, 1], [1], [1]], qkv_bias=False,
                                   out_features=["stem", "stage1", "stage3"])
    return transformers.DinatBackbone(cfg)


def _nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _feature_maps(backbone, x):
    """``backbone.feature_maps`` as one compiled program."""
    inp = keras.Input(x.shape[1:])
    return keras.Model(inp, backbone.feature_maps({"pixel_values": inp})).predict_on_batch(x)


def test_dinat_classifier(patched_dinat):
    x = pixels(2, 40, 36)  # stem 10x9 -> 5x5 (< 3 x dilation 2: padded) -> 3x3
    folder, expected = hf_reference("dinat-classifier", lambda: _dinat("classifier"), {"pixel_values": _nchw(x)})
    model = km.ImageClassifier.from_preset(folder)
    assert model.head_from_checkpoint and type(model).__name__ == "DinatImageClassifier"
    assert_close(run(model, x), expected["logits"], what="dinat logits")
    if keras.backend.backend() == "torch":
        assert_close(model.backbone({"pixel_values": x}), expected["last_hidden_state"], what="dinat hidden")


def test_dinat_backbone_feature_maps(patched_dinat):
    x = pixels(2, 44, 40)  # stem 11x10: dilation 2 groups of 6 and 5 rows

    def save_maps(folder, model):
        import torch

        with torch.no_grad():
            maps = model(pixel_values=torch.from_numpy(_nchw(x))).feature_maps
        np.savez(folder / "feature_maps.npz", *[m.numpy().transpose(0, 2, 3, 1) for m in maps])

    folder, _ = hf_reference("dinat-backbone", lambda: _dinat("backbone"), {"pixel_values": _nchw(x)},
                             extra_save=save_maps)
    want = np.load(folder / "feature_maps.npz")
    model = km.Backbone.from_preset(folder)
    assert model.out_indices == (0, 1, 3) and model.final_norm is None
    maps = _feature_maps(model, x)
    assert len(maps) == 3
    for i, m in enumerate(maps):
        assert_close(m, want[f"arr_{i}"], what=f"dinat feature map {i}")


def test_nat(tmp_path):
    data = dict(np.load(GOLDEN / "nat.npz"))
    x = data["pixel_values"]
    model = km.ImageClassifier.from_preset(GOLDEN / "nat" / "ImageClassifier")
    assert model.head_from_checkpoint and type(model).__name__ == "NatImageClassifier"
    assert_close(run(model, x), data["logits"], what="nat logits")
    backbone = km.Backbone.from_preset(GOLDEN / "nat" / "Backbone")
    maps = _feature_maps(backbone, x)
    for i, m in enumerate(maps):
        assert_close(m, data[f"feature_map_{i}"], what=f"nat feature map {i}")
    if keras.backend.backend() == "torch":
        assert_close(model.backbone({"pixel_values": x}), data["hidden"], what="nat hidden")
        model.save_to_preset(tmp_path / "preset")
        again = km.ImageClassifier.from_preset(tmp_path / "preset")
        assert_close(run(again, x), data["logits"], what="nat save_to_preset reload")
        assert_keras_round_trip(model, {"pixel_values": x}, tmp_path)  # layer scale, neighborhood blocks
        (tmp_path / "bb").mkdir()
        assert_keras_round_trip(backbone, {"pixel_values": x}, tmp_path / "bb")  # feature norms, out_indices


def test_dinat_reloads_in_transformers(tmp_path, patched_dinat):
    import torch
    import transformers

    x = pixels(2, 44, 40)
    folder, _ = hf_reference("dinat-backbone", lambda: _dinat("backbone"), {"pixel_values": _nchw(x)})
    model = km.Backbone.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.DinatBackbone.from_pretrained(tmp_path / "preset").eval()
    assert hf.config.out_features == ["stem", "stage1", "stage3"] and hf.config.dilations == [[2, 1], [1], [1]]
    with torch.no_grad():
        maps = hf(pixel_values=torch.from_numpy(_nchw(x))).feature_maps
    want = np.load(folder / "feature_maps.npz")
    for i, m in enumerate(maps):
        assert_close(m.numpy().transpose(0, 2, 3, 1), want[f"arr_{i}"], what=f"transformers reload map {i}")


@pytest.mark.backend_independent
def test_bad_configs():
    from keras_models.models.dinat import DinatSpec, NatSpec

    base = dict(model_type="dinat", embed_dim=8, depths=[1, 1], num_heads=[1, 2], kernel_size=3,
                dilations=[[1], [2]])
    for change, key in ((dict(dilations=[[1, 2], [1]]), "dilations"), (dict(kernel_size=4), "kernel_size"),
                        (dict(num_heads=[3, 2]), "num_heads"), (dict(patch_size=2), "patch_size"),
                        (dict(out_features=["stage7"]), "out_features"), (dict(dilations=[[0], [1]]), "dilations")):
        with pytest.raises(ConfigError, match=key):
            DinatSpec.from_hf({**base, **change})
    assert DinatSpec.from_hf({"model_type": "dinat"}).dilations[0] == (1, 8, 1)  # Transformers' default
    assert NatSpec.from_hf({"model_type": "nat", "architectures": ["NatBackbone"]}).feature_norms


@pytest.mark.backend_independent
def test_reference_against_natten():
    """The brute-force stand-in against NATTEN itself (skipped where NATTEN is not installed):
    0.14's natten2dqkrpb / natten2dav (scores with relative bias, then values), or 0.21's
    ``na2d`` (no bias; heads-last layout)."""
    natten = pytest.importorskip("natten")
    import torch

    torch.manual_seed(0)
    cases = [(7, 8, 3, 2), (13, 11, 3, 3), (11, 10, 5, 2), (6, 7, 5, 1)]
    functional = natten.functional
    for h, w, k, d in cases:
        q, key, v = (torch.randn(2, 2, h, w, 8) for _ in range(3))
        if hasattr(functional, "natten2dqkrpb"):
            rpb = torch.randn(2, 2 * k - 1, 2 * k - 1)
            ours = natten_reference.natten2dqkrpb(q, key, rpb, k, d)
            theirs = functional.natten2dqkrpb(q, key, rpb, k, d)
            assert_close(ours.numpy(), theirs.numpy(), what=f"scores {h}x{w} k{k} d{d}")
            probs = theirs.softmax(-1)
            assert_close(natten_reference.natten2dav(probs, v, k, d).numpy(),
                         functional.natten2dav(probs, v, k, d).numpy(), what=f"values {h}x{w} k{k} d{d}")
        else:
            scores = natten_reference.natten2dqkrpb(q * 8 ** -0.5, key, None, k, d).softmax(-1)
            ours = natten_reference.natten2dav(scores, v, k, d).permute(0, 2, 3, 1, 4)
            theirs = functional.na2d(*(t.permute(0, 2, 3, 1, 4).contiguous() for t in (q, key, v)),
                                     kernel_size=k, dilation=d)
            assert_close(ours.numpy(), theirs.numpy(), what=f"na2d {h}x{w} k{k} d{d}")
