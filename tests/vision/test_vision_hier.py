"""Hierarchical / hybrid vision families (issue 17) against tiny random Transformers models: the
classifier's logits (one compiled program) on every backend; in the torch pass also the
backbone's last hidden state (eager) and Transformers reloading the ``save_to_preset`` output with
equal logits. CI time: under jax / tensorflow a second compiled program per family (for the
hidden state) doubled each test (one program returning both, fourfold), so that check of the
backends' shared keras.ops code runs once."""

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close
from tests.vision.vision_parity import hf_hidden_to_ours, perturb_buffers, pixels, run, vision_reference


def backbone_output(model, x, hidden=None):
    """The backbone's output (or ``hidden(backbone, inputs)``) on pixel_values ``x``, run eagerly:
    called in the torch pass only (eager torch is cheap; see the module docstring)."""
    inputs = {"pixel_values": x}
    fn = hidden if callable(hidden) else (lambda bb, inputs: bb(inputs))
    return keras.ops.convert_to_numpy(fn(model.backbone, inputs))


def _check(name, build, x, tmp_path, hidden=True):
    """Logits of the classifier on every backend; in the torch pass also the backbone's output (or
    ``hidden(backbone, inputs)``) against the last of Transformers' hidden states, and the saved
    preset reloaded by Transformers."""
    folder, expected = vision_reference(name, build, x, output_hidden_states=True)
    model = km.ImageClassifier.from_preset(folder)
    assert model.head_from_checkpoint
    assert_close(run(model, x), expected["logits"], what=f"{name} logits")
    if hidden and keras.backend.backend() == "torch":
        assert_close(backbone_output(model, x, hidden), hf_hidden_to_ours(expected["last_hidden_state"]),
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
    model = _check("pvt", _pvt, pixels(2, 32, 32), tmp_path)
    if keras.backend.backend() == "torch":  # position embeddings are learned for image_size
        with pytest.raises(InputError, match="pixel_values.*image_size 32"):
            model.backbone({"pixel_values": pixels(1, 48, 48)})


def _focalnet():
    import transformers

    cfg = transformers.FocalNetConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], focal_levels=[2, 3], focal_windows=[3, 1],
        mlp_ratio=2.0, use_conv_embed=True, use_layerscale=True, layerscale_value=0.5, use_post_layernorm=True,
        use_post_layernorm_in_modulation=True, normalize_modulator=True, num_labels=3)
    return transformers.FocalNetForImageClassification(cfg)


def _last_stage_tokens(bb, inputs):
    m = bb.feature_maps(inputs)[-1]  # Transformers' last hidden state is the one before the final norm
    return keras.ops.reshape(m, (-1, m.shape[1] * m.shape[2], m.shape[3]))


def test_focalnet(tmp_path):
    # 30x30: padded to the patch size; use_conv_embed, post norms, layer scale, normalised modulator
    _check("focalnet", _focalnet, pixels(2, 30, 30), tmp_path, hidden=_last_stage_tokens)


def _mobilevitv2():
    import transformers

    cfg = transformers.MobileViTV2Config(
        width_multiplier=0.25, n_attn_blocks=[1, 1, 1], base_attn_unit_dims=[32, 48, 64], ffn_multiplier=3,
        expand_ratio=1.5, output_stride=16, hidden_act="gelu", num_labels=3)
    return perturb_buffers(transformers.MobileViTV2ForImageClassification(cfg))


def test_mobilevitv2(tmp_path):
    # 24x20: the first attention stage's 3x3 map does not divide into 2x2 patches (unfold drops the rest)
    _check("mobilevitv2", _mobilevitv2, pixels(2, 24, 20), tmp_path)


def _swiftformer():
    import transformers

    cfg = transformers.SwiftFormerConfig(
        depths=[2, 1, 2], embed_dims=[8, 8, 16], mlp_ratio=2, downsamples=[False, True, True], hidden_act="gelu_new",
        down_patch_size=2, down_stride=2, down_pad=0, layer_scale_init_value=0.5, batch_norm_eps=1e-4, num_labels=3)
    return perturb_buffers(transformers.SwiftFormerForImageClassification(cfg))


def test_swiftformer(tmp_path):
    # stage 0 -> 1 keeps its size (downsamples[0] False, same width: no embedding between them)
    _check("swiftformer", _swiftformer, pixels(2, 32, 28), tmp_path)


def _levit(cls):
    import transformers

    cfg = transformers.LevitConfig(
        image_size=48, patch_size=16, hidden_sizes=[16, 24, 32], num_attention_heads=[2, 3, 2], depths=[1, 1, 1],
        key_dim=[8, 4, 8], mlp_ratio=[2, 0, 3], attention_ratio=[2, 1, 2], num_labels=3)
    return perturb_buffers(getattr(transformers, cls)(cfg))


@pytest.mark.parametrize("cls", ["LevitForImageClassificationWithTeacher", "LevitForImageClassification"])
def test_levit(cls, tmp_path):
    # 3x3 tokens -> 2x2 -> 1x1; one stage without MLP; the distillation head variant (same shapes)
    model = _check(f"levit-{cls}", lambda: _levit(cls), pixels(2, 48, 48), tmp_path,
                   hidden=cls.endswith("Teacher"))
    assert model.distilled == cls.endswith("Teacher")


def test_config_errors():
    """Configs that Transformers' code cannot run (or that we do not implement) fail naming the key."""
    from keras_models.models.cvt import CvtBackbone
    from keras_models.models.levit import LevitBackbone

    with pytest.raises(ConfigError, match="qkv_projection_method"):
        CvtBackbone.config_kwargs({"depth": [1], "embed_dim": [8], "num_heads": [1], "qkv_projection_method": ["avg"]})
    with pytest.raises(ConfigError, match="depth.*3 stages|3 stages"):
        LevitBackbone.config_kwargs({"depths": [1, 1], "hidden_sizes": [8, 16]})
    with pytest.raises(ConfigError, match="out_features"):
        km.models.ViTHybridBackbone.config_kwargs({"backbone_config": {"depths": [1, 1], "out_features": ["stage5"]}})
