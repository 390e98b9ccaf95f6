"""Restoration / dense-prediction heads against Transformers: Swin2SR (super-resolution).

Each family: a tiny seeded Transformers model with non-default options, loaded through our public
``from_preset`` and compared in fp32 on the task output and the base model's last hidden state;
one ``*_reloads_in_transformers`` test per family (runs in one backend pass)."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close
from tests.vision.vision_parity import assert_task_close, run, run_with_hidden, vision_reference


# --- Swin2SR ---------------------------------------------------------------------------------------
def _swin2sr(kind):
    import transformers

    if kind == "shuffle_3conv":  # pixelshuffle x2 (the 2^n loop), 3conv residual, img_range 255, RGB mean
        cfg = dict(upsampler="pixelshuffle", upscale=2, resi_connection="3conv", img_range=255.0, depths=[2],
                   num_heads=[2], embed_dim=8, window_size=4, image_size=16, mlp_ratio=1.5,
                   hidden_act="gelu_new", layer_norm_eps=1e-6)
    elif kind == "nearest_gray":  # nearest+conv x4, 1 channel in and out (zero mean), no qkv bias
        cfg = dict(upsampler="nearest+conv", upscale=4, num_channels=1, depths=[2], num_heads=[2], embed_dim=8,
                   window_size=4, image_size=8, qkv_bias=False)
    elif kind == "direct_x2":  # pixelshuffledirect (lightweight SR): one conv + shuffle
        cfg = dict(upsampler="pixelshuffledirect", upscale=2, depths=[1], num_heads=[2], embed_dim=8, window_size=4,
                   image_size=8)
    elif kind == "restore_x1":  # no upsampler (restoration, upscale 1): input + conv of the features
        cfg = dict(upsampler="", upscale=1, depths=[1], num_heads=[2], embed_dim=8, window_size=4, image_size=8)
    else:  # pixelshuffle_aux x3 (the scale-3 path, bicubic input branch); window larger than the grid
        cfg = dict(upsampler="pixelshuffle_aux", upscale=3, depths=[2], num_heads=[2], embed_dim=8, window_size=8,
                   image_size=4, img_range=2.0)
    return transformers.Swin2SRForImageSuperResolution(transformers.Swin2SRConfig(**cfg))


SWIN2SR = {"shuffle_3conv": (12, 8, 3), "nearest_gray": (8, 12, 1), "aux_x3": (8, 16, 3), "direct_x2": (8, 12, 3),
           "restore_x1": (8, 12, 3)}


def _swin2sr_reference(kind):
    h, w, c = SWIN2SR[kind]
    x = np.random.RandomState(0).rand(2, h, w, c).astype("float32")

    def build():
        model = _swin2sr(kind)
        forward = model.forward
        model.forward = lambda **kw: {"logits": forward(**kw).reconstruction}  # tests/parity.py records logits
        return model

    folder, expected = vision_reference(f"swin2sr-{kind}", build, x)
    return x, folder, expected


# The upsamplers share the backbone: jax and tensorflow run one case each (rotating); torch runs
# all five (conftest one_case_per_pass).
@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["shuffle_3conv", "aux_x3", "nearest_gray", "direct_x2", "restore_x1"])
def test_swin2sr_parity(kind):
    import keras

    x, folder, expected = _swin2sr_reference(kind)
    model = km.ImageSuperResolution.from_preset(folder)
    assert model.head_from_checkpoint
    assert_task_close(model, x, expected, channels_last_logits=True, what=f"swin2sr {kind}")
    if kind == "shuffle_3conv" and keras.backend.backend() == "torch":
        # a size that is no multiple of the window (Transformers fails there): reflect-padded, run, cropped
        odd = model({"pixel_values": x[:, :10, :7]})
        assert tuple(odd.shape) == (2, 20, 14, 3)


def test_swin2sr_reloads_in_transformers(tmp_path):
    import json

    import torch
    import transformers

    from keras_models.models.swin2sr import Swin2SRImageProcessor

    x, folder, expected = _swin2sr_reference("shuffle_3conv")
    model = km.ImageSuperResolution.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.Swin2SRForImageSuperResolution.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).reconstruction.numpy()
    assert_close(out, expected["logits"], what="swin2sr transformers reload")
    # image processor: rescale + symmetric pad to the next multiple of size_divisor
    image = np.random.RandomState(1).randint(0, 256, (13, 16, 3)).astype(np.uint8)
    theirs = transformers.Swin2SRImageProcessorPil(size_divisor=4)(image, return_tensors="np")["pixel_values"]
    (tmp_path / "preset" / "preprocessor_config.json").write_text(json.dumps({"size_divisor": 4}))
    ours = Swin2SRImageProcessor.from_preset(tmp_path / "preset")(image)["pixel_values"]
    assert_close(ours, theirs.transpose(0, 2, 3, 1), atol=1e-6, what="swin2sr image processor")
    bad = json.loads((folder / "config.json").read_text())
    for key, value in (("upsampler", "bilinear"), ("use_absolute_embeddings", True), ("resi_connection", "2conv")):
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps({**bad, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.ImageSuperResolution.from_preset(tmp_path / key, load_weights=False)


# --- UperNet ---------------------------------------------------------------------------------------
def _upernet(kind):
    import transformers

    if kind == "convnext":  # four stages, auxiliary head with two convs + concat_input
        bb = transformers.ConvNextConfig(hidden_sizes=[4, 6, 8, 10], depths=[1, 1, 1, 1], hidden_act="gelu_new",
                                         out_features=["stage1", "stage2", "stage3", "stage4"])
        extra = dict(auxiliary_num_convs=2, auxiliary_concat_input=True, auxiliary_channels=5)
    else:  # Swin: the deepest map is smaller than the window (always partitioned), auxiliary_in_channels
        bb = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=4, depths=[1, 2, 1], num_heads=[1, 2, 2],
                                     window_size=4, out_features=["stage1", "stage2", "stage3"])
        extra = dict(auxiliary_in_channels=16, auxiliary_channels=3)
    cfg = transformers.UperNetConfig(backbone_config=bb, hidden_size=6, pool_scales=[1, 2, 3], num_labels=3, **extra)
    model = transformers.UperNetForSemanticSegmentation(cfg)
    forward = model.forward

    def with_aux(pixel_values, **kw):  # the auxiliary head's logits only feed Transformers' loss: record them
        import torch.nn.functional as F

        out = forward(pixel_values=pixel_values, **kw)
        aux = model.auxiliary_head(model.backbone(pixel_values).feature_maps)
        aux = F.interpolate(aux, size=pixel_values.shape[2:], mode="bilinear", align_corners=False)
        return {"logits": out.logits, "start_logits": aux}

    model.forward = with_aux
    return model


UPERNET = {"convnext": (32, 32), "swin": (32, 48)}


# The head is the same over both towers: jax and tensorflow run the Swin case only (torch both).
@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["swin", "convnext"])
def test_upernet_parity(kind):
    import keras

    x = np.random.RandomState(0).randn(2, *UPERNET[kind], 3).astype("float32")
    folder, expected = vision_reference(f"upernet-{kind}", lambda: _upernet(kind), x)
    model = km.SemanticSegmenter.from_preset(folder)
    assert model.head_from_checkpoint
    assert "last_hidden_state" not in expected  # Transformers' UperNet has no base model

    assert_close(run(model, x), expected["logits"].transpose(0, 2, 3, 1), what=f"upernet {kind}")
    if keras.backend.backend() == "torch":  # the same ConvModules as the decode head: one backend suffices
        aux = model.auxiliary_logits({"pixel_values": x})
        assert_close(aux, expected["start_logits"].transpose(0, 2, 3, 1), what=f"upernet {kind} auxiliary head")


def test_upernet_reloads_in_transformers(tmp_path):
    import json

    import torch
    import transformers

    x = np.random.RandomState(0).randn(2, *UPERNET["swin"], 3).astype("float32")
    folder, expected = vision_reference("upernet-swin", lambda: _upernet("swin"), x)
    model = km.SemanticSegmenter.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.UperNetForSemanticSegmentation.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits.numpy()
    assert_close(out, expected["logits"], what="upernet transformers reload")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("backbone_config", {"model_type": "resnet"}),
                       ("backbone_config", {**config["backbone_config"], "out_features": ["stem", "stage1"]})):
        bad = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.SemanticSegmenter.from_preset(bad, load_weights=False)


# --- ViTMatte --------------------------------------------------------------------------------------
def _vitmatte():
    import transformers

    # the feature map of a middle stage (out_features stage1 of 2), windowed + relative-position
    # blocks, two ConvStream levels, BatchNorm eps 1e-3
    bb = transformers.VitDetConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                   image_size=32, pretrain_image_size=32, patch_size=8, num_channels=4,
                                   window_block_indices=[0], window_size=2, use_relative_position_embeddings=True,
                                   out_features=["stage1"])
    cfg = transformers.VitMatteConfig(backbone_config=bb, hidden_size=8, convstream_hidden_sizes=[3, 4],
                                      fusion_hidden_sizes=[6, 5, 4], batch_norm_eps=1e-3)
    model = transformers.VitMatteForImageMatting(cfg)
    forward = model.forward

    def with_features(pixel_values, **kw):  # tests/parity.py records these names; the alphas hardly
        # move with the tower's weights (sigmoid of a small head), so its feature map is recorded too
        return {"logits": forward(pixel_values=pixel_values, **kw).alphas,
                "start_logits": model.backbone(pixel_values).feature_maps[-1]}

    model.forward = with_features
    return model


def _vitmatte_inputs():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 32, 48, 4).astype("float32")
    x[..., 3] = rng.randint(0, 3, (2, 32, 48)) / 2  # trimap channel
    return x


def test_vitmatte_parity():
    x = _vitmatte_inputs()
    folder, expected = vision_reference("vitmatte", _vitmatte, x)
    model = km.ImageMatting.from_preset(folder)
    assert model.head_from_checkpoint
    assert "last_hidden_state" not in expected  # Transformers' ViTMatte has no base model
    alphas, features = run_with_hidden(model, x)
    assert_close(alphas, expected["logits"].transpose(0, 2, 3, 1), what="vitmatte alphas")
    assert_close(features, expected["start_logits"].transpose(0, 2, 3, 1), what="vitmatte tower feature map")


def test_vitmatte_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    from keras_models.models.vitmatte import VitMatteImageProcessor

    x = _vitmatte_inputs()
    folder, expected = vision_reference("vitmatte", _vitmatte, x)
    model = km.ImageMatting.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.VitMatteForImageMatting.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).alphas.numpy()
    assert_close(out, expected["logits"], what="vitmatte transformers reload")
    # image processor: normalised image + rescaled trimap channel, zero-padded to a multiple of 32
    rng = np.random.RandomState(2)
    image = rng.randint(0, 256, (37, 20, 3)).astype(np.uint8)
    trimap = rng.choice([0, 128, 255], (37, 20)).astype(np.uint8)
    theirs = transformers.VitMatteImageProcessorPil()(image, trimaps=trimap, return_tensors="np")["pixel_values"]
    ours = VitMatteImageProcessor.from_config({})(image, trimap)["pixel_values"]
    assert ours.shape == (1, 64, 32, 4)
    assert_close(ours, theirs.transpose(0, 2, 3, 1), atol=1e-6, what="vitmatte image processor")


# --- ImageGPT --------------------------------------------------------------------------------------
def _imagegpt(head):
    import transformers

    cfg = transformers.ImageGPTConfig(vocab_size=17, n_positions=16, n_embd=16, n_layer=2, n_head=2, n_inner=24,
                                      layer_norm_epsilon=1e-4, num_labels=3)
    return getattr(transformers, head)(cfg)


def _imagegpt_inputs():
    return {"input_ids": np.random.RandomState(0).randint(0, 17, (2, 16)).astype("int64")}


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["ImageGPTForCausalImageModeling", "ImageGPTForImageClassification"])
def test_imagegpt_parity(head):
    from tests.parity import assert_backbone_close, hf_reference

    inputs = _imagegpt_inputs()
    folder, expected = hf_reference(f"imagegpt-{head}", lambda: _imagegpt(head), inputs)
    task = km.CausalLM if head.endswith("Modeling") else km.ImageClassifier
    model = task.from_preset(folder)
    assert model.head_from_checkpoint
    assert_close(model.predict_on_batch(inputs), expected["logits"], what=f"imagegpt {head}")
    assert_backbone_close(model, inputs, expected, what=f"imagegpt {head}")


def test_imagegpt_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    from keras_models.models.imagegpt import ImageGPTImageProcessor
    from tests.parity import hf_reference

    inputs = _imagegpt_inputs()
    head = "ImageGPTForCausalImageModeling"
    folder, expected = hf_reference(f"imagegpt-{head}", lambda: _imagegpt(head), inputs)
    model = km.CausalLM.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.ImageGPTForCausalImageModeling.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(inputs["input_ids"])).logits.numpy()
    assert_close(out, expected["logits"], what="imagegpt transformers reload")
    # image processor: resize, [-1, 1], nearest color cluster ids in raster order
    rng = np.random.RandomState(3)
    clusters = rng.uniform(-1, 1, (16, 3)).round(4)
    images = [rng.randint(0, 256, (9, 7, 3)).astype(np.uint8) for _ in range(2)]
    hf_proc = transformers.ImageGPTImageProcessorPil(clusters=clusters, size={"height": 4, "width": 4})
    theirs = hf_proc(images, return_tensors="np")["input_ids"]
    ours = ImageGPTImageProcessor.from_config(hf_proc.to_dict())(images)["input_ids"]
    np.testing.assert_array_equal(ours, theirs)


# --- MGP-STR ---------------------------------------------------------------------------------------
def _mgp_str():
    import transformers

    cfg = transformers.MgpstrConfig(image_size=[8, 16], patch_size=4, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, mlp_ratio=2.0, max_token_length=5, num_character_labels=7,
                                    num_bpe_labels=11, num_wordpiece_labels=9, qkv_bias=False, layer_norm_eps=1e-6)
    model = transformers.MgpstrForSceneTextRecognition(cfg)
    forward = model.forward

    def three(**kw):  # tests/parity.py records these names
        char, bpe, wp = forward(**kw).logits
        return {"logits": char, "start_logits": bpe, "end_logits": wp}

    model.forward = three
    return model


def test_mgp_str_parity():
    from tests.parity import assert_backbone_close

    x = np.random.RandomState(0).randn(2, 8, 16, 3).astype("float32")
    folder, expected = vision_reference("mgp-str", _mgp_str, x)
    model = km.SceneTextRecognizer.from_preset(folder)
    assert model.head_from_checkpoint
    out, hidden = run_with_hidden(model, x)
    for key, ref in (("char_logits", "logits"), ("bpe_logits", "start_logits"), ("wp_logits", "end_logits")):
        assert_close(out[key], expected[ref], what=f"mgp-str {key}")
    assert_backbone_close(model, None, expected, hidden=hidden, what="mgp-str")


def test_mgp_str_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    x = np.random.RandomState(0).randn(2, 8, 16, 3).astype("float32")
    folder, expected = vision_reference("mgp-str", _mgp_str, x)
    model = km.SceneTextRecognizer.from_preset(folder)
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.MgpstrForSceneTextRecognition.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        logits = hf(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits
    for out, ref in zip(logits, ("logits", "start_logits", "end_logits")):
        assert_close(out.numpy(), expected[ref], what=f"mgp-str transformers reload {ref}")
    with pytest.raises(km.errors.InputError, match="image_size"):
        model({"pixel_values": x[:, :, :12]})
