"""SAM (Segment Anything) against Transformers' ``SamModel``: ``km.MaskGenerator`` on point prompts
(labels 1 / 0 / -1 / -10 padding), box prompts, points with boxes and a mask prompt, with and without
``multimask_output``; the image embeddings (the backbone's output) on every case; the image
processor and ``post_process_masks``; ``save_to_preset`` reloaded by Transformers; a ``.keras``
round trip; bad config values.

The main tiny model is deliberately off the defaults: windowed attention whose window (3) does not
divide the 8x8 grid (zero padding), one global block, relative and absolute positions, no qkv bias,
an explicit vision mlp_dim, 2 multimask outputs (not 3), a 4-layer IoU head, GELU in the mask
decoder's MLP and SiLU in the mask embedding, decoder LayerNorm eps 1e-5. A second ("plain") config has no absolute or relative positions, only
global blocks, gelu_new, one decoder layer without attention downsampling and a 2-layer IoU head.
"""

import inspect
import json
import sys

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import _key, _versions, assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

IMAGE = 64


def _config(variant="odd"):
    import transformers

    if variant == "plain":  # no absolute / relative positions, every block global, 1 decoder layer, 3 masks
        vision = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, image_size=48, patch_size=16,
                      window_size=0, global_attn_indexes=[], use_abs_pos=False, use_rel_pos=False,
                      output_channels=32, num_pos_feats=16, hidden_act="gelu_new")
        prompt = dict(hidden_size=32, image_size=48, patch_size=16, mask_input_channels=4)
        decoder = dict(hidden_size=32, mlp_dim=20, num_hidden_layers=1, num_attention_heads=4, iou_head_hidden_dim=8,
                       attention_downsample_rate=1, iou_head_depth=2)
        return transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE, patch_size=8,
                  window_size=3, global_attn_indexes=[1], output_channels=16, num_pos_feats=8, mlp_dim=40,
                  qkv_bias=False)
    prompt = dict(hidden_size=16, image_size=IMAGE, patch_size=8, mask_input_channels=8, hidden_act="silu")
    decoder = dict(hidden_size=16, mlp_dim=24, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=12,
                   num_multimask_outputs=2, iou_head_depth=4, hidden_act="gelu", layer_norm_eps=1e-5)
    return transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _inputs(variant="odd"):
    rng = np.random.RandomState(0)
    size, grid = (IMAGE, IMAGE // 8) if variant == "odd" else (48, 3)
    pixels = rng.randn(2, size, size, 3).astype("float32")
    points = rng.uniform(0, size, (2, 2, 3, 2)).astype("float32")
    labels = np.array([[[1, 0, -10], [1, 1, -1]], [[0, 1, 1], [1, -10, -10]]], "int64")
    boxes = np.sort(rng.uniform(0, size, (2, 2, 4)).astype("float32"), axis=-1)
    masks = rng.randn(2, 4 * grid, 4 * grid).astype("float32")
    return pixels, points, labels, boxes, masks


# case -> (prompts given, multimask_output)
CASES = {
    "points": (("input_points", "input_labels"), True),
    "boxes": (("input_boxes",), True),
    "points_boxes_single": (("input_points", "input_labels", "input_boxes"), False),
    "mask_prompt_single": (("input_points", "input_labels", "input_masks"), False),
    "plain_config_points": (("input_points", "input_labels"), True),  # the "plain" config
}


def _variant(case):
    return "plain" if case.startswith("plain") else "odd"


def _prompts(case):
    _, points, labels, boxes, masks = _inputs(_variant(case))
    given = dict(input_points=points, input_labels=labels, input_boxes=boxes, input_masks=masks)
    return {k: given[k] for k in CASES[case][0]}


def _reference(variant="odd"):
    """(folder, expected): the saved tiny model and, per case, Transformers' iou_scores and
    pred_masks, plus the image embeddings (channels_last)."""
    key = _key(f"sam-{variant}", inspect.getsource(sys.modules[__name__]), _versions())

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.SamModel(_config(variant)).eval()
        randomize_weights(model)
        model.save_pretrained(tmp / "model")
        pixels = torch.tensor(_inputs(variant)[0].transpose(0, 3, 1, 2))
        out = {}
        with torch.no_grad():
            out["image_embeddings"] = model.get_image_embeddings(pixels).numpy().transpose(0, 2, 3, 1)
            for case, (_, multimask) in CASES.items():
                if _variant(case) != variant:
                    continue
                prompts = {k: torch.tensor(v) for k, v in _prompts(case).items()}
                if "input_masks" in prompts:
                    prompts["input_masks"] = prompts["input_masks"][:, None]  # (batch, 1, 4g, 4g)
                o = model(pixel_values=pixels, multimask_output=multimask, **prompts)
                out[f"{case}/iou_scores"] = o.iou_scores.numpy()
                out[f"{case}/pred_masks"] = o.pred_masks.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _run(model, inputs, multimask):
    """The task's outputs and, when it encodes pixel_values, its backbone's image embeddings
    captured in the same pass (one program, compiled under JAX)."""
    backbone = model.backbone

    def fn(inputs):
        captured, call = [], backbone.call

        def capture(*args, **kwargs):
            captured.append(call(*args, **kwargs))
            return captured[-1]

        backbone.call = capture
        try:
            out = model(inputs, multimask_output=multimask)
        finally:
            del backbone.call
        return out, (captured[-1] if captured else None)

    out, embeddings = jit_under_jax(fn)(inputs)
    return to_numpy(out), None if embeddings is None else to_numpy(embeddings)


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", list(CASES))
def test_sam_parity(case, tmp_path):
    import keras

    folder, expected = _reference(_variant(case))
    model = km.MaskGenerator.from_preset(folder)
    assert type(model).__name__ == "SamMaskGenerator" and model.head_from_checkpoint
    pixels, inputs = _inputs(_variant(case))[0], dict(_prompts(case))
    if case == "boxes":  # Backbone.from_preset's image embeddings, prompted through image_embeddings
        backbone = km.Backbone.from_preset(folder)  # the image encoder alone (the heads: known, not loaded)
        assert type(backbone).__name__ == "SamBackbone"
        embeddings = to_numpy(jit_under_jax(lambda x: backbone({"pixel_values": x}))(pixels))
        assert_close(embeddings, expected["image_embeddings"], what="sam Backbone.from_preset image embeddings")
        inputs["image_embeddings"] = embeddings
    else:
        inputs["pixel_values"] = pixels
    if case == "points_boxes_single":  # the .keras round trip (one case)
        model.multimask_output = False
        model.save(tmp_path / "m.keras")
        model = keras.saving.load_model(tmp_path / "m.keras")
        assert type(model).__name__ == "SamMaskGenerator" and model.multimask_output is False
    out, embeddings = _run(model, inputs, CASES[case][1])
    assert_close(out["iou_scores"], expected[f"{case}/iou_scores"], what=f"sam {case} iou_scores")
    assert_close(out["pred_masks"], expected[f"{case}/pred_masks"], what=f"sam {case} pred_masks")
    if case != "boxes":
        assert_close(embeddings, expected["image_embeddings"], what=f"sam {case} image embeddings (backbone)")


def test_sam_reloads_in_transformers(tmp_path):
    import shutil

    import torch
    import transformers

    folder, expected = _reference()
    shutil.copytree(folder, tmp_path / "src")
    processor = transformers.SamImageProcessorPil(size={"longest_edge": IMAGE}, pad_size={"height": IMAGE, "width": IMAGE})
    processor.save_pretrained(tmp_path / "src")
    model = km.MaskGenerator.from_preset(tmp_path / "src")
    assert type(model.preprocessor).__name__ == "SamImageProcessor" and model.preprocessor.longest_edge == IMAGE
    model.save_to_preset(tmp_path / "preset")
    image = np.random.RandomState(2).randint(0, 256, (40, 57, 3), dtype=np.uint8)
    reloaded = transformers.SamImageProcessorPil.from_pretrained(tmp_path / "preset")
    assert_close(model.preprocessor([image])["pixel_values"],
                 reloaded(image, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1), atol=1e-6,
                 what="sam saved image processor")
    hf = transformers.SamModel.from_pretrained(tmp_path / "preset").eval()
    pixels = torch.tensor(_inputs()[0].transpose(0, 3, 1, 2))
    prompts = {k: torch.tensor(v) for k, v in _prompts("points_boxes_single").items()}
    with torch.no_grad():
        out = hf(pixel_values=pixels, multimask_output=False, **prompts)
    assert_close(out.pred_masks.numpy(), expected["points_boxes_single/pred_masks"], what="sam reload pred_masks")
    assert_close(out.iou_scores.numpy(), expected["points_boxes_single/iou_scores"], what="sam reload iou_scores")
    config = json.loads((tmp_path / "preset" / "config.json").read_text())
    assert config["architectures"] == ["SamModel"] and config["mask_decoder_config"]["num_multimask_outputs"] == 2


def test_sam_image_processor_and_post_process():
    import torch
    from transformers import SamImageProcessorPil, SamProcessor

    from keras_models.models.sam import SamImageProcessor

    rng = np.random.RandomState(1)
    images = [rng.randint(0, 256, (37, 50, 3), dtype=np.uint8), rng.randint(0, 256, (64, 23, 3), dtype=np.uint8)]
    config = dict(size={"longest_edge": 48}, pad_size={"height": 56, "width": 52}, image_mean=[0.4, 0.5, 0.6],
                  image_std=[0.2, 0.3, 0.25])
    theirs = SamProcessor(image_processor=SamImageProcessorPil(**config))
    points = [[[[10.0, 20.0], [30.5, 7.0]]], [[[3.0, 60.0], [22.0, 1.0]]]]
    boxes = [[[1.0, 2.0, 40.0, 30.0]], [[0.0, 5.0, 20.0, 63.0]]]
    want = theirs(images=images, input_points=points, input_labels=[[[1, 0]], [[1, 1]]], input_boxes=boxes,
                  return_tensors="np")
    ours = SamImageProcessor.from_config(json.loads(theirs.image_processor.to_json_string()))
    got = ours(images, input_points=points, input_labels=[[[1, 0]], [[1, 1]]], input_boxes=boxes)
    assert_close(got["pixel_values"], want["pixel_values"].transpose(0, 2, 3, 1), atol=1e-6, what="sam pixels")
    for k in ("original_sizes", "reshaped_input_sizes", "input_labels"):
        np.testing.assert_array_equal(got[k], want[k])
    for k in ("input_points", "input_boxes"):
        assert_close(got[k], want[k], atol=1e-5, what=f"sam processor {k}")

    masks = rng.randn(2, 1, 3, 16, 16).astype("float32")
    hf_masks = theirs.image_processor.post_process_masks(
        [torch.tensor(m) for m in masks], want["original_sizes"], want["reshaped_input_sizes"], binarize=False)
    ours_masks = ours.post_process_masks(masks, got["original_sizes"], got["reshaped_input_sizes"], binarize=False)
    for a, b in zip(ours_masks, hf_masks):
        assert_close(a, b.numpy(), atol=1e-5, what="sam post_process_masks")
    binary = ours.post_process_masks(masks, got["original_sizes"], got["reshaped_input_sizes"])
    hf_binary = theirs.image_processor.post_process_masks([torch.tensor(m) for m in masks], want["original_sizes"],
                                                          want["reshaped_input_sizes"])
    for a, b in zip(binary, hf_binary):
        assert a.dtype == bool and a.shape == tuple(b.shape) and (a != b.numpy()).mean() < 1e-3


def _write_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for path, value in changes.items():
        section, key = path.split("__")
        config[section][key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, match", [
    ({"mask_decoder_config__hidden_size": 24}, "hidden_size"),
    ({"vision_config__hidden_act": "nope"}, "hidden_act"),
    ({"prompt_encoder_config__num_point_embeddings": 5}, "num_point_embeddings"),
    ({"mask_decoder_config__iou_head_depth": 1}, "iou_head_depth"),
    ({"vision_config__global_attn_indexes": "1"}, "global_attn_indexes"),
])
def test_sam_bad_config(tmp_path, changes, match):
    import shutil

    folder, _ = _reference()
    shutil.copytree(folder, tmp_path / "m")
    _write_config(tmp_path / "m", **changes)
    with pytest.raises(ConfigError, match=match):
        km.MaskGenerator.from_preset(tmp_path / "m")


