"""More dual encoders against Transformers: AltCLIP (XLM-R text tower + CLIP ViT), ALIGN
(BERT text tower + EfficientNet image tower, temperature-scaled logits) and GroupViT (CLIP text
tower + grouping vision transformer, MLP projections with BatchNorm).

Each tiny reference uses non-default options that change the numbers (activations, norm eps,
projection widths unlike either tower's, RoBERTa positions after padding, max pooling, odd
EfficientNet padding) and records the model's outputs and both towers' last hidden states. One
test per family: parity of every output on each backend; on the torch pass only (backend-independent
wiring), each tower's hidden states, ``encode_text``, ``Backbone.from_preset`` and
``save_to_preset`` reloading here with the same weights. One test for all families: Transformers
reloads the saved files with the same logits.
"""

import numpy as np

from tests.models.test_dual_encoders import randomize_weights
from tests.parity import _key, assert_close, cached_folder, to_numpy

OUT_KEYS = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")
HF_CLASS = {"altclip": "AltCLIPModel", "align": "AlignModel", "groupvit": "GroupViTModel"}


def _build(kind):
    import transformers as T

    if kind == "altclip":
        text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=24, project_dim=24, hidden_act="gelu_new", layer_norm_eps=1e-6)
        vision = dict(hidden_size=40, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                      patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6)
        return T.AltCLIPModel(T.AltCLIPConfig(text_config=text, vision_config=vision, projection_dim=20))
    if kind == "align":
        text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=16, hidden_act="gelu_new")
        # two blocks (the second strided and expanded, its depthwise conv evenly padded), max pooling
        vision = dict(width_coefficient=0.5, depth_coefficient=1.0, depth_divisor=8, kernel_sizes=[3, 5],
                      in_channels=[32, 16], out_channels=[16, 48], strides=[1, 2], num_block_repeats=[1, 1],
                      expand_ratios=[1, 3], depthwise_padding=[1], hidden_dim=64, pooling_type="max",
                      batch_norm_eps=1e-2, image_size=32)
        return T.AlignModel(T.AlignConfig(text_config=text, vision_config=vision, projection_dim=24,
                                          temperature_init_value=0.7))
    if kind == "groupvit":  # three stages (group tokens mixed into the next stage's), odd assign options
        import torch

        text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                    max_position_embeddings=16, eos_token_id=3)
        vision = dict(hidden_size=32, intermediate_size=40, num_attention_heads=4, image_size=32, patch_size=8,
                      depths=[1, 1, 1], num_group_tokens=[8, 4, 0], num_output_groups=[8, 4, 4],
                      assign_eps=0.5, assign_mlp_ratio=[0.5, 2], hidden_act="gelu_new", layer_norm_eps=1e-6)
        model = T.GroupViTModel(T.GroupViTConfig(text_config=text, vision_config=vision, projection_dim=24,
                                                 projection_intermediate_dim=20))
        with torch.no_grad():  # BatchNorm running statistics off their initial 0 / 1
            for bn in (model.text_projection[1], model.visual_projection[1]):
                bn.running_mean.normal_(0, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
        return model
    raise ValueError(kind)


def _inputs(kind):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 99, size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    pad, bos, eos = (1, 0, 2) if kind == "altclip" else (0, 2, 3)
    ids[:, 0], ids[:, -1] = bos, eos
    ids[1, 4], ids[1, 5:], mask[1, 5:] = eos, pad, 0
    pixels = rng.randn(3, 32, 32, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask}, pixels


def reference(kind):
    def build(tmp):
        import torch

        torch.manual_seed(0)
        model = randomize_weights(_build(kind).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        model = type(model).from_pretrained(folder).eval()  # buffers rebuilt as a user's load does
        text, pixels = _inputs(kind)
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in text.items()},
                        pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
        expected = {k: getattr(out, k).numpy() for k in OUT_KEYS}
        expected["text_hidden"] = out.text_model_output.last_hidden_state.numpy()
        vision = out.vision_model_output.last_hidden_state.numpy()
        expected["vision_hidden"] = vision.transpose(0, 2, 3, 1) if vision.ndim == 4 else vision
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"dual-more-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours(kind):
    text, pixels = _inputs(kind)
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}


