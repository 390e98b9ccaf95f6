"""BridgeTower against Transformers 5: BridgeTowerModel (backbone: text / image features, pooled
output and every hidden state of the towers and of the cross-modal streams),
BridgeTowerForMaskedLM (km.MaskedLM, untied as Transformers' default) and
BridgeTowerForImageAndTextRetrieval (km.ImageTextMatcher), from one tiny config with options that
change the numbers: per-layer cross-modal projections (share_cross_modal_transformer_layers false),
interpolating link towers, gelu_new text layers and a relu MLM head, three different LayerNorm
epsilons, a 3-layer text tower bridged into 2 cross layers, a 128-wide vision tower (2 heads) of 4
layers with remove_last_layer and share_layernorm false, and a padded text row.
"""

import hashlib
import inspect

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, cached_folder, randomize_weights

TEXT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
            hidden_act="gelu_new", max_position_embeddings=20, layer_norm_eps=1e-7)
VISION = dict(hidden_size=128, num_hidden_layers=4, remove_last_layer=True, patch_size=8, image_size=16,
              share_layernorm=False, layer_norm_eps=1e-6)
CONFIG = dict(hidden_size=32, num_hidden_layers=2, hidden_act="relu", layer_norm_eps=1e-6,
              share_cross_modal_transformer_layers=False, link_tower_type="interpolate")
HEADS = {"model": "BridgeTowerModel", "mlm": "BridgeTowerForMaskedLM", "itm": "BridgeTowerForImageAndTextRetrieval"}


