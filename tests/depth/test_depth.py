"""Depth estimation: DPT (+ its segmentation head), Depth Anything, GLPN against Transformers.

Each family: a tiny seeded Transformers model with non-default options, loaded through
``km.DepthEstimator.from_preset`` and compared on ``predicted_depth`` (fp32, 1e-4); the
``save_to_preset`` output reloads in Transformers with equal outputs. One ``fit`` step (GLPN, the
SiLog default loss), input errors and refused configs. Image processors and post-processing:
tests/depth/test_depth_processors.py."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference, to_numpy
from tests.vision.vision_parity import perturb_buffers, pixels, run


def _lively(model, scale=0.3):
    """Unit-ish weights: Transformers' std-0.02 init makes every depth map nearly constant."""
    import torch

    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "position" in name or "token" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return perturb_buffers(model)


def _dpt():
    import transformers

    # readout "add", three neck stages with every kind of resize, BatchNorm residual units with
    # bias, head on the middle fused map
    cfg = transformers.DPTConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=24,
                                 image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2], readout_type="add",
                                 reassemble_factors=[4, 1, 0.5], neck_hidden_sizes=[6, 8, 10], fusion_hidden_size=12,
                                 use_batch_norm_in_fusion_residual=True, use_bias_in_fusion_residual=True,
                                 head_in_index=1, hidden_act="gelu_new", layer_norm_eps=1e-5)
    return _lively(transformers.DPTForDepthEstimation(cfg))


def _dpt_seg():
    import transformers

    cfg = transformers.DPTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                                 image_size=32, patch_size=8, backbone_out_indices=[0, 1], readout_type="project",
                                 reassemble_factors=[2, 1], neck_hidden_sizes=[8, 12], fusion_hidden_size=8,
                                 num_labels=3, use_auxiliary_head=True, qkv_bias=False)
    return _lively(transformers.DPTForSemanticSegmentation(cfg))


def _depth_anything(kind):
    import transformers

    if kind == "metric":
        backbone = dict(out_indices=[1, 2, 4], apply_layernorm=True)
        extra = dict(depth_estimation_type="metric", max_depth=7, reassemble_factors=[2, 1, 0.5], head_in_index=-1)
    else:  # relative; out_features instead of out_indices, no layer norm on the features, stem map
        backbone = dict(out_features=["stem", "stage2", "stage3"], apply_layernorm=False)
        extra = dict(depth_estimation_type="relative", max_depth=2, reassemble_factors=[4, 2, 1], head_in_index=1)
    bcfg = transformers.Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                                     image_size=16, patch_size=4, reshape_hidden_states=False, **backbone)
    cfg = transformers.DepthAnythingConfig(backbone_config=bcfg, patch_size=4, reassemble_hidden_size=16,
                                           neck_hidden_sizes=[6, 8, 10], fusion_hidden_size=12, head_hidden_size=5,
                                           **extra)
    return _lively(transformers.DepthAnythingForDepthEstimation(cfg))


def _glpn():
    import transformers

    # decoder width equal to the middle stage's: that stage has no 1x1 conv
    cfg = transformers.GLPNConfig(num_encoder_blocks=3, hidden_sizes=[8, 12, 16], depths=[1, 2, 1],
                                  sr_ratios=[4, 2, 1], patch_sizes=[7, 3, 3], strides=[4, 2, 2],
                                  num_attention_heads=[1, 2, 4], mlp_ratios=[2, 2, 2], decoder_hidden_size=12,
                                  max_depth=3, hidden_act="gelu_new")
    return _lively(transformers.GLPNForDepthEstimation(cfg))


# name -> (builder, (height, width), Transformers class, output key)
FAMILIES = {
    "dpt": (_dpt, (48, 48), "DPTForDepthEstimation", "predicted_depth"),
    "dpt_seg": (_dpt_seg, (32, 32), "DPTForSemanticSegmentation", "logits"),
    "depth_anything_metric": (lambda: _depth_anything("metric"), (28, 20), "DepthAnythingForDepthEstimation",
                              "predicted_depth"),
    "depth_anything_relative": (lambda: _depth_anything("relative"), (24, 32), "DepthAnythingForDepthEstimation",
                                "predicted_depth"),
    "glpn": (_glpn, (32, 48), "GLPNForDepthEstimation", "predicted_depth"),
}


