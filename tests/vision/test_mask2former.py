"""Mask2Former against Transformers: class / mask query logits (the masked-attention decoder's last
prediction), the transformer decoder's last state, the pixel decoder's mask features and its three
multi-scale maps, every backbone map, from one compiled pass; post-processing (the 384 x 384 resize
first), save_to_preset reloaded by Transformers, .keras, config errors."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import _key, _versions, assert_close, calibrate_batch_norms, cached_folder, randomize_weights
from tests.vision.test_maskformer import _nhwc, _run, _same_segments

SIZE = (2, 56, 48, 3)


def _config(kind):
    import transformers as T

    backbone = T.SwinConfig(embed_dim=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4], window_size=4, image_size=64,
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    if kind == "post_norm":  # hidden_dim != feature_size (projected levels), one FPN level, 2 decoder layers
        return T.Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=24, hidden_dim=48,
                                   encoder_feedforward_dim=40, encoder_layers=1, decoder_layers=3,
                                   num_attention_heads=4, dim_feedforward=56, num_queries=5, num_labels=3)
    # pre-norm GELU decoder layers over unprojected levels (hidden_dim == feature_size); a 3-stage Swin
    # whose three maps all go through the deformable encoder: no FPN level (the mask features project
    # the finest deformable level)
    backbone = T.SwinConfig(embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=4, image_size=64,
                            out_features=["stage1", "stage2", "stage3"])
    return T.Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=16, hidden_dim=32,
                               encoder_feedforward_dim=24, encoder_layers=2, decoder_layers=3, num_attention_heads=2,
                               dim_feedforward=40, num_queries=6, num_labels=4, pre_norm=True,
                               activation_function="gelu", feature_strides=[4, 8, 16])


def _reference(kind):
    import inspect
    import sys

    x = np.random.RandomState(1).randn(*SIZE).astype("float32")
    inputs = {"pixel_values": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}

    def build(tmp):  # Transformers and torch are imported only when the reference is built
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = T.Mask2FormerForUniversalSegmentation(_config(kind)).eval()
        randomize_weights(model, 0)
        tensors = {k: torch.tensor(v) for k, v in inputs.items()}
        calibrate_batch_norms(model, tensors)
        model.save_pretrained(tmp / "model")
        with torch.no_grad():
            out = model(**tensors, output_hidden_states=True)
        exp = {k: getattr(out, k).numpy() for k in ("class_queries_logits", "masks_queries_logits",
                                                   "transformer_decoder_last_hidden_state",
                                                   "pixel_decoder_last_hidden_state", "encoder_last_hidden_state")}
        for name in ("encoder_hidden_states", "pixel_decoder_hidden_states"):
            for i, h in enumerate(getattr(out, name)):
                exp[f"{name}_{i}"] = h.numpy()
        np.savez(tmp / "expected.npz", **exp)

    key = _key(f"mask2former-{kind}", inspect.getsource(sys.modules[__name__]), _versions())
    folder = cached_folder(key, build)
    return x, folder / "model", dict(np.load(folder / "expected.npz"))


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["post_norm", "pre_norm"])
def test_mask2former_parity(kind):
    x, folder, exp = _reference(kind)
    model = km.UniversalSegmenter.from_preset(folder)
    assert type(model).__name__ == "Mask2FormerUniversalSegmenter" and model.head_from_checkpoint
    out, hidden = _run(model, {"pixel_values": x})
    for k in ("class_queries_logits", "masks_queries_logits", "transformer_decoder_last_hidden_state"):
        assert_close(out[k], exp[k], what=f"{kind} {k}")
    for k in ("pixel_decoder_last_hidden_state", "encoder_last_hidden_state"):
        assert_close(out[k], _nhwc(exp[k]), what=f"{kind} {k}")
    for name in ("encoder_hidden_states", "pixel_decoder_hidden_states"):
        n = len([k for k in exp if k.startswith(name)])
        assert len(hidden[name]) == n, name
        for i in range(n):
            assert_close(hidden[name][i], _nhwc(exp[f"{name}_{i}"]), what=f"{kind} {name}[{i}]")


@pytest.mark.backend_independent
def test_mask2former_post_processing():
    """Mask2Former's post-processing (mask logits resized to 384 x 384 first) equals its image
    processor's on the reference's outputs."""
    from types import SimpleNamespace

    import torch
    import transformers as T

    x, folder, exp = _reference("post_norm")
    ours = {"class_queries_logits": exp["class_queries_logits"] * 3,
            "masks_queries_logits": exp["masks_queries_logits"]}
    theirs = SimpleNamespace(**{k: torch.tensor(v) for k, v in ours.items()})
    proc = T.Mask2FormerImageProcessor()
    cls = km.models.Mask2FormerUniversalSegmenter
    for a, b in zip(cls.post_process_semantic_segmentation(ours), proc.post_process_semantic_segmentation(theirs)):
        np.testing.assert_array_equal(a, b.numpy())
    for ts in ([(30, 21), (17, 40)],):
        for a, b in zip(cls.post_process_semantic_segmentation(ours, target_sizes=ts),
                        proc.post_process_semantic_segmentation(theirs, target_sizes=ts)):
            np.testing.assert_array_equal(a, b.numpy())
        got = cls.post_process_panoptic_segmentation(ours, threshold=0.3, target_sizes=ts)
        want = proc.post_process_panoptic_segmentation(theirs, threshold=0.3, target_sizes=ts)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a["segmentation"], b["segmentation"].numpy())
            _same_segments(a["segments_info"], b["segments_info"])


def test_mask2former_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    x, folder, exp = _reference("pre_norm")
    model = km.UniversalSegmenter.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["architectures"] == ["Mask2FormerForUniversalSegmentation"]
    hf = T.Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.tensor(x.transpose(0, 3, 1, 2)))
    for k in ("class_queries_logits", "masks_queries_logits"):
        assert_close(getattr(out, k).numpy(), exp[k], what=f"reloaded {k}")


def test_mask2former_keras_round_trip_and_errors(tmp_path):
    import keras

    from tests.parity import assert_keras_round_trip

    x, folder, exp = _reference("pre_norm")
    if keras.backend.backend() == "torch":  # the .keras file does not depend on the backend
        model = km.UniversalSegmenter.from_preset(folder)
        assert_keras_round_trip(model, {"pixel_values": x[:1]}, tmp_path, atol=1e-5)
    config = json.loads((folder / "config.json").read_text())
    for change, word in ((dict(feature_size=48), "feature_size"),
                         (dict(backbone_config={"model_type": "resnet"}), "backbone_config"),
                         (dict(backbone_config={**config["backbone_config"], "out_features": ["stage3", "stage4"]}),
                          "out_features"),
                         (dict(common_stride=3), "common_stride"),
                         (dict(num_attention_heads=5), "num_attention_heads")):
        bad = tmp_path / word
        bad.mkdir(exist_ok=True)
        (bad / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ConfigError, match=word):
            km.Backbone.from_preset(bad, load_weights=False)