def _inputs():
    rng = np.random.RandomState(4)
    return {"input_ids": np.array([[0, 5, 7, 9, 11, 2], [0, 9, 13, 2, 1, 1]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
            "pixel_values": rng.randn(2, 16, 16, 3).astype("float32")}


def _images():
    rng = np.random.RandomState(6)
    return [(rng.rand(30, 45, 3) * 255).astype("uint8"), (rng.rand(40, 28, 3) * 255).astype("uint8")]


def _config():
    import transformers as T

    return T.BridgeTowerConfig(text_config=TEXT, vision_config=VISION, **CONFIG)


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "bridgetower-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        out = {}
        raw = _inputs()
        inputs = dict({k: torch.tensor(v) for k, v in raw.items()},
                      pixel_values=torch.tensor(raw["pixel_values"].transpose(0, 3, 1, 2)))
        for i, (head, arch) in enumerate(HEADS.items()):
            torch.manual_seed(i)
            model = randomize_weights(getattr(T, arch)(_config()), seed=i).eval()
            model.save_pretrained(tmp / head)
            model = getattr(T, arch).from_pretrained(tmp / head).eval()
            with torch.no_grad():
                o = model(**inputs, output_hidden_states=True)
            if head == "model":
                for k in ("text_features", "image_features", "pooler_output"):
                    out[k] = getattr(o, k).numpy()
                text, image, cross = o.hidden_states
                for j, h in enumerate(text):
                    out[f"text_{j}"] = h.numpy()
                for j, h in enumerate(image):
                    out[f"image_{j}"] = h.permute(1, 0, 2).numpy()  # Transformers keeps them (seq, batch, hidden)
                for j, (ht, hi) in enumerate(cross):
                    out[f"cross_text_{j}"], out[f"cross_image_{j}"] = ht.numpy(), hi.numpy()
            else:
                out[head] = o.logits.numpy()
            if head == "itm":  # the processor travels with the retrieval checkpoint
                processor = T.BridgeTowerImageProcessorPil(size={"shortest_edge": 24}, crop_size={"shortest_edge": 24},
                                                           size_divisor=8, image_mean=[0.5, 0.4, 0.3],
                                                           image_std=[0.2, 0.3, 0.4])
                processor.save_pretrained(tmp / head)
                done = processor(images=_images(), return_tensors="np")
                out["processed"], out["processed_mask"] = done["pixel_values"], done["pixel_mask"]
                done = T.BridgeTowerImageProcessorPil()(images=_images()[:1], return_tensors="np")
                out["processed_defaults"], out["processed_defaults_mask"] = done["pixel_values"], done["pixel_mask"]
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


def test_bridgetower_backbone_matches_transformers():
    folder, expected = _reference()
    backbone = km.Backbone.from_preset(folder / "model")
    assert type(backbone).__name__ == "BridgeTowerBackbone"
    out = backbone.predict_on_batch(_inputs())
    text = _inputs()["attention_mask"]
    assert_close(out["text_features"], expected["text_features"], mask=text, what="text_features")
    assert_close(out["image_features"], expected["image_features"], what="image_features")
    assert_close(out["pooler_output"], expected["pooler_output"], what="pooler_output")
    for name, n, mask in (("text", 4, text), ("image", 4, None), ("cross_text", 2, text), ("cross_image", 2, None)):
        states = out[f"{name}_hidden_states"]
        assert len(states) == n
        for j, h in enumerate(states):
            assert_close(h, expected[f"{name}_{j}"], mask=mask, what=f"{name} hidden state {j}")
    with pytest.raises(InputError, match="pixel_values"):
        backbone(dict(_inputs(), pixel_values=np.zeros((2, 24, 16, 3), "float32")))


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["mlm", "itm"])
def test_bridgetower_heads_match_transformers(head):
    folder, expected = _reference()
    task = km.MaskedLM if head == "mlm" else km.ImageTextMatcher
    model = task.from_preset(folder / head)
    assert model.head_from_checkpoint
    if head == "itm":  # the checkpoint's image processor, not the generic one
        assert type(model.preprocessor.image_processor).__name__ == "BridgeTowerImageProcessor"
    mask = _inputs()["attention_mask"] if head == "mlm" else None
    assert_close(model.predict_on_batch(_inputs()), expected[head], mask=mask, what=f"{HEADS[head]} logits")


@pytest.mark.backend_independent
def test_bridgetower_image_processor_matches_transformers():
    """BridgeTowerImageProcessor (resize with size_divisor, square center crop, padding and pixel_mask)
    from the checkpoint's preprocessor_config.json and with the class defaults."""
    from keras_models.models.bridgetower import BridgeTowerImageProcessor

    folder, expected = _reference()
    processor = BridgeTowerImageProcessor.from_preset(folder / "itm")
    for proc, images, key in ((processor, _images(), "processed"),
                              (BridgeTowerImageProcessor(), _images()[:1], "processed_defaults")):
        out = proc(images)
        want = expected[key].transpose(0, 2, 3, 1)
        assert out["pixel_values"].shape == want.shape
        np.testing.assert_allclose(out["pixel_values"], want, atol=1e-5)
        np.testing.assert_array_equal(out["pixel_mask"], expected[key + "_mask"])


def test_bridgetower_reloads_in_transformers(tmp_path):
    """Our save_to_preset of the retrieval model (with its image processor) and of the untied MLM,
    reloaded by Transformers."""
    import torch
    import transformers as T

    folder, expected = _reference()
    raw = _inputs()
    inputs = dict({k: torch.tensor(v) for k, v in raw.items()},
                  pixel_values=torch.tensor(raw["pixel_values"].transpose(0, 3, 1, 2)))
    for head, task in (("itm", km.ImageTextMatcher), ("mlm", km.MaskedLM)):
        task.from_preset(folder / head).save_to_preset(tmp_path / head)
        hf = getattr(T, HEADS[head]).from_pretrained(tmp_path / head).eval()
        with torch.no_grad():
            logits = hf(**inputs).logits.numpy()
        assert_close(logits, expected[head], mask=raw["attention_mask"] if head == "mlm" else None,
                     what=f"reloaded {HEADS[head]}")
    done = T.BridgeTowerImageProcessorPil.from_pretrained(tmp_path / "itm")(images=_images(), return_tensors="np")
    np.testing.assert_allclose(done["pixel_values"], expected["processed"], atol=1e-5)


def test_bridgetower_keras_round_trip(tmp_path):
    """A .keras file of the retrieval model restores the same class, config, image processor and
    outputs (compiled predictions: eager JAX would run the model op by op)."""
    import keras

    folder, expected = _reference()
    model = km.ImageTextMatcher.from_preset(folder / "itm")
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    assert restored.backbone.get_config() == model.backbone.get_config() | {"name": restored.backbone.name}
    assert type(restored.preprocessor.image_processor).__name__ == "BridgeTowerImageProcessor"
    assert_close(restored.predict_on_batch(_inputs()), expected["itm"], what="restored .keras ITM")


@pytest.mark.backend_independent
def test_bridgetower_bad_config(tmp_path):
    import json
    import shutil

    folder, _ = _reference()
    cases = ((("link_tower_type",), "concat", "link_tower_type"), (("share_link_tower_layers",), True,
             "share_link_tower_layers"), (("hidden_size",), 48, "hidden_size"),
             (("vision_config", "hidden_size"), 32, "hidden_size // 64"),
             (("vision_config", "remove_last_layer"), None, "vision layer"),
             (("text_config", "is_decoder"), True, "is_decoder"),
             (("text_config", "num_hidden_layers"), "3", "num_hidden_layers"))
    for path, value, words in cases:
        bad = tmp_path / "_".join(path)
        shutil.copytree(folder / "model", bad)
        config = json.loads((bad / "config.json").read_text())
        where = config
        for key in path[:-1]:
            where = where[key]
        if value is None:  # 4 - 1 vision layers for 3 text layers: one more text layer than vision ones
            config["text_config"]["num_hidden_layers"] = 4
        else:
            where[path[-1]] = value
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=words):
            km.Backbone.from_preset(bad)
