"""Object detection (km.ObjectDetector): DETR, Table Transformer, Conditional DETR, Deformable DETR
and YOLOS against Transformers.

Each family: a tiny seeded ``...ForObjectDetection`` (weights of unit variance per fan-in, vectors
and frozen-BatchNorm buffers moved off 0/1, reloaded from its files) on a padded batch of two odd-
sized images (``pixel_mask`` zero on the second image's right and bottom margins); its logits,
boxes, decoder (YOLOS: encoder) last hidden state, DETR-likes' encoder last hidden state, and its
image processor's ``post_process_object_detection`` are recorded once and compared on every backend.
Options off their defaults, several per config:
  * DETR: ``auxiliary_loss`` (a LayerNorm between decoder layers), 2 decoder layers with 4 heads
    over a 2-head encoder, GELU, 7 queries, a 3-stage basic ResNet read at its 2nd stage;
  * Table Transformer: learned positions (under ``backbone.position_embedding``), a bottleneck
    ResNet with ``downsample_in_bottleneck``, pre-norm layers and the encoder's final LayerNorm;
  * Conditional DETR: learned positions (under ``position_embedding``), 2 decoder layers (the
    first-layer-only query positions), sigmoid logits (top-k post-processing);
  * Deformable DETR: 3 feature levels (two ResNet stages + one strided extra map), 3 encoder /
    2 decoder sampling points, 2 / 4 heads, sine positions with the half-cell offset; and again with
    box refinement (references become boxes after the first decoder layer) and learned positions, and
    two-stage (9 queries from the encoder's best proposals, padded tokens' proposals at +inf); its encoder
    state is compared on the tokens of real pixels only (on fully padded rows Transformers' sine
    angles reach ~1e6 radians, where float32 sin/cos differ between libraries);
  * YOLOS: mid-layer position embeddings, an input (42x57) unlike the config's image size (32x48)
    so that every position table is resized, gelu_new, LayerNorm eps 1e-6.
"""

import numpy as np
import pytest

from tests.parity import _key, assert_close, cached_folder

KINDS = ("detr", "table-transformer", "conditional_detr", "deformable_detr", "deformable_detr-refine",
         "deformable_detr-two-stage", "yolos")
TARGET_SIZES = [(50, 44), (37, 30)]
OUT_KEYS = ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state")


def _config(kind):
    import transformers as T

    resnet = dict(embedding_size=8, hidden_sizes=[16, 24, 12], depths=[1, 1, 1], layer_type="basic",
                  out_features=["stage2"])
    detr = dict(use_timm_backbone=False, d_model=16, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=20,
                decoder_ffn_dim=24, encoder_attention_heads=2, decoder_attention_heads=4, num_queries=7, num_labels=3)
    if kind == "detr":
        return T.DetrConfig(backbone_config=T.ResNetConfig(**resnet), auxiliary_loss=True,
                            activation_function="gelu", **detr)
    if kind == "table-transformer":
        bottleneck = dict(resnet, layer_type="bottleneck", hidden_sizes=[16, 32, 12], downsample_in_bottleneck=True)
        return T.TableTransformerConfig(backbone_config=T.ResNetConfig(**bottleneck),
                                        position_embedding_type="learned", **dict(detr, decoder_layers=1))
    if kind.startswith("deformable_detr"):
        levels = dict(resnet, out_features=["stage2", "stage3"])
        refine = dict(with_box_refine=True, position_embedding_type="learned") if kind.endswith("refine") else {}
        if kind.endswith("two-stage"):
            refine = dict(with_box_refine=True, two_stage=True, two_stage_num_proposals=9)
        return T.DeformableDetrConfig(backbone_config=T.ResNetConfig(**levels), num_feature_levels=3,
                                      encoder_n_points=3, decoder_n_points=2, **dict(detr, d_model=32), **refine)
    if kind == "conditional_detr":
        return T.ConditionalDetrConfig(backbone_config=T.ResNetConfig(**resnet), position_embedding_type="learned",
                                       **detr)
    return T.YolosConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                         image_size=[32, 48], patch_size=8, num_detection_tokens=5, num_labels=3,
                         hidden_act="gelu_new", layer_norm_eps=1e-6)