def run(model, inputs):
    """The model's outputs as numpy; under JAX as one compiled program (eager JAX compiles every op
    of a new shape on its own: several times slower for these towers)."""
    import keras

    if keras.backend.backend() == "jax":
        return to_numpy(model.predict_on_batch(inputs))
    return to_numpy(model(inputs))


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


def _check_family(kind, backbone_name, tmp_path):
    import keras

    import keras_models as km

    folder, expected = reference(kind)
    model = km.ZeroShotImageClassifier.from_preset(folder)
    inputs = _ours(kind)
    out = run(model, inputs)
    for k in OUT_KEYS:
        assert_close(out[k], expected[k], what=f"{kind} {k}")
    bb = model.backbone
    assert type(bb).__name__ == backbone_name
    if keras.backend.backend() != "torch":
        return
    # backend-independent wiring (each tower's output, the unnormalised features, the backbone
    # class): checked once, on the torch pass
    text = {k: v for k, v in inputs.items() if k != "pixel_values"}
    assert_close(bb.text_model(text), expected["text_hidden"], mask=inputs["attention_mask"], what=f"{kind} text tower")
    assert_close(bb.vision_model({"pixel_values": inputs["pixel_values"]}), expected["vision_hidden"],
                 what=f"{kind} vision tower")
    t = to_numpy(model.encode_text(inputs))  # get_text_features: projected, not normalised
    np.testing.assert_allclose(t / np.linalg.norm(t, axis=-1, keepdims=True), expected["text_embeds"], atol=1e-5)
    assert type(km.Backbone.from_preset(folder)).__name__ == backbone_name
    model.save_to_preset(tmp_path / "saved")  # reloads here with the same weights
    again = km.ZeroShotImageClassifier.from_preset(tmp_path / "saved")
    assert type(again) is type(model) and again.backbone.spec == bb.spec
    assert_same_weights(again, model)


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """Every family: our export's config.json reads back as the same spec, and Transformers reloads
    it with the same logits (no Keras computation: under tools/test.sh, in the jax pass only)."""
    import json

    import torch
    import transformers as T

    import keras_models as km

    for kind in HF_CLASS:
        folder, expected = reference(kind)
        model = km.ZeroShotImageClassifier.from_preset(folder)
        model.save_to_preset(tmp_path / kind)
        saved = json.loads((tmp_path / kind / "config.json").read_text())  # the same spec back
        assert type(model.backbone).spec_cls.from_hf(saved) == model.backbone.spec
        hf_model = getattr(T, HF_CLASS[kind]).from_pretrained(tmp_path / kind).eval()
        t_in, pixels = _inputs(kind)
        with torch.no_grad():
            ref = hf_model(**{k: torch.tensor(v) for k, v in t_in.items()},
                           pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
        assert_close(ref.logits_per_image.numpy(), expected["logits_per_image"], what=f"{kind} transformers reload")


def test_altclip(tmp_path):
    _check_family("altclip", "AltCLIPBackbone", tmp_path)


def test_align(tmp_path):
    import json

    import pytest

    import keras_models as km
    from keras_models.errors import ConfigError

    _check_family("align", "AlignBackbone", tmp_path)
    folder, _ = reference("align")
    config = json.loads((folder / "config.json").read_text())
    config["projection_dim"] = 32  # the text projection must land in the image tower's width (24)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="projection_dim"):
        km.ZeroShotImageClassifier.from_preset(tmp_path / "bad", load_weights=False)


def test_groupvit(tmp_path):
    import json

    import pytest

    import keras_models as km
    from keras_models.errors import ConfigError

    _check_family("groupvit", "GroupViTBackbone", tmp_path)
    folder, _ = reference("groupvit")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["num_output_groups"] = [6, 4, 4]  # stage 1 mixes stage 0's 8 group tokens
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="num_output_groups"):
        km.ZeroShotImageClassifier.from_preset(tmp_path / "bad", load_weights=False)
