"""LXMERT against Transformers 5: LxmertModel (backbone: language / vision / pooled outputs and every
hidden state), LxmertForQuestionAnswering (km.VisualQuestionAnswerer) and LxmertForPreTraining's
prediction_logits (km.MaskedLM), cross_relationship_score (km.ImageTextMatcher) and
question_answering_score (km.VisualQuestionAnswerer), from one tiny config with options that
change the numbers: gelu_new, three token types, 12-wide region features with 5-wide boxes,
towers of different depths (2 language, 1 relationship, 2 cross layers), a padded text row and a
masked object. The tokenizer (LxmertTokenizer, BERT WordPiece) gives Transformers' ids.
"""

import hashlib
import inspect

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, cached_folder, randomize_weights

CONFIG = dict(vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=40, hidden_act="gelu_new",
              l_layers=2, r_layers=1, x_layers=2, visual_feat_dim=12, visual_pos_dim=5, max_position_embeddings=16,
              type_vocab_size=3, num_qa_labels=7, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
HEADS = {"model": "LxmertModel", "qa": "LxmertForQuestionAnswering", "pretraining": "LxmertForPreTraining"}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "the", "color", "of", "cat", "dog", "a", "on",
         "table", "##s", "red", "blue", "?", "."] + [f"w{i}" for i in range(44)]
TEXTS = ["What is the color of the cats?", "a dog on a table.", "blue w7 w30 qqq"]