def _inputs(kind):
    rng = np.random.RandomState(0)
    if kind == "yolos":
        return {"pixel_values": rng.randn(2, 42, 57, 3).astype("float32")}
    mask = np.ones((2, 50, 44), "int64")
    mask[1, 37:], mask[1, :, 30:] = 0, 0  # the second image is 37x30, padded
    return {"pixel_values": rng.randn(2, 50, 44, 3).astype("float32"), "pixel_mask": mask}


def _randomize(model):
    """Linear / conv kernels ~N(0, 1/fan_in), tables ~N(0, 1), vectors and (frozen) BatchNorm
    buffers moved off their init."""
    import torch

    g = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g)
                if sum(d > 1 for d in p.shape) <= 1:
                    p.add_(0.2 * noise)
                elif name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    p.copy_(noise * int(np.prod(p.shape[1:])) ** -0.5)
                else:
                    p.copy_(noise)
            for name, b in module.named_buffers(recurse=False):
                if name == "running_var":
                    b.mul_(torch.rand(b.shape, generator=g) + 0.5)
                elif name in ("running_mean", "weight", "bias"):
                    b.add_(0.2 * torch.randn(b.shape, generator=g))
    return model


def _hf_class(kind):
    import transformers as T

    return {"detr": T.DetrForObjectDetection, "table-transformer": T.TableTransformerForObjectDetection,
            "conditional_detr": T.ConditionalDetrForObjectDetection,
            "deformable_detr": T.DeformableDetrForObjectDetection, "yolos": T.YolosForObjectDetection,
            "deformable_detr-refine": T.DeformableDetrForObjectDetection,
            "deformable_detr-two-stage": T.DeformableDetrForObjectDetection}[kind]


def _hf_run(model, kind):
    import torch

    inputs = _inputs(kind)
    torch_in = {"pixel_values": torch.tensor(inputs["pixel_values"].transpose(0, 3, 1, 2))}
    if "pixel_mask" in inputs:
        torch_in["pixel_mask"] = torch.tensor(inputs["pixel_mask"])
    with torch.no_grad():
        return model(**torch_in)


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = _randomize(_hf_class(kind)(_config(kind)).eval())
        model.save_pretrained(tmp / "model")
        model = _hf_class(kind).from_pretrained(tmp / "model").eval()
        out = _hf_run(model, kind)
        expected = {k: getattr(out, k).numpy() for k in OUT_KEYS if getattr(out, k, None) is not None}
        proc = {"conditional_detr": T.ConditionalDetrImageProcessor, "yolos": T.YolosImageProcessor,
                "deformable_detr": T.DeformableDetrImageProcessor,
                "deformable_detr-refine": T.DeformableDetrImageProcessor,
                "deformable_detr-two-stage": T.DeformableDetrImageProcessor}.get(
            kind, T.DetrImageProcessor)()
        for i, r in enumerate(proc.post_process_object_detection(out, threshold=0.0, target_sizes=TARGET_SIZES)):
            for k, v in r.items():
                expected[f"post{i}_{k}"] = v.numpy()
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"detection-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _real_tokens(inputs):
    """(batch, tokens) 1 where a Deformable DETR encoder token covers real pixels: the pixel mask
    at each level's grid, nearest as PyTorch picks it (levels: the ResNet's stride-8 and -16 maps
    and a stride-2 conv of the latter, sizes as its convolutions round them)."""
    mask = inputs["pixel_mask"]

    def down(n):  # a 3x3 (or 7x7, 3x3 pool) stride-2 step with PyTorch's symmetric padding
        return (n - 1) // 2 + 1

    h, w = down(down(mask.shape[1])), down(down(mask.shape[2]))  # stem conv + max pool (stage 1: stride 1)
    levels = []
    for _ in range(3):
        h, w = down(h), down(w)
        levels.append((h, w))
    out = []
    for h, w in levels:
        rows = np.floor(np.arange(h, dtype=np.float32) * np.float32(mask.shape[1] / h)).astype(int)
        cols = np.floor(np.arange(w, dtype=np.float32) * np.float32(mask.shape[2] / w)).astype(int)
        out.append(mask[:, rows][:, :, cols].reshape(len(mask), -1))
    return np.concatenate(out, axis=1)


