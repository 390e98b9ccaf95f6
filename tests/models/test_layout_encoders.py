"""Document-layout encoders (LiLT, BROS, LayoutLMv3): backbone and every head against tiny random
Transformers models on padded batches with boxes, a Transformers reload of ``save_to_preset``,
``.keras`` round trips and bad-config errors."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.models.test_encoders import SUFFIX, check_parity
from tests.models.test_encoders_extra_c import _boxes
from tests.parity import assert_close, assert_keras_round_trip, hf_reference, text_inputs, to_numpy

# --- LiLT: text stream + narrow layout stream sharing one attention map ----------------------------
LILT = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
            max_position_embeddings=40, hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3,
            pad_token_id=1, channel_shrink_ratio=4, max_2d_position_embeddings=1001)
LILT_TASKS = ("Backbone", "TextClassifier", "TokenClassifier", "QuestionAnswerer")


def _lilt_ref(task):
    import transformers

    inputs = text_inputs(pad_id=1, token_types=True)
    inputs["bbox"] = _boxes(inputs)

    def build():
        cfg = transformers.LiltConfig(**LILT, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, "Lilt" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"layout-lilt-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", LILT_TASKS)
def test_lilt_parity(task):
    folder, inputs, expected = _lilt_ref(task)
    out = check_parity("Lilt", "lilt", task, folder, inputs, expected)
    if task == "Backbone":  # the boxes count
        model = km.Backbone.from_preset(folder)
        no_box = model(dict(inputs, bbox=np.zeros_like(inputs["bbox"])))
        assert np.abs(to_numpy(out) - to_numpy(no_box)).max() > 1e-2


def test_lilt_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _lilt_ref("TextClassifier")
    km.TextClassifier.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.LiltForSequenceClassification.from_pretrained(tmp_path / "saved",
                                                                            output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what="lilt round trip")


# --- BROS: attention scores against sinusoids of box offsets (float boxes in 0..1) ----------------
BROS = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
            max_position_embeddings=40, hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3,
            bbox_scale=50.0)
BROS_TASKS = ("Backbone", "TokenClassifier")


def _bros_boxes(inputs, seed=3):
    rng = np.random.RandomState(seed)
    b, s = inputs["input_ids"].shape
    x0, y0 = rng.uniform(0, 0.6, (b, s)), rng.uniform(0, 0.6, (b, s))
    boxes = np.stack([x0, y0, x0 + rng.uniform(0, 0.4, (b, s)), y0 + rng.uniform(0, 0.4, (b, s))], -1)
    return (boxes * inputs["attention_mask"][..., None]).astype("float32")


def _bros_ref(task):
    import transformers

    inputs = text_inputs(pad_id=0, token_types=True)
    inputs["bbox"] = _bros_boxes(inputs)

    def build():
        cfg = transformers.BrosConfig(**BROS, num_labels=3)
        return getattr(transformers, "Bros" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"layout-bros-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", BROS_TASKS)
def test_bros_parity(task):
    folder, inputs, expected = _bros_ref(task)
    out = check_parity("Bros", "bros", task, folder, inputs, expected)
    if task == "Backbone":  # eight corners given directly == four coordinates expanded
        model = km.Backbone.from_preset(folder)
        quad = inputs["bbox"][..., [0, 1, 2, 1, 2, 3, 0, 3]]
        assert_close(model(dict(inputs, bbox=quad)), to_numpy(out), atol=1e-5)
        with pytest.raises(km.errors.InputError, match="needs 'bbox'"):
            model({k: v for k, v in inputs.items() if k != "bbox"})


def test_bros_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _bros_ref("TokenClassifier")
    km.TokenClassifier.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.BrosForTokenClassification.from_pretrained(tmp_path / "saved",
                                                                          output_loading_info=True)
    # position_ids: a persistent arange buffer that Transformers rebuilds (the loader ignores it)
    assert info["missing_keys"] <= {"bros.embeddings.position_ids"}, info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], mask=inputs["attention_mask"], what="bros round trip")