def test_sam_bad_inputs():
    folder, _ = _reference()
    model = km.MaskGenerator.from_preset(folder)
    with pytest.raises(InputError, match="pixel_values"):
        model({"pixel_values": np.zeros((1, 32, 32, 3), "float32")})
    with pytest.raises(InputError, match="input_points"):
        model({"pixel_values": np.zeros((1, IMAGE, IMAGE, 3), "float32"), "input_points": np.zeros((1, 2, 2), "float32")})


def test_sam_get_image_embeddings_graph():
    """``get_image_embeddings``: the reference embeddings on every backend; under tensorflow through
    one traced graph (``KM_SAM_TF_GRAPH``) for any batch size, a wrong size still the encoder's error."""
    import keras

    import keras_models.models.sam as sam

    folder, expected = _reference()
    model = km.MaskGenerator.from_preset(folder)
    pixels = _inputs()[0]
    got = to_numpy(model.get_image_embeddings(pixels))
    assert_close(got, expected["image_embeddings"], what="sam get_image_embeddings")
    if keras.backend.backend() == "tensorflow" and sam.TF_GRAPH:
        assert "_km_tf_encoder" in model.__dict__
        two = to_numpy(model.get_image_embeddings(np.concatenate([pixels, pixels])))
        np.testing.assert_allclose(two, np.concatenate([got, got]), atol=1e-5)
        sam.TF_GRAPH = False
        try:  # the switch: the plain eager call
            assert_close(to_numpy(model.get_image_embeddings(pixels)), got, what="sam eager embeddings")
        finally:
            sam.TF_GRAPH = True
    with pytest.raises(InputError, match="pixel_values"):
        model.get_image_embeddings(np.zeros((1, 32, 32, 3), "float32"))