def _run(model, inputs):
    """Outputs as numpy: one compiled program under JAX (op-by-op dispatch compiles every op on its
    own: several times slower here), eager elsewhere (tracing a tf.function costs more than it saves)."""
    import keras

    out = model.predict_on_batch(inputs) if keras.backend.backend() == "jax" else model(inputs)
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_detection_parity_and_post_processing(kind, tmp_path):
    import keras

    import keras_models as km

    folder, expected = reference(kind)
    model = km.ObjectDetector.from_preset(folder)
    assert model.head_from_checkpoint and model.num_classes == 3
    inputs = _inputs(kind)
    out = _run(model, inputs)
    keys = [k for k in OUT_KEYS if k in expected]
    assert sorted(out) == sorted(keys)
    for k in keys:
        mask = (_real_tokens(inputs) if kind in ("deformable_detr", "deformable_detr-two-stage")
                and k == "encoder_last_hidden_state" else None)
        assert_close(out[k], expected[k], mask=mask, what=f"{kind} {k}")

    # Transformers' post-processing, exactly on its own outputs and closely on ours
    for source, atol in ((expected, 1e-6), (out, 1e-4)):
        got = model.post_process_object_detection({k: source[k] for k in ("logits", "pred_boxes")},
                                                  threshold=0.0, target_sizes=TARGET_SIZES)
        for i, r in enumerate(got):
            np.testing.assert_array_equal(r["labels"], expected[f"post{i}_labels"])
            np.testing.assert_allclose(r["scores"], expected[f"post{i}_scores"], atol=atol)
            np.testing.assert_allclose(r["boxes"], expected[f"post{i}_boxes"], atol=atol * 64)

    if keras.backend.backend() != "torch":
        return
    # backend-independent, once: our export reloads through from_preset with the same outputs
    model.save_to_preset(tmp_path / "saved")
    again = km.ObjectDetector.from_preset(tmp_path / "saved")
    assert type(again) is type(model)
    assert_close(_run(again, inputs)["pred_boxes"], expected["pred_boxes"], what=f"{kind} save_to_preset reload")
    if kind in ("conditional_detr", "deformable_detr-refine"):  # the most layered: a .keras file brings them back
        from tests.parity import assert_keras_round_trip

        assert_keras_round_trip(model, inputs, tmp_path)


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """Our exports load in Transformers with the same outputs (no Keras computation: under
    tools/test.sh in one pass only)."""
    import json

    import keras_models as km

    for kind in KINDS:
        folder, expected = reference(kind)
        model = km.ObjectDetector.from_preset(folder)
        model.save_to_preset(tmp_path / kind)
        saved = json.loads((tmp_path / kind / "config.json").read_text())
        spec_cls = type(model.backbone).spec_cls
        assert spec_cls.from_hf(saved) == spec_cls.from_hf(json.loads((folder / "config.json").read_text()))
        out = _hf_run(_hf_class(kind).from_pretrained(tmp_path / kind).eval(), kind)
        for k in ("logits", "pred_boxes"):
            assert_close(getattr(out, k).numpy(), expected[k], what=f"{kind} transformers reload {k}")


