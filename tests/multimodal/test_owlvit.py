"""OWL-ViT and OWLv2 open-vocabulary detection (km.ZeroShotObjectDetector) against Transformers.

A tiny seeded OwlViTForObjectDetection / Owlv2ForObjectDetection (two images, three text queries
each, one of them padded: its first id is 0) records every detection output, the image processor's
``post_process_object_detection`` on them, ``image_guided_detection`` with query images, and the
inner dual encoder's ``logits_per_image``.
Options off their defaults: vision GELU and LayerNorm eps 1e-6, a projection as wide as the text
tower (the class head needs it) but unlike the vision width, and an end-of-text id that is each
query's highest id but not the config's ``eos_token_id`` (pooling follows the highest id, as
Transformers does).
"""

import numpy as np
import pytest

from tests.models.test_dual_encoders import randomize_weights
from tests.multimodal.test_dual_encoders_more import assert_same_weights, run
from tests.parity import _key, assert_close, cached_folder, to_numpy

KEYS = ("logits", "pred_boxes", "text_embeds", "image_embeds", "class_embeds")
GUIDED_KEYS = ("logits", "target_pred_boxes", "query_pred_boxes", "image_embeds", "query_image_embeds",
               "class_embeds")
TARGET_SIZES = [(30, 50), (64, 40)]
EOT = 98  # the highest id of each query (pooled); eos_token_id in the config says 3


def _build(kind):
    import transformers as T

    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=12, eos_token_id=3, bos_token_id=2)
    vision = dict(hidden_size=40, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6)
    if kind == "owlvit":
        return T.OwlViTForObjectDetection(T.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
    return T.Owlv2ForObjectDetection(T.Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(4, 97, size=(6, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[:, 0] = 2
    ids[:, -1] = EOT
    ids[1, 4], ids[1, 5:], mask[1, 5:] = EOT, 0, 0  # a shorter query
    ids[5, 0] = 0  # a padded query: masked out of the logits
    pixels = rng.randn(2, 32, 32, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask}, pixels


def _query_pixels():
    return np.random.RandomState(1).randn(2, 32, 32, 3).astype("float32")


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(_build(kind).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        model = type(model).from_pretrained(folder).eval()  # box_bias and position ids rebuilt
        text, pixels = _inputs()
        torch_in = {**{k: torch.tensor(v) for k, v in text.items()},
                    "pixel_values": torch.tensor(pixels.transpose(0, 3, 1, 2))}
        with torch.no_grad():
            out = model(**torch_in)
            dual = getattr(model, kind)(**torch_in)
        expected = {k: getattr(out, k).numpy() for k in KEYS}
        if kind == "owlv2":
            expected["objectness_logits"] = out.objectness_logits.numpy()
        expected["logits_per_image"] = dual.logits_per_image.numpy()
        with torch.no_grad():
            guided = model.image_guided_detection(
                pixel_values=torch_in["pixel_values"],
                query_pixel_values=torch.tensor(_query_pixels().transpose(0, 3, 1, 2)))
        for k in GUIDED_KEYS:
            expected[f"guided_{k}"] = getattr(guided, k).numpy()
        proc = (T.OwlViTImageProcessor if kind == "owlvit" else T.Owlv2ImageProcessor)()
        for i, r in enumerate(proc.post_process_object_detection(out, threshold=0.0, target_sizes=TARGET_SIZES)):
            for k, v in r.items():
                expected[f"post{i}_{k}"] = v.numpy()
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"owl-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours():
    text, pixels = _inputs()
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}


@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_detection_parity_and_post_processing(kind, tmp_path):
    import keras

    import keras_models as km
    from keras_models.errors import InputError

    folder, expected = reference(kind)
    model = km.ZeroShotObjectDetector.from_preset(folder)
    assert type(model).__name__ == {"owlvit": "OwlViTZeroShotObjectDetector",
                                    "owlv2": "Owlv2ZeroShotObjectDetector"}[kind]
    inputs = _ours()
    out = run(model, inputs)
    keys = KEYS + (("objectness_logits",) if kind == "owlv2" else ())
    assert set(out) == set(keys)
    for k in keys:
        assert_close(out[k], expected[k], what=f"{kind} {k}")
    assert (out["logits"][1, :, 2] < -1e38).all() and (out["logits"][0] > -1e38).all()  # image 1's query 2 padded

    # post-processing: Transformers' exactly on its own outputs, and ours at threshold 0 (all boxes)
    for source, atol in ((expected, 1e-6), (out, 1e-4)):
        got = model.post_process_object_detection(
            {k: source[k] for k in ("logits", "pred_boxes")}, threshold=0.0, target_sizes=TARGET_SIZES)
        for i, r in enumerate(got):
            np.testing.assert_array_equal(r["labels"], expected[f"post{i}_labels"])
            for k in ("scores", "boxes"):
                np.testing.assert_allclose(r[k], expected[f"post{i}_{k}"], atol=atol * (64 if k == "boxes" else 1))
    kept = model.post_process_object_detection(out, threshold=0.5)
    assert all(((r["scores"] > 0.5).all() and r["boxes"].shape == (len(r["scores"]), 4)) for r in kept)

    # one-shot detection with a query image (OWL-ViT: the box overlapping the image best, least
    # like the mean; OWLv2: the most object-like patch)
    guided = run(model, {"pixel_values": inputs["pixel_values"], "query_pixel_values": _query_pixels()})
    for k in GUIDED_KEYS:
        assert_close(guided[k], expected[f"guided_{k}"], what=f"{kind} image-guided {k}")
    with pytest.raises(InputError, match="query_pixel_values"):
        model.image_guided_detection({"pixel_values": inputs["pixel_values"]})
    with pytest.raises(InputError, match="4 queries for 3 images"):
        model({**{k: v[:4] for k, v in inputs.items() if k != "pixel_values"},
               "pixel_values": np.concatenate([inputs["pixel_values"]] * 2)[:3]})

    if keras.backend.backend() != "torch":
        return
    # backend-independent loading, once: our export reloads with the same weights; the inner dual
    # encoder reads its temperature from the detection checkpoint
    model.save_to_preset(tmp_path / "saved")
    again = km.ZeroShotObjectDetector.from_preset(tmp_path / "saved")
    assert type(again) is type(model)
    assert_same_weights(again, model)
    if kind == "owlvit":
        dual = km.ZeroShotImageClassifier.from_preset(folder)
        assert_close(dual(inputs)["logits_per_image"], expected["logits_per_image"], what="owlvit dual encoder")


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """Our export's config.json reads back as the same spec, and Transformers reloads it with the
    same logits and boxes (no Keras computation: under tools/test.sh, in the jax pass only)."""
    import json

    import torch
    import transformers as T

    import keras_models as km

    for kind, cls in (("owlvit", T.OwlViTForObjectDetection), ("owlv2", T.Owlv2ForObjectDetection)):
        folder, expected = reference(kind)
        model = km.ZeroShotObjectDetector.from_preset(folder)
        model.save_to_preset(tmp_path / kind)
        saved = json.loads((tmp_path / kind / "config.json").read_text())  # the same spec back
        assert type(model.backbone).spec_cls.from_hf(saved) == model.backbone.spec
        hf_model = cls.from_pretrained(tmp_path / kind).eval()
        text, pixels = _inputs()
        with torch.no_grad():
            ref = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                           pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
        for k in ("logits", "pred_boxes"):
            assert_close(getattr(ref, k).numpy(), expected[k], what=f"{kind} transformers reload {k}")