def _reference(name):
    builder, size, _, _ = FAMILIES[name]
    x = pixels(2, *size)

    def build():
        model = builder()
        forward = model.forward

        def depth_as_logits(**kw):  # tests/parity.py records "logits"
            out = forward(**kw)
            return {"logits": out.predicted_depth if hasattr(out, "predicted_depth") else out.logits}

        model.forward = depth_as_logits
        return model

    folder, expected = hf_reference(f"depth-{name}", build, {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    return x, folder, expected["logits"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_parity_and_transformers_reload(name, tmp_path):
    import torch
    import transformers

    x, folder, want = _reference(name)
    _, _, hf_cls, key = FAMILIES[name]
    task = km.SemanticSegmenter if key == "logits" else km.DepthEstimator
    model = task.from_preset(folder)
    assert model.head_from_checkpoint
    got = run(model, x)
    if key == "logits":
        want = want.transpose(0, 2, 3, 1)  # channels_last logits
    assert float(np.std(want)) > 1e-2, "degenerate reference"
    assert_close(got, want, what=name)
    model.save_to_preset(tmp_path / "preset")
    hf = getattr(transformers, hf_cls).from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        out = getattr(hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), key).numpy()
    assert_close(out.transpose(0, 2, 3, 1) if key == "logits" else out, got, what=f"{name} transformers reload")
    if name.startswith("depth_anything"):  # the DINOv2 tower's feature maps (Transformers' backbone API)
        with torch.no_grad():
            maps = hf.backbone(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).feature_maps
        ours = model.backbone.feature_maps({"pixel_values": x})
        grids = model.backbone.feature_maps({"pixel_values": x}, reshape=True)
        assert len(ours) == len(maps) == 3
        for a, g, b in zip(ours, grids, maps):
            assert_close(a, b.numpy(), what=f"{name} feature map")
            assert_close(g, b.numpy()[:, 1:].reshape(g.shape), what=f"{name} channels_last map")
    if name == "glpn":  # its decoder needs sizes that halve exactly down to the last stage
        with pytest.raises(InputError, match="multiples of 16"):
            model({"pixel_values": pixels(1, 40, 48)})  # eager: TensorFlow retraces with unknown sizes


def test_fit_step_loss_and_pipeline():
    import keras
    import torch
    import transformers
    from transformers.models.glpn.modeling_glpn import SiLogLoss as HFSiLog

    from keras_models.tasks.depth_estimator import SiLogLoss

    x, folder, want = _reference("depth_anything_relative")
    model = km.DepthEstimator.from_preset(folder)
    target = np.random.RandomState(1).rand(*want.shape).astype("float32") + 0.5
    target[0, :2] = 0  # ignored pixels
    history = model.fit({"pixel_values": x}, target, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # the default loss equals Transformers' GLPN SiLogLoss
    pred = np.random.RandomState(2).rand(*want.shape).astype("float32") + 0.1
    ours = float(np.asarray(to_numpy(SiLogLoss()(target, pred))))
    theirs = float(HFSiLog()(torch.from_numpy(pred), torch.from_numpy(target)))
    assert abs(ours - theirs) < 1e-5
    with pytest.raises(InputError, match="rank 4"):
        model.predict(x[0])
    if keras.backend.backend() != "torch":
        return  # the pipeline is numpy around the model call, whose numerics are checked on every backend
    # depth-estimation pipeline equals Transformers' on the same model and image processor
    from keras_models.models.depth.processor import DepthImageProcessor

    hf_proc = transformers.DPTImageProcessorPil(size={"height": 24, "width": 32}, keep_aspect_ratio=True,
                                                ensure_multiple_of=4)
    image = np.random.RandomState(3).randint(0, 256, (37, 53, 3)).astype(np.uint8)
    hf_model = transformers.DepthAnythingForDepthEstimation.from_pretrained(folder).eval()
    from PIL import Image

    want = transformers.pipeline("depth-estimation", model=hf_model, image_processor=hf_proc)(Image.fromarray(image))
    fresh = km.DepthEstimator.from_preset(folder)  # the fit step above moved `model`'s weights
    pipe = km.pipeline("depth-estimation", model=fresh, image_processor=DepthImageProcessor.from_config(hf_proc.to_dict()))
    got = pipe(image)
    assert_close(got["predicted_depth"], want["predicted_depth"].numpy(), what="pipeline")
    assert np.abs(np.asarray(got["depth"], np.int16) - np.asarray(want["depth"], np.int16)).max() <= 1


def test_refused_configs(tmp_path):
    import json

    _, folder, _ = _reference("dpt")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("is_hybrid", True), ("backbone_config", {"model_type": "bit"})):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.DepthEstimator.from_preset(bad, load_weights=False)