def test_config_and_input_errors(tmp_path):
    """Unsupported backbones and bad inputs fail naming the key / argument (cheap: runs in every pass)."""
    import keras_models as km
    from keras_models.errors import ConfigError, InputError
    from keras_models.models.detr import ConditionalDetrSpec, DetrSpec
    from keras_models.models.detr.deformable import DeformableDetrSpec

    # timm ResNets load (tests/vision/test_detection_timm.py); other timm backbones do not
    with pytest.raises(ConfigError, match="backbone='resnet50d' is not supported"):
        DetrSpec.from_hf({"model_type": "detr", "backbone": "resnet50d"})
    with pytest.raises(ConfigError, match="backbone_config.backbone=None is not supported"):
        ConditionalDetrSpec.from_hf({"backbone_config": {"model_type": "timm_backbone"}})
    with pytest.raises(ConfigError, match="use_timm_backbone"):
        DeformableDetrSpec.from_hf({"model_type": "deformable_detr", "backbone": "resnet50"})
    with pytest.raises(ConfigError, match="position_embedding_type"):
        DetrSpec.from_hf({"backbone_config": {"model_type": "resnet"}, "position_embedding_type": "rope"})
    with pytest.raises(ConfigError, match="out_features"):
        DetrSpec.from_hf({"backbone_config": {"model_type": "resnet", "out_features": ["stage9"]}})
    # Transformers' default backbone when none is given and timm is off: a ResNet-50 at its 4th stage
    assert DetrSpec.from_hf({"use_timm_backbone": False}).backbone_config["out_features"] == ["stage4"]

    folder, expected = reference("detr")
    model = km.ObjectDetector.from_preset(folder)
    with pytest.raises(InputError, match="pixel_values"):
        model({"pixel_mask": _inputs("detr")["pixel_mask"]})
    with pytest.raises(InputError, match="target_sizes"):
        model.post_process_object_detection(expected, target_sizes=[(1, 1)])


@pytest.mark.parametrize("kind,size", [("Detr", {"shortest_edge": 24, "longest_edge": 40}),
                                       ("Yolos", {"shortest_edge": 32, "longest_edge": 48}),
                                       ("ConditionalDetr", {"max_height": 30, "max_width": 36})])
def test_image_processor_matches_transformers(kind, size, tmp_path):
    """Resize (each size rule), rescale, normalise and pad + pixel_mask equal Transformers' PIL
    processors on a batch of three differently shaped images (numpy only, cheap: every pass)."""
    import shutil

    import transformers as T

    import keras_models as km
    from keras_models.models.detr.processor import DetrImageProcessor

    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, size=s, dtype=np.uint8) for s in ((30, 45, 3), (52, 20, 3), (40, 40, 3))]
    hf = getattr(T, f"{kind}ImageProcessorPil")(size=size)
    hf.save_pretrained(tmp_path)
    ref = hf(images=[im.transpose(2, 0, 1) for im in images], return_tensors="np", input_data_format="channels_first")
    ours = DetrImageProcessor.from_preset(tmp_path)(images)
    assert ours["pixel_values"].shape == ref["pixel_values"].transpose(0, 2, 3, 1).shape
    np.testing.assert_allclose(ours["pixel_values"], ref["pixel_values"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(ours["pixel_mask"], ref["pixel_mask"])
    if kind == "Detr":  # a checkpoint's processor becomes the detector's, and is saved with it
        folder, _ = reference("detr")
        shutil.copytree(folder, tmp_path / "ckpt")
        hf.save_pretrained(tmp_path / "ckpt")
        model = km.ObjectDetector.from_preset(tmp_path / "ckpt", load_weights=False)
        assert isinstance(model.preprocessor, DetrImageProcessor) and model.preprocessor.size == size
        model.save_to_preset(tmp_path / "saved")
        again = DetrImageProcessor.from_preset(tmp_path / "saved")(images)
        np.testing.assert_array_equal(again["pixel_values"], ours["pixel_values"])
