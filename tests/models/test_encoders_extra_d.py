"""More BERT-shaped families (RoCBert, SqueezeBERT) through the shared encoder harness
(tests/models/test_encoders.py): backbone and every head against tiny random Transformers models,
a Transformers reload of ``save_to_preset``, and ``.keras`` round trips of the new blocks and heads
of this file and tests/models/test_encoders_extra_c.py (DPR, LayoutLM, FNet)."""

import numpy as np
import pytest

import keras_models as km
from tests.models.test_encoders import STD, SUFFIX, TINY, check_parity
from tests.parity import assert_close, assert_keras_round_trip, hf_reference, text_inputs


# --- RoCBert (shape / pronunciation inputs) and SqueezeBERT (grouped 1x1 convolutions) --------------
ROC = dict(TINY, shape_vocab_size=20, pronunciation_vocab_size=15)
SQUEEZE = dict(TINY, embedding_size=16, q_groups=2, k_groups=4, v_groups=1, post_attention_groups=2,
               intermediate_groups=4, output_groups=2, hidden_act="gelu_new", layer_norm_eps=1e-6)
GROUPED = {  # name -> (class prefix, HF config class, config kwargs, input style, tasks)
    "roc_bert": ("RoCBert", "RoCBertConfig", dict(ROC, shape_embed_dim=8, pronunciation_embed_dim=6,
                                                  hidden_act="gelu_new"), "roc", STD),
    # concat_input false: BERT's embedding averaged with the shape vectors (pronunciation disabled)
    "roc_bert_mean": ("RoCBert", "RoCBertConfig", dict(ROC, shape_embed_dim=16, pronunciation_embed_dim=16,
                                                       concat_input=False, enable_pronunciation=False),
                      "roc", ("Backbone", "MaskedLM")),
    "squeezebert": ("SqueezeBert", "SqueezeBertConfig", SQUEEZE, "bert", STD),
}


def _grouped_ref(spec, task):
    import transformers

    prefix, config_cls, kwargs, style, _ = GROUPED[spec]
    inputs = text_inputs(pad_id=0, token_types=True)
    if style == "roc":
        rng = np.random.RandomState(2)
        inputs["input_shape_ids"] = rng.randint(1, 20, inputs["input_ids"].shape) * inputs["attention_mask"]
        inputs["input_pronunciation_ids"] = rng.randint(1, 15, inputs["input_ids"].shape) * inputs["attention_mask"]

    def build():
        cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, prefix + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"encc-{spec}-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", [(s, t) for s, (*_, tasks) in GROUPED.items() for t in tasks])
def test_grouped_parity(spec, task):
    folder, inputs, expected = _grouped_ref(spec, task)
    check_parity(GROUPED[spec][0], spec, task, folder, inputs, expected)


@pytest.mark.parametrize("spec", ["roc_bert", "squeezebert"])
def test_grouped_save_to_preset_reloads_in_transformers(spec, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _grouped_ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if "pooler" not in k]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")


# --- .keras save / load restores every switch and weight of the new blocks and heads ----------------
def _keras_case(name):
    m = km.models
    t = dict(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24,
             max_position_embeddings=16)
    return {
        "dpr": lambda: m.DPRTextEmbedder(m.DPRBackbone(**t, projection_dim=6, role="ctx"), normalize=True),
        "layoutlm": lambda: m.LayoutLMTokenClassifier(m.LayoutLMBackbone(**t, max_2d_position_embeddings=1001),
                                                      num_classes=3),
        "fnet": lambda: m.FNetMaskedLM(m.FNetBackbone(**{**t, "num_heads": 1}, type_vocab_size=4),
                                       tie_word_embeddings=False),
        "roc_bert": lambda: m.RoCBertTextClassifier(m.RoCBertBackbone(
            **t, shape_embed_dim=4, shape_vocab_size=9, pronunciation_embed_dim=16, pronunciation_vocab_size=7,
            enable_shape=False), num_classes=2),
        "squeezebert": lambda: m.SqueezeBertQuestionAnswerer(m.SqueezeBertBackbone(
            **t, embedding_size=16, q_groups=2, k_groups=1, v_groups=4, post_attention_groups=2,
            intermediate_groups=2, output_groups=4)),
    }[name]()


# .keras saving is the generic Keras path (tested at length in tests/presets/test_roundtrip.py); these
# two cover what is new here: an extra box input and extra id inputs with their own tables.
@pytest.mark.parametrize("name", ["layoutlm", "roc_bert"])
def test_keras_save_load(name, tmp_path):
    model = _keras_case(name)
    ids = np.array([[5, 6, 7, 8, 3], [9, 10, 11, 0, 0]], "int32")
    x = {"input_ids": ids, "attention_mask": (ids != 0).astype("int32")}
    if name == "layoutlm":
        x["bbox"] = np.array([[[1, 2, 3, 4]] * 5, [[10, 20, 300, 400]] * 5], "int32")
    if name == "roc_bert":
        x["input_pronunciation_ids"] = ids % 7
    assert_keras_round_trip(model, x, tmp_path)