def _inputs():
    rng = np.random.RandomState(3)
    return {"input_ids": np.array([[2, 5, 7, 9, 11, 3], [2, 9, 13, 3, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
            "token_type_ids": np.array([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 0, 0]]),
            "visual_feats": rng.randn(2, 3, 12).astype("float32"),
            "visual_pos": rng.rand(2, 3, 5).astype("float32"),
            "visual_attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "lxmert-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        out = {}
        inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
        for i, (head, arch) in enumerate(HEADS.items()):
            torch.manual_seed(i)
            model = randomize_weights(getattr(T, arch)(T.LxmertConfig(**CONFIG)), seed=i).eval()
            model.save_pretrained(tmp / head)
            model = getattr(T, arch).from_pretrained(tmp / head).eval()
            with torch.no_grad():
                o = model(**inputs, output_hidden_states=True)
            if head == "model":
                for k in ("language_output", "vision_output", "pooled_output"):
                    out[k] = getattr(o, k).numpy()
            if head == "qa":
                tok = T.LxmertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
                tok.save_pretrained(tmp / head)
                tok = T.AutoTokenizer.from_pretrained(tmp / head)
                out["ids"] = tok(TEXTS, padding=True, return_tensors="np")["input_ids"]
                out["qa"] = o.question_answering_score.numpy()
            if head == "pretraining":
                out["mlm"] = o.prediction_logits.numpy()
                out["itm"] = o.cross_relationship_score.numpy()
                out["pretraining_qa"] = o.question_answering_score.numpy()
            for k in ("language", "vision"):
                for j, h in enumerate(getattr(o, f"{k}_hidden_states")):
                    out[f"{head}_{k}_{j}"] = h.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


def _assert_hidden(out, expected, head):
    text, objects = _inputs()["attention_mask"], _inputs()["visual_attention_mask"]
    for k, mask, n in (("language", text, 4), ("vision", objects, 3)):
        states = out[f"{k}_hidden_states"]
        assert len(states) == n
        for j, h in enumerate(states):
            assert_close(h, expected[f"{head}_{k}_{j}"], mask=mask, what=f"{HEADS[head]} {k}_hidden_states[{j}]")


def test_lxmert_backbone_matches_transformers():
    folder, expected = _reference()
    backbone = km.Backbone.from_preset(folder / "model")
    assert type(backbone).__name__ == "LxmertBackbone"
    out = backbone.predict_on_batch(_inputs())
    text, objects = _inputs()["attention_mask"], _inputs()["visual_attention_mask"]
    assert_close(out["language_output"], expected["language_output"], mask=text, what="language_output")
    assert_close(out["vision_output"], expected["vision_output"], mask=objects, what="vision_output")
    assert_close(out["pooled_output"], expected["pooled_output"], what="pooled_output")
    _assert_hidden(out, expected, "model")
    inputs = _inputs()
    with pytest.raises(InputError, match="visual_pos"):
        backbone({k: v for k, v in inputs.items() if k != "visual_pos"})
    with pytest.raises(InputError, match="visual_feats"):
        backbone(dict(inputs, visual_feats=inputs["visual_feats"][..., :4]))


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["qa", "mlm", "itm", "pretraining_qa"])
def test_lxmert_heads_match_transformers(head):
    folder, expected = _reference()
    task = {"qa": km.VisualQuestionAnswerer, "mlm": km.MaskedLM, "itm": km.ImageTextMatcher,
            "pretraining_qa": km.VisualQuestionAnswerer}[head]
    model = task.from_preset(folder / ("qa" if head == "qa" else "pretraining"))
    assert model.head_from_checkpoint
    inputs = _inputs()
    mask = inputs["attention_mask"] if head == "mlm" else None
    assert_close(model.predict_on_batch(inputs), expected[head], mask=mask, what=f"{head} logits")


@pytest.mark.backend_independent
def test_lxmert_tokenizer_matches_transformers():
    folder, expected = _reference()
    ids = km.Tokenizer.from_preset(folder / "qa")(TEXTS, padding=True)["input_ids"]
    np.testing.assert_array_equal(ids, expected["ids"])


def test_lxmert_reloads_in_transformers(tmp_path):
    """Our save_to_preset of the VQA model and of the (tied) MLM, reloaded by Transformers."""
    import torch
    import transformers as T

    folder, expected = _reference()
    inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
    km.VisualQuestionAnswerer.from_preset(folder / "qa").save_to_preset(tmp_path / "qa")
    hf = T.LxmertForQuestionAnswering.from_pretrained(tmp_path / "qa").eval()
    with torch.no_grad():
        assert_close(hf(**inputs).question_answering_score.numpy(), expected["qa"], what="reloaded VQA")
    assert T.AutoTokenizer.from_pretrained(tmp_path / "qa")(TEXTS, padding=True, return_tensors="np")[
        "input_ids"].tolist() == expected["ids"].tolist()
    km.MaskedLM.from_preset(folder / "pretraining").save_to_preset(tmp_path / "mlm")
    hf = T.LxmertForPreTraining.from_pretrained(tmp_path / "mlm").eval()
    with torch.no_grad():
        logits = hf(**inputs).prediction_logits.numpy()
    assert_close(logits, expected["mlm"], mask=_inputs()["attention_mask"], what="reloaded prediction_logits")


def test_lxmert_keras_round_trip(tmp_path):
    """A .keras file of the VQA model (with its tokenizer) restores the same class, config and outputs
    (compiled predictions: eager JAX would run the model op by op)."""
    import keras

    folder, expected = _reference()
    model = km.VisualQuestionAnswerer.from_preset(folder / "qa")
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.num_classes == 7
    assert restored.backbone.get_config()["num_cross_layers"] == 2
    assert restored.preprocessor.tokenizer(TEXTS, padding=True)["input_ids"].tolist() == expected["ids"].tolist()
    assert_close(restored.predict_on_batch(_inputs()), expected["qa"], what="restored .keras VQA")


@pytest.mark.backend_independent
def test_lxmert_bad_config(tmp_path):
    import json
    import shutil

    folder, _ = _reference()
    for key, value, words in (("x_layers", -1, "x_layers"), ("r_layers", 0, "r_layers"),
                              ("position_embedding_type", "relative_key", "position_embedding_type"),
                              ("num_attention_heads", 5, "hidden_size"), ("visual_feat_dim", "12", "visual_feat_dim")):
        bad = tmp_path / key
        shutil.copytree(folder / "model", bad)
        config = json.loads((bad / "config.json").read_text())
        config[key] = value
        if key == "r_layers":
            config["x_layers"] = 0
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(ConfigError, match=words):
            km.Backbone.from_preset(bad)
