"""SegGPT against Transformers' ``SegGptForImageSegmentation``: ``km.InContextSegmenter``'s
``pred_masks`` and the backbone's last hidden state (``SegGptModel``), with and without
``feature_ensemble`` (two prompts of one image, before and after the merge block) and for both
embedding types; the image processor (palette and plain masks) and semantic post-processing;
``save_to_preset`` reloaded by Transformers; a ``.keras`` round trip; bad config values.

The tiny model: 4 blocks, merge after block 1, intermediate states of blocks 1 and 3, a 4x4
position table resized bicubically to the 8x4 stacked grid, relative positions, MLP width 48,
decoder width 8, GELU-tanh, no qkv bias.
"""

import inspect
import json
import sys

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import _key, _versions, assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

CASES = {"instance": (False, "instance"), "semantic_ensemble": (True, "semantic")}


def _config():
    import transformers

    return transformers.SegGptConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=[32, 16],
                                     patch_size=4, pretrain_image_size=16, decoder_hidden_size=8, mlp_dim=48,
                                     merge_index=1, intermediate_hidden_state_indices=[1, 3], drop_path_rate=0.0,
                                     hidden_act="gelu_pytorch_tanh", qkv_bias=False)


def _inputs():
    rng = np.random.RandomState(0)
    image = rng.randn(1, 16, 16, 3).astype("float32")
    pixels = np.concatenate([image, image])  # one image, two prompts (the feature ensemble's layout)
    prompts = rng.randn(2, 16, 16, 3).astype("float32")
    masks = rng.randn(2, 16, 16, 3).astype("float32")
    return {"pixel_values": pixels, "prompt_pixel_values": prompts, "prompt_masks": masks}


def _reference():
    key = _key("seggpt", inspect.getsource(sys.modules[__name__]), _versions())

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.SegGptForImageSegmentation(_config()).eval()
        randomize_weights(model)
        model.save_pretrained(tmp / "model")
        inputs = {k: torch.tensor(v.transpose(0, 3, 1, 2)) for k, v in _inputs().items()}
        out = {}
        with torch.no_grad():
            for case, (ensemble, kind) in CASES.items():
                o = model(**inputs, feature_ensemble=ensemble, embedding_type=kind)
                out[f"{case}/pred_masks"] = o.pred_masks.numpy().transpose(0, 2, 3, 1)
                out[f"{case}/hidden"] = model.model(**inputs, feature_ensemble=ensemble,
                                                    embedding_type=kind).last_hidden_state.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", list(CASES))
def test_seggpt_parity(case, tmp_path):
    import keras

    folder, expected = _reference()
    model = km.InContextSegmenter.from_preset(folder)
    assert type(model).__name__ == "SegGptInContextSegmenter" and model.head_from_checkpoint
    ensemble, kind = CASES[case]
    if case == "instance":  # the .keras round trip (one case)
        model.save(tmp_path / "m.keras")
        model = keras.saving.load_model(tmp_path / "m.keras")

    def fn(inputs):
        return (model(inputs, feature_ensemble=ensemble, embedding_type=kind),
                model.backbone(inputs, feature_ensemble=ensemble, embedding_type=kind))

    masks, hidden = (to_numpy(t) for t in jit_under_jax(fn)(_inputs()))
    assert_close(masks, expected[f"{case}/pred_masks"], what=f"seggpt {case} pred_masks")
    assert_close(hidden, expected[f"{case}/hidden"], what=f"seggpt {case} last hidden state")


def test_seggpt_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, expected = _reference()
    km.InContextSegmenter.from_preset(folder).save_to_preset(tmp_path / "preset")
    hf = transformers.SegGptForImageSegmentation.from_pretrained(tmp_path / "preset").eval()
    inputs = {k: torch.tensor(v.transpose(0, 3, 1, 2)) for k, v in _inputs().items()}
    with torch.no_grad():
        out = hf(**inputs, feature_ensemble=True, embedding_type="semantic").pred_masks.numpy()
    assert_close(out.transpose(0, 2, 3, 1), expected["semantic_ensemble/pred_masks"], what="seggpt reload")


def test_seggpt_image_processor_and_post_process():
    import torch
    from transformers import SegGptImageProcessorPil

    from keras_models.models.seggpt import SegGptImageProcessor

    rng = np.random.RandomState(3)
    images = [rng.randint(0, 256, (21, 30, 3), dtype=np.uint8) for _ in range(2)]
    maps = [rng.randint(0, 4, (21, 30)).astype(np.uint8) for _ in range(2)]
    theirs = SegGptImageProcessorPil(size={"height": 24, "width": 20})
    ours = SegGptImageProcessor.from_config(json.loads(theirs.to_json_string()))
    for num_labels in (3, None):
        extra = {} if num_labels is None else {"num_labels": num_labels}
        want = theirs(images=images, prompt_images=images[::-1], prompt_masks=maps, return_tensors="np", **extra)
        got = ours(images, prompt_images=images[::-1], prompt_masks=maps, num_labels=num_labels)
        for k in ("pixel_values", "prompt_pixel_values", "prompt_masks"):
            assert_close(got[k], want[k].transpose(0, 2, 3, 1), atol=1e-5, what=f"seggpt processor {k}")
    pred = rng.randn(2, 48, 20, 3).astype("float32") * 1.5

    class Out:
        pred_masks = torch.tensor(pred.transpose(0, 3, 1, 2))

    for num_labels in (3, None):
        want = theirs.post_process_semantic_segmentation(Out, target_sizes=[(21, 30), (13, 7)], num_labels=num_labels)
        got = ours.post_process_semantic_segmentation(pred, target_sizes=[(21, 30), (13, 7)], num_labels=num_labels)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b.numpy())


@pytest.mark.parametrize("key, value, match", [
    ("merge_index", 3, "merge_index"),
    ("intermediate_hidden_state_indices", [1, 9], "intermediate_hidden_state_indices"),
    ("hidden_act", "nope", "hidden_act"),
    ("image_size", [30, 16], "image_size"),
])
def test_seggpt_bad_config(tmp_path, key, value, match):
    import shutil

    folder, _ = _reference()
    shutil.copytree(folder, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config[key] = value
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match):
        km.InContextSegmenter.from_preset(tmp_path / "m")


def test_seggpt_bad_inputs():
    folder, _ = _reference()
    model = km.InContextSegmenter.from_preset(folder)
    x = np.zeros((1, 8, 16, 3), "float32")
    with pytest.raises(InputError, match="image_size"):
        model({"pixel_values": x, "prompt_pixel_values": x, "prompt_masks": x})
    with pytest.raises(InputError, match="embedding_type"):
        model(_inputs(), embedding_type="panoptic")
