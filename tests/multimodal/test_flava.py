"""FLAVA against Transformers 5: FlavaModel (image / text / multimodal embeddings, the three pooler
outputs, every tower's hidden states, get_image_features / get_text_features) and the standalone
towers (FlavaImageModel, FlavaTextModel, FlavaMultimodalModel), from one tiny config whose towers
differ in width, depth, activation, eps and qkv bias; a padded text row, masked image patches
(the mask token), three token types, a projection width unlike the towers'.
"""

import hashlib
import inspect
import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, cached_folder, jit_under_jax, randomize_weights, to_numpy

IMAGE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40, hidden_act="gelu_new",
             layer_norm_eps=1e-6, image_size=16, patch_size=8, qkv_bias=False, vocab_size=30)
TEXT = dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=36, hidden_act="relu",
            layer_norm_eps=1e-5, vocab_size=64, max_position_embeddings=16, type_vocab_size=3)
MULTI = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20, hidden_act="gelu",
             layer_norm_eps=1e-7)
CONFIG = dict(image_config=IMAGE, text_config=TEXT, multimodal_config=MULTI, projection_dim=12)
# FlavaForPreTraining's heads read the multimodal states with the towers' widths: one width for all
PRETRAINING = dict(CONFIG, hidden_size=16, image_config=dict(IMAGE, hidden_size=16),
                   text_config=dict(TEXT, hidden_size=16), image_codebook_config=dict(hidden_size=8, vocab_size=30,
                                                                                     num_blocks_per_group=1))


