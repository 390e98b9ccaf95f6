"""MaskFormer (Swin and ResNet backbones) against Transformers: class / mask query logits, the pixel
decoder's and transformer decoder's states and every backbone / FPN map, from one compiled pass;
the image processor, the three post-processings, save_to_preset reloaded by Transformers, .keras."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import _key, _versions, assert_close, calibrate_batch_norms, cached_folder, randomize_weights

SIZE = (2, 56, 48, 3)  # an odd grid: 14 x 12 patches, windows padded, odd stage sizes


def _config(kind):
    import transformers as T

    if kind == "swin":  # the default tower (Transformers turns it into maskformer-swin), projection to d_model
        backbone = T.SwinConfig(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=4,
                                image_size=64, out_features=["stage1", "stage2", "stage3", "stage4"])
        decoder = T.DetrConfig(d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=48,
                               num_queries=5, encoder_layers=1)
        return T.MaskFormerConfig(backbone_config=backbone, decoder_config=decoder, fpn_feature_size=32,
                                  mask_feature_size=24, num_labels=3)
    # ResNet read at three stages whose last is d_model wide (no input projection); GELU decoder with
    # auxiliary_loss (a LayerNorm after every layer)
    backbone = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic",
                              out_features=["stage2", "stage3", "stage4"])
    decoder = T.DetrConfig(d_model=32, decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=40,
                           num_queries=6, encoder_layers=1, activation_function="gelu", auxiliary_loss=True)
    return T.MaskFormerConfig(backbone_config=backbone, decoder_config=decoder, fpn_feature_size=64,
                              mask_feature_size=16, num_labels=4)


def _inputs():
    x = np.random.RandomState(0).randn(*SIZE).astype("float32")
    mask = np.ones(SIZE[:3], "int64")
    mask[1, 40:, :] = 0  # a padded second image (Transformers ignores the mask)
    x[1, 40:, :] = 0
    return x, mask


def _reference(kind):
    x, mask = _inputs()
    inputs = {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "pixel_mask": mask}

    def build(tmp):  # Transformers and torch are imported only when the reference is built
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = T.MaskFormerForInstanceSegmentation(_config(kind)).eval()
        randomize_weights(model, 0)
        tensors = {k: torch.tensor(v) for k, v in inputs.items()}
        calibrate_batch_norms(model, tensors)
        model.save_pretrained(tmp / "model")
        with torch.no_grad():  # (output_hidden_states fails in Transformers with decoder auxiliary_loss)
            out = model(**tensors)
            pixel = model.model.pixel_level_module(tensors["pixel_values"], output_hidden_states=True)
        exp = {k: getattr(out, k).numpy() for k in ("class_queries_logits", "masks_queries_logits",
                                                   "transformer_decoder_last_hidden_state",
                                                   "pixel_decoder_last_hidden_state", "encoder_last_hidden_state")}
        for ours, name in (("encoder_hidden_states", "encoder_hidden_states"),
                           ("pixel_decoder_hidden_states", "decoder_hidden_states")):
            for i, h in enumerate(getattr(pixel, name)):
                exp[f"{ours}_{i}"] = h.numpy()
        np.savez(tmp / "expected.npz", **exp)

    import inspect
    import sys

    key = _key(f"maskformer-{kind}", inspect.getsource(sys.modules[__name__]), _versions())
    folder = cached_folder(key, build)
    return x, mask, folder / "model", dict(np.load(folder / "expected.npz"))


def _run(model, inputs):
    """(task outputs, backbone outputs) from one compiled pass (predict_on_batch)."""
    import keras

    task, backbone = model, model.backbone

    class _WithHidden(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.task = task

        def call(self, inputs):
            captured = []
            call = backbone.call

            def capture(*args, **kwargs):
                captured.append(call(*args, **kwargs))
                return captured[-1]

            backbone.call = capture
            try:
                out = task(inputs)
            finally:
                del backbone.call
            return out, {k: v for k, v in captured[0].items() if k.endswith("hidden_states")}

    wh = _WithHidden(name="with_hidden")
    wh.built = True
    return wh.predict_on_batch(inputs)


def _nhwc(a):
    return a.transpose(0, 2, 3, 1)


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["swin", "resnet"])
def test_maskformer_parity(kind):
    x, mask, folder, exp = _reference(kind)
    model = km.UniversalSegmenter.from_preset(folder)
    assert type(model).__name__ == "MaskFormerUniversalSegmenter" and model.head_from_checkpoint
    out, hidden = _run(model, {"pixel_values": x, "pixel_mask": mask})
    for k in ("class_queries_logits", "masks_queries_logits", "transformer_decoder_last_hidden_state"):
        assert_close(out[k], exp[k], what=f"{kind} {k}")
    for k in ("pixel_decoder_last_hidden_state", "encoder_last_hidden_state"):
        assert_close(out[k], _nhwc(exp[k]), what=f"{kind} {k}")
    for name in ("encoder_hidden_states", "pixel_decoder_hidden_states"):
        n = len([k for k in exp if k.startswith(name)])
        assert len(hidden[name]) == n, name
        for i in range(n):
            assert_close(hidden[name][i], _nhwc(exp[f"{name}_{i}"]), what=f"{kind} {name}[{i}]")


def _same_segments(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):  # scores: float32 softmax, 1 ulp apart at most
        assert {k: v for k, v in a.items() if k != "score"} == {k: v for k, v in b.items() if k != "score"}
        assert abs(a["score"] - b["score"]) <= 2e-6


@pytest.mark.backend_independent
def test_maskformer_post_processing():
    """Our numpy post-processing equals the image processor's on the reference's own outputs."""
    import torch
    import transformers as T
    from types import SimpleNamespace

    x, mask, folder, exp = _reference("swin")
    ours = {k: exp[k] for k in ("class_queries_logits", "masks_queries_logits")}
    # sharpen the classes so that queries pass the thresholds
    ours["class_queries_logits"] = ours["class_queries_logits"] * 3
    theirs = SimpleNamespace(**{k: torch.tensor(v) for k, v in ours.items()})
    proc = T.MaskFormerImageProcessor()
    cls = km.UniversalSegmenter
    sizes = [(30, 21), (17, 40)]
    for ts in (None, sizes):
        for a, b in zip(cls.post_process_semantic_segmentation(ours, target_sizes=ts),
                        proc.post_process_semantic_segmentation(theirs, target_sizes=ts)):
            np.testing.assert_array_equal(a, b.numpy())
        for threshold in (0.3, 0.6):
            got = cls.post_process_panoptic_segmentation(ours, threshold=threshold, target_sizes=ts,
                                                         label_ids_to_fuse={1})
            want = proc.post_process_panoptic_segmentation(theirs, threshold=threshold, target_sizes=ts,
                                                           label_ids_to_fuse={1})
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a["segmentation"], b["segmentation"].numpy())
                _same_segments(a["segments_info"], b["segments_info"])
        got = cls.post_process_instance_segmentation(ours, threshold=0.1, target_sizes=ts)
        want = proc.post_process_instance_segmentation(theirs, threshold=0.1, target_sizes=ts)
        for a, b in zip(got, want):  # Transformers' top-k is unsorted: the segments' order (and so which
            # overlapping segment owns a pixel) may differ, their classes and scores may not
            key = lambda s: (s["label_id"], round(s["score"], 5))  # noqa: E731
            assert sorted(map(key, a["segments_info"])) == sorted(map(key, b["segments_info"]))
            assert len(a["segments_info"]) > 0
            assert a["segmentation"].shape == tuple(b["segmentation"].shape)


@pytest.mark.backend_independent
@pytest.mark.parametrize("kind,size", [("MaskFormer", {"shortest_edge": 40, "longest_edge": 70}),
                                       ("Mask2Former", {"height": 50, "width": 45})])
def test_maskformer_image_processor_matches_transformers(kind, size, tmp_path):
    import transformers as T

    from keras_models.models.maskformer.processor import MaskFormerImageProcessor

    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (37, 61, 3), np.uint8), rng.randint(0, 256, (50, 29, 3), np.uint8)]
    hf = getattr(T, f"{kind}ImageProcessorPil")(size=size, size_divisor=16)
    hf.save_pretrained(tmp_path)
    want = hf(images, return_tensors="np")
    ours = MaskFormerImageProcessor.from_preset(tmp_path)(images)
    np.testing.assert_allclose(ours["pixel_values"], want["pixel_values"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(ours["pixel_mask"], want["pixel_mask"])


def test_maskformer_reloads_in_transformers(tmp_path):
    import shutil

    import torch
    import transformers as T

    from keras_models.models.maskformer.processor import MaskFormerImageProcessor

    x, mask, folder, exp = _reference("swin")
    shutil.copytree(folder, tmp_path / "with_processor")  # + the checkpoint's image processor
    T.MaskFormerImageProcessorPil(size={"shortest_edge": 40, "longest_edge": 64}).save_pretrained(
        tmp_path / "with_processor")
    model = km.UniversalSegmenter.from_preset(tmp_path / "with_processor")
    assert isinstance(model.preprocessor, MaskFormerImageProcessor) and model.preprocessor.size["shortest_edge"] == 40
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["architectures"] == ["MaskFormerForInstanceSegmentation"]
    assert T.AutoImageProcessor.from_pretrained(tmp_path / "saved").size["shortest_edge"] == 40
    hf = T.MaskFormerForInstanceSegmentation.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2)))
    for k in ("class_queries_logits", "masks_queries_logits"):
        assert_close(getattr(out, k).numpy(), exp[k], what=f"reloaded {k}")
    shutil.rmtree(tmp_path / "saved")


def test_maskformer_keras_round_trip_and_errors(tmp_path):
    import keras

    from tests.parity import assert_keras_round_trip

    x, mask, folder, exp = _reference("resnet")
    if keras.backend.backend() == "torch":  # the .keras file does not depend on the backend
        model = km.UniversalSegmenter.from_preset(folder)
        assert_keras_round_trip(model, {"pixel_values": x[:1]}, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    for change, word in ((dict(fpn_feature_size=48), "fpn_feature_size"),
                         (dict(use_auxiliary_loss=True), "use_auxiliary_loss"),
                         (dict(backbone_config={"model_type": "convnext"}), "backbone_config"),
                         (dict(backbone_config={**config["backbone_config"], "out_features": ["stage4"]}),
                          "out_features"),
                         (dict(decoder_config={**config["decoder_config"], "d_model": 33}), "d_model")):
        bad = tmp_path / word
        bad.mkdir(exist_ok=True)
        (bad / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=word):
            km.Backbone.from_preset(bad, load_weights=False)
