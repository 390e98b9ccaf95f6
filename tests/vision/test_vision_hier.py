"""Hierarchical / hybrid vision families (issue 17): classifier logits and the backbone's last
map against tiny random Transformers models, on every backend; under torch, the
``save_to_preset`` output also reloads in Transformers with equal logits."""

import keras
import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close
from tests.vision.vision_parity import hf_hidden_to_ours, perturb_buffers, pixels, run, vision_reference


def _check(name, build, x, tmp_path, hidden=True, backbone_atol=1e-4):
    """Logits of the classifier and (``hidden``) the backbone's last map, then (torch pass) the
    saved preset reloaded by Transformers."""
    folder, expected = vision_reference(name, build, x, output_hidden_states=True)
    model = km.ImageClassifier.from_preset(folder)
    assert model.head_from_checkpoint
    assert_close(run(model, x), expected["logits"], what=f"{name} logits")
    if hidden:
        out = model.backbone.predict_on_batch({"pixel_values": x})
        assert_close(out, hf_hidden_to_ours(expected["last_hidden_state"]), atol=backbone_atol,
                     what=f"{name} last hidden state")
    if keras.backend.backend() == "torch":
        import torch
        import transformers

        model.save_to_preset(tmp_path / "preset")
        hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "preset").eval()
        with torch.no_grad():
            px = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            got = hf(pixel_values=px, output_hidden_states=True).logits.numpy()
        assert_close(got, expected["logits"], what=f"{name} transformers reload")
    return model


def _cvt(cls_token):
    import transformers

    cfg = transformers.CvtConfig(
        embed_dim=[8, 16], num_heads=[1, 2], depth=[1, 2], patch_sizes=[5, 3], patch_stride=[3, 2],
        patch_padding=[1, 1], mlp_ratio=[2.0, 3.0], qkv_bias=[False, True], cls_token=[False, cls_token],
        kernel_qkv=[3, 3], padding_kv=[1, 0], stride_kv=[2, 1], padding_q=[1, 1], stride_q=[1, 1], num_labels=3)
    return perturb_buffers(transformers.CvtForImageClassification(cfg))


def test_cvt(tmp_path):
    # the [CLS] token on the last stage only (as the released checkpoints have it)
    _check("cvt", lambda: _cvt(True), pixels(2, 26, 23), tmp_path)


def _pvt():
    import transformers

    cfg = transformers.PvtConfig(
        image_size=32, num_encoder_blocks=2, depths=[1, 2], sequence_reduction_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[4, 2], strides=[4, 2], num_attention_heads=[2, 2], mlp_ratios=[2, 3], hidden_act="gelu_new",
        layer_norm_eps=1e-5, qkv_bias=False, num_labels=3)
    return transformers.PvtForImageClassification(cfg)


def test_pvt(tmp_path):
    _check("pvt", _pvt, pixels(2, 32, 32), tmp_path)
