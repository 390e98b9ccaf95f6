"""Perceiver IO over images against tiny random Transformers models: the three image classifiers
(learned positions + 1x1 conv, Fourier features on pixels, conv + max-pool stem with BatchNorm)
and optical flow (two frames of patch features, the decoder querying with the preprocessed input):
logits / flow and the latents; a Transformers reload of ``save_to_preset``; the image processor
(crop, then resize) equal to Transformers'; bad inputs and configs."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import (assert_backbone_close, assert_close, assert_keras_round_trip, hf_reference, jit_under_jax,
                          to_numpy)

COMMON = dict(attention_probs_dropout_prob=0.0, num_labels=3)
# learned positions: GELU, q/k of the cross-attention from the 512 input channels, 2 blocks
LEARNED = dict(num_latents=5, d_latents=24, num_blocks=2, num_self_attends_per_block=1, num_self_attention_heads=4,
               num_cross_attention_heads=2, image_size=8, **COMMON)
# Fourier: ReLU, cross-attention shaped on the queries, widened MLPs, no encoder query residual
FOURIER = dict(num_latents=4, d_latents=16, num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
               num_cross_attention_heads=4, cross_attention_shape_for_attention="q", hidden_act="relu",
               self_attention_widening_factor=2, cross_attention_widening_factor=3, use_query_residual=False,
               **COMMON)
# conv stem: q/k narrower than the latents
CONV = dict(num_latents=6, d_latents=24, num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
            num_cross_attention_heads=4, qk_channels=16, v_channels=24, hidden_act="gelu_new", **COMMON)
# optical flow at a 6 x 5 train_size
FLOW = dict(num_latents=4, d_latents=16, num_blocks=1, num_self_attends_per_block=2, num_self_attention_heads=2,
            num_cross_attention_heads=2, train_size=[6, 5], attention_probs_dropout_prob=0.0)
CASES = {
    "learned": ("PerceiverForImageClassificationLearned", LEARNED, (8, 8)),
    "fourier": ("PerceiverForImageClassificationFourier", FOURIER, (6, 7)),
    "conv": ("PerceiverForImageClassificationConvProcessing", CONV, (14, 10)),
    "flow": ("PerceiverForOpticalFlow", FLOW, (6, 5)),
}


def _ref(case):
    import transformers

    arch, kwargs, (h, w) = CASES[case]
    rng = np.random.default_rng(3)
    if case == "flow":
        hf_inputs = {"inputs": rng.standard_normal((2, 2, 27, h, w)).astype("float32")}
        ours = {"pixel_values": np.transpose(hf_inputs["inputs"], (0, 1, 3, 4, 2))}
    else:
        hf_inputs = {"pixel_values": rng.standard_normal((2, 3, h, w)).astype("float32")}
        ours = {"pixel_values": np.transpose(hf_inputs["pixel_values"], (0, 2, 3, 1))}

    def build():
        return getattr(transformers, arch)(transformers.PerceiverConfig(**kwargs))

    folder, expected = hf_reference(f"perceiver_{case}", build, hf_inputs)
    return folder, ours, expected


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", list(CASES))
def test_perceiver_vision_parity(case):
    folder, inputs, expected = _ref(case)
    task = km.OpticalFlowEstimator if case == "flow" else km.ImageClassifier
    model = task.from_preset(folder)
    assert type(model).__name__ == ("PerceiverOpticalFlow" if case == "flow" else "PerceiverImageClassifier")
    out, z = jit_under_jax(lambda x: (model(x), model.backbone(x)))(inputs)
    assert_close(to_numpy(out), expected["logits"], what=f"perceiver {case} logits")
    assert_backbone_close(model, inputs, expected, hidden=z, what=f"perceiver {case}")
    # the backbone alone from the task checkpoint: the architecture picks the preprocessor
    backbone = km.Backbone.from_preset(folder)
    assert backbone.input_preprocessor == {"learned": "conv1x1", "fourier": "pixels", "conv": "conv",
                                           "flow": "patches"}[case]


def test_perceiver_vision_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    for case in ("conv", "flow"):
        folder, inputs, expected = _ref(case)
        model = (km.OpticalFlowEstimator if case == "flow" else km.ImageClassifier).from_preset(folder)
        model.save_to_preset(tmp_path / case)
        arch = CASES[case][0]
        ref, info = getattr(transformers, arch).from_pretrained(tmp_path / case, output_loading_info=True)
        # BatchNorm's step counter is not exported (eval numerics do not read it)
        info["missing_keys"] = {k for k in info["missing_keys"] if not k.endswith("num_batches_tracked")}
        assert not any(info.values()), info
        x = inputs["pixel_values"]
        x = np.transpose(x, (0, 1, 4, 2, 3)) if case == "flow" else np.transpose(x, (0, 3, 1, 2))
        with torch.no_grad():
            out = ref.eval()(inputs=torch.tensor(x)).logits.numpy()
        assert_close(out, expected["logits"], what=f"perceiver {case} round trip")


def test_perceiver_vision_keras_round_trip(tmp_path):
    for case in ("conv", "flow"):
        folder, inputs, _ = _ref(case)
        model = (km.OpticalFlowEstimator if case == "flow" else km.ImageClassifier).from_preset(folder)
        (tmp_path / case).mkdir()
        assert_keras_round_trip(model, inputs, tmp_path / case)


def test_perceiver_vision_errors(tmp_path):
    import json

    from keras_models.errors import ConfigError, InputError

    folder, inputs, _ = _ref("learned")
    model = km.ImageClassifier.from_preset(folder)
    with pytest.raises(InputError, match="image_size"):
        model({"pixel_values": np.zeros((1, 6, 6, 3), "float32")})
    with pytest.raises(ConfigError, match="no TextClassifier head"):  # an image checkpoint
        km.TextClassifier.from_preset(folder, load_weights=False, num_classes=2)
    config = json.loads((folder / "config.json").read_text())
    for change, key in ((dict(train_size=[6]), "train_size"),
                        (dict(architectures=["PerceiverForMultimodalAutoencoding"]), "MultimodalAutoencoding")):
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(tmp_path, load_weights=False)


@pytest.mark.backend_independent
def test_perceiver_image_processor(tmp_path):
    """PerceiverImageProcessor (center crop of size/crop_size of the short side, then bicubic resize,
    ImageNet normalisation) equal to Transformers' PIL backend, on odd sizes and settings."""
    import transformers

    from keras_models.preprocessing.image import ImageProcessor

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 50, 3), dtype=np.uint8), rng.integers(0, 256, (61, 29, 3), dtype=np.uint8)]
    for kw in ({}, dict(size={"height": 20, "width": 24}, crop_size={"height": 30, "width": 26}),
               dict(size={"height": 16, "width": 16}, crop_size={"height": 12, "width": 12}, resample=2)):
        ref = transformers.PerceiverImageProcessorPil(**kw)
        ref.save_pretrained(tmp_path)
        ours = ImageProcessor.from_preset(tmp_path)
        for image in images:
            want = ref(image, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
            got = ours([image])["pixel_values"]
            assert got.shape == want.shape, kw
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=str(kw))