def _inputs():
    rng = np.random.RandomState(3)
    masked = np.zeros((2, 4), bool)
    masked[0, 1] = masked[1, 3] = True
    return {"input_ids": np.array([[2, 5, 7, 9, 11, 3], [2, 9, 13, 3, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
            "token_type_ids": np.array([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 0, 0]]),
            "pixel_values": rng.randn(2, 3, 16, 16).astype("float32"), "bool_masked_pos": masked}


def _ours(inputs):
    return dict(inputs, pixel_values=inputs["pixel_values"].transpose(0, 2, 3, 1))


def _images():
    rng = np.random.RandomState(6)
    return [(rng.rand(30, 45, 3) * 255).astype("uint8"), (rng.rand(40, 28, 3) * 255).astype("uint8")]


def _mm_hidden():
    return np.random.RandomState(4).randn(2, 5, 16).astype("float32")


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "flava-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.FlavaModel(T.FlavaConfig(**CONFIG)), seed=0).eval()
        model.save_pretrained(tmp / "model")
        model = T.FlavaModel.from_pretrained(tmp / "model").eval()
        for name in ("image_model", "text_model", "multimodal_model"):
            getattr(model, name).save_pretrained(tmp / name)
        inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
        out = {}
        with torch.no_grad():
            o = model(**inputs)
            for part in ("image", "text", "multimodal"):
                sub = getattr(o, f"{part}_output")
                out[f"{part}_embeddings"] = getattr(o, f"{part}_embeddings").numpy()
                out[f"{part}_pooler_output"] = sub.pooler_output.numpy()
                if sub.hidden_states is not None:
                    for i, h in enumerate(sub.hidden_states):
                        out[f"{part}_hidden_{i}"] = h.numpy()
            mm = model.multimodal_model(torch.tensor(_mm_hidden()), output_hidden_states=True)
            out["mm_tower_last"], out["mm_tower_pooled"] = mm.last_hidden_state.numpy(), mm.pooler_output.numpy()
            for i, h in enumerate(mm.hidden_states):
                out[f"mm_tower_hidden_{i}"] = h.numpy()
            text = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            out["text_features"] = model.get_text_features(**text).pooler_output.numpy()
            out["image_features"] = model.get_image_features(inputs["pixel_values"]).pooler_output.numpy()
            out["text_tower_pooled"] = model.text_model(**text).pooler_output.numpy()
        processor = T.FlavaImageProcessorPil(size={"height": 20, "width": 18}, crop_size={"height": 16, "width": 16},
                                             image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4])
        processor.save_pretrained(tmp / "model")
        out["processed"] = processor(images=_images(), return_tensors="np")["pixel_values"]
        out["processed_defaults"] = T.FlavaImageProcessorPil()(images=_images(), return_tensors="np")["pixel_values"]
        torch.manual_seed(1)
        config = T.FlavaConfig(**PRETRAINING)
        pretraining = randomize_weights(T.FlavaForPreTraining(config), seed=1).eval()
        pretraining.save_pretrained(tmp / "pretraining")
        pretraining = T.FlavaForPreTraining.from_pretrained(tmp / "pretraining").eval()
        with torch.no_grad():
            o = pretraining(input_ids=inputs["input_ids"], input_ids_masked=inputs["input_ids"],
                            attention_mask=inputs["attention_mask"], token_type_ids=inputs["token_type_ids"],
                            pixel_values=inputs["pixel_values"], bool_masked_pos=inputs["bool_masked_pos"],
                            return_loss=False)
        out["itm_logits"] = o.itm_logits.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


def _check(out, expected, what):
    mask = _inputs()["attention_mask"]
    for part in ("image", "text", "multimodal"):
        m = mask if part == "text" else None
        if part == "multimodal":
            m = np.concatenate([np.ones((2, 6), int), mask], axis=1)
        assert_close(out[f"{part}_embeddings"], expected[f"{part}_embeddings"], mask=m, what=f"{what} {part}_embeddings")
        assert_close(out[f"{part}_pooler_output"], expected[f"{part}_pooler_output"],
                     what=f"{what} {part}_pooler_output")


def test_flava_model_matches_transformers():
    folder, expected = _reference()
    model = km.Backbone.from_preset(folder / "model")
    assert type(model).__name__ == "FlavaBackbone"
    inputs = _ours(_inputs())
    text = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def run(x):  # one compiled call under jax: the outputs, every state, both feature methods
        outs = model.outputs(x)
        return {"call": model(x), "image_states": outs["image_output"]["hidden_states"],
                "text_states": outs["text_output"]["hidden_states"],
                "text_features": model.encode_text({k: x[k] for k in text}),
                "image_features": model.encode_image({"pixel_values": x["pixel_values"]})}

    got = jit_under_jax(run)(inputs)
    _check(got["call"], expected, "FlavaModel")
    mask = _inputs()["attention_mask"]
    for part, m in (("image", None), ("text", mask)):
        states = got[f"{part}_states"]
        assert len(states) == sum(k.startswith(f"{part}_hidden_") for k in expected)
        for i, h in enumerate(states):
            assert_close(h, expected[f"{part}_hidden_{i}"], mask=m, what=f"{part} hidden_states[{i}]")
    assert_close(got["text_features"], expected["text_features"], mask=mask, what="get_text_features")
    assert_close(got["image_features"], expected["image_features"], what="get_image_features")


def test_flava_towers_match_transformers():
    """Standalone checkpoints: the image and text towers load the very weights FlavaModel's towers
    hold (whose outputs are checked above: no second forward); the multimodal tower runs on its
    own (no attention mask)."""
    folder, expected = _reference()
    whole = km.Backbone.from_preset(folder / "model")
    for name, cls in (("image_model", "FlavaImageBackbone"), ("text_model", "FlavaTextBackbone")):
        tower = km.Backbone.from_preset(folder / name)
        assert type(tower).__name__ == cls
        ours, theirs = tower.weights, getattr(whole, name).weights
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    mm = km.Backbone.from_preset(folder / "multimodal_model")
    assert type(mm).__name__ == "FlavaMultimodalBackbone"
    o = jit_under_jax(mm.outputs)({"hidden_states": _mm_hidden()})
    assert_close(o["last_hidden_state"], expected["mm_tower_last"], what="FlavaMultimodalModel")
    assert_close(o["pooler_output"], expected["mm_tower_pooled"], what="FlavaMultimodalModel pooler")
    assert len(o["hidden_states"]) == 2
    for i, h in enumerate(o["hidden_states"]):
        assert_close(h, expected[f"mm_tower_hidden_{i}"], what=f"FlavaMultimodalModel hidden_states[{i}]")


def test_flava_image_text_matcher_matches_transformers():
    """FlavaForPreTraining as km.ImageTextMatcher: its itm_logits (input_ids as input_ids_masked)."""
    folder, expected = _reference()
    model = km.ImageTextMatcher.from_preset(folder / "pretraining", preprocessor=False)
    assert type(model).__name__ == "FlavaImageTextMatcher" and model.head_from_checkpoint
    assert_close(model.predict_on_batch(_ours(_inputs())), expected["itm_logits"], what="itm_logits")


def test_flava_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    folder, expected = _reference()
    km.Backbone.from_preset(folder / "model").save_to_preset(tmp_path / "saved")
    model = T.FlavaModel.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        o = model(**{k: torch.tensor(v) for k, v in _inputs().items()})
    out = {}
    for part in ("image", "text", "multimodal"):
        out[f"{part}_embeddings"] = getattr(o, f"{part}_embeddings").numpy()
        out[f"{part}_pooler_output"] = getattr(o, f"{part}_output").pooler_output.numpy()
    _check(out, expected, "reloaded FlavaModel")


def test_flava_itm_reloads_in_transformers(tmp_path):
    """The ImageTextMatcher's save_to_preset: FlavaForPreTraining in Transformers (its MIM / MLM /
    MMM heads re-initialised), equal itm_logits."""
    import torch
    import transformers as T

    folder, expected = _reference()
    km.ImageTextMatcher.from_preset(folder / "pretraining", preprocessor=False).save_to_preset(tmp_path / "saved")
    model = T.FlavaForPreTraining.from_pretrained(tmp_path / "saved").eval()
    inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
    with torch.no_grad():
        o = model(input_ids_masked=inputs.pop("input_ids"), **inputs, return_loss=False)
    assert_close(o.itm_logits.numpy(), expected["itm_logits"], what="reloaded itm_logits")


def test_flava_keras_round_trip(tmp_path):
    """The composite (three nested towers) through a .keras file: same class, config and outputs
    (compiled calls: an eager JAX call of the whole model is slow)."""
    import keras

    folder, expected = _reference()
    model = km.Backbone.from_preset(folder / "model")
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    drop = ("name", "dtype")
    assert ({k: v for k, v in restored.get_config().items() if k not in drop}
            == {k: v for k, v in model.get_config().items() if k not in drop})
    _check(restored.predict_on_batch(_ours(_inputs())), expected, "FlavaModel from .keras")


def test_flava_image_processor_matches_transformers():
    """FlavaImageProcessor from the checkpoint's preprocessor_config.json and with the class defaults."""
    from keras_models.models.flava import FlavaImageProcessor

    folder, expected = _reference()
    for processor, key in ((FlavaImageProcessor.from_preset(folder / "model"), "processed"),
                           (FlavaImageProcessor(), "processed_defaults")):
        out = processor(_images())["pixel_values"]
        want = expected[key].transpose(0, 2, 3, 1)
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, atol=1e-5)
    with pytest.raises(ConfigError, match="return_codebook_pixels"):
        FlavaImageProcessor.from_config({"return_codebook_pixels": True})


def _bad(tmp_path, folder, edit):
    config = json.loads((folder / "model" / "config.json").read_text())
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    for f in (folder / "model").glob("*.safetensors"):
        (tmp_path / f.name).symlink_to(f)
    return tmp_path


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["text_config"].update(num_attention_heads=5), "num_attention_heads"),
    (lambda c: c["image_config"].update(image_size="16"), "image_size"),
    (lambda c: c["multimodal_config"].update(model_type="flava_text_model"), "multimodal_config"),
    (lambda c: c.update(projection_dim=0), "projection_dim"),
])
def test_flava_bad_config_raises(tmp_path, edit, needle):
    folder, _ = _reference()
    with pytest.raises(ConfigError, match=needle):
        km.Backbone.from_preset(_bad(tmp_path, folder, edit))


def test_flava_wrong_image_size_raises():
    folder, _ = _reference()
    model = km.Backbone.from_preset(folder / "image_model")
    with pytest.raises(InputError, match="pixel_values"):
        model(np.zeros((1, 24, 24, 3), "float32"))
