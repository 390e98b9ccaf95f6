"""More BERT-shaped families (DPR, LayoutLM, FNet): backbone and every head against tiny random
Transformers models (padded batches, non-default switches) and a Transformers reload of
``save_to_preset``, through the shared encoder harness (tests/models/test_encoders.py)."""

import numpy as np
import pytest

import keras_models as km
from tests.models.test_encoders import SUFFIX, TINY, check_parity
from tests.parity import assert_close, hf_reference, text_inputs, to_numpy

# --- DPR: question / context encoders (pooler_output) and the reader (span + relevance logits) ----
DPR = {
    # projection_dim > 0: encode_proj after [CLS]
    "question": ("DPRQuestionEncoder", dict(TINY, projection_dim=8, hidden_act="gelu_new", type_vocab_size=3)),
    "ctx": ("DPRContextEncoder", dict(TINY, layer_norm_eps=1e-6)),
    "reader": ("DPRReader", dict(TINY, hidden_act="relu")),
}


def _dpr_ref(role):
    import transformers

    arch, kwargs = DPR[role]
    inputs = text_inputs(pad_id=0, token_types=role != "reader")

    def build():
        return getattr(transformers, arch)(transformers.DPRConfig(**kwargs, output_hidden_states=True))

    folder, expected = hf_reference(f"encc-dpr-{role}", build, inputs)
    return folder, inputs, expected


@pytest.mark.parametrize("role", sorted(DPR))
def test_dpr_parity(role):
    folder, inputs, expected = _dpr_ref(role)
    mask = inputs["attention_mask"]
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "DPRBackbone" and backbone.role == role
    assert_close(backbone(inputs), expected["last_hidden_state"], mask=mask, what=f"dpr {role} backbone")
    if role == "reader":
        model = km.QuestionAnswerer.from_preset(folder)
        assert model.head_from_checkpoint
        out = model(inputs)
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=mask, what=f"dpr reader {k}")
        assert_close(out["relevance_logits"], expected["relevance_logits"], what="dpr reader relevance")
    else:
        model = km.TextEmbedder.from_preset(folder)
        assert model.head_from_checkpoint and type(model).__name__ == "DPRTextEmbedder"
        assert_close(model(inputs), expected["pooler_output"], what=f"dpr {role} pooler_output")


@pytest.mark.parametrize("role", sorted(DPR))
def test_dpr_save_to_preset_reloads_in_transformers(role, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _dpr_ref(role)
    task = km.QuestionAnswerer if role == "reader" else km.TextEmbedder
    task.from_preset(folder).save_to_preset(tmp_path / "saved")
    arch = DPR[role][0]
    model, info = getattr(transformers, arch).from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()})
    keys = ("start_logits", "end_logits", "relevance_logits") if role == "reader" else ("pooler_output",)
    for key in keys:
        mask = inputs["attention_mask"] if key in ("start_logits", "end_logits") else None
        assert_close(getattr(out, key).numpy(), expected[key], mask=mask, what=f"dpr {role} {key} round trip")
    assert km.Backbone.from_preset(tmp_path / "saved").role == role


# --- LayoutLM: BERT + 2D box positions (bbox input) ------------------------------------------------
STD = ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")
LAYOUTLM = dict(TINY, hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3, max_2d_position_embeddings=1001)


def _boxes(inputs, seed=1):
    """Valid random boxes (x0 <= x1, y0 <= y1 in 0..1000), [0]*4 on the first token and padding,
    [1000]*4 on each row's last real token (LayoutLM's [CLS] / [SEP] boxes)."""
    rng = np.random.RandomState(seed)
    b, s = inputs["input_ids"].shape
    x0, y0 = rng.randint(0, 600, (b, s)), rng.randint(0, 600, (b, s))
    boxes = np.stack([x0, y0, x0 + rng.randint(0, 400, (b, s)), y0 + rng.randint(0, 400, (b, s))], -1)
    boxes[:, 0] = 0
    for i, n in enumerate(inputs["attention_mask"].sum(1)):
        boxes[i, n - 1] = 1000
        boxes[i, n:] = 0
    return boxes.astype("int64")


def _layoutlm_ref(task):
    import transformers

    inputs = text_inputs(pad_id=0, token_types=True)
    inputs["bbox"] = _boxes(inputs)

    def build():
        cfg = transformers.LayoutLMConfig(**LAYOUTLM, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, "LayoutLM" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"encc-layoutlm-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", STD)
def test_layoutlm_parity(task):
    folder, inputs, expected = _layoutlm_ref(task)
    out = check_parity("LayoutLM", "layoutlm", task, folder, inputs, expected)
    if task == "Backbone":  # no bbox: every box [0, 0, 0, 0], as in Transformers
        model = km.Backbone.from_preset(folder)
        no_box = to_numpy(model({k: v for k, v in inputs.items() if k != "bbox"}))
        assert_close(no_box, to_numpy(model(dict(inputs, bbox=np.zeros_like(inputs["bbox"])))), atol=1e-6)
        assert np.abs(to_numpy(out) - no_box).max() > 1e-2  # the boxes count


def test_layoutlm_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _layoutlm_ref("TextClassifier")  # (its pooler too)
    km.TextClassifier.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.LayoutLMForSequenceClassification.from_pretrained(tmp_path / "saved",
                                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what="layoutlm round trip")


def test_layoutlm_preprocessor_and_box_errors(tmp_path):
    """Words + one box per word: the box repeats on each word piece, [CLS] and padding get
    [0, 0, 0, 0], [SEP] [1000]*4; ids equal Transformers' tokenizer on the same words. Bad boxes
    and word/box count mismatches raise InputError naming them."""
    import transformers

    from keras_models.errors import InputError

    folder, inputs, _ = _layoutlm_ref("TokenClassifier")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "in", "##voice", "total", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(99 - len(vocab))]) + "\n")
    hf_tok = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"))
    hf_tok.save_pretrained(tmp_path / "tok")
    model = km.TokenClassifier.from_preset(folder, preprocessor=False)
    pre = km.models.LayoutLMPreprocessor(km.Tokenizer.from_preset(tmp_path / "tok"))
    words = [["hello", "invoice", "totals"], ["world"]]
    boxes = [[[1, 2, 30, 40], [50, 60, 70, 80], [100, 110, 120, 130]], [[5, 6, 7, 8]]]
    x = pre([{"words": w, "boxes": b} for w, b in zip(words, boxes)])
    want = hf_tok(words, is_split_into_words=True, padding=True)
    np.testing.assert_array_equal(x["input_ids"], np.asarray(want["input_ids"]))
    np.testing.assert_array_equal(x["bbox"][0], [[0] * 4, [1, 2, 30, 40], [50, 60, 70, 80], [50, 60, 70, 80],
                                                 [100, 110, 120, 130], [100, 110, 120, 130], [1000] * 4])
    np.testing.assert_array_equal(x["bbox"][1], [[0] * 4, [5, 6, 7, 8], [1000] * 4] + [[0] * 4] * 4)
    assert tuple(model(x).shape) == (2, 7, 3)
    with pytest.raises(InputError, match="sample 1: 1 words but 2 boxes"):
        pre([(words[0], boxes[0]), (["world"], [[5, 6, 7, 8], [1, 1, 1, 1]])])
    with pytest.raises(InputError, match=r"sample 0: boxes\[1, 2\] = 1001 is outside 0..1000"):
        pre([(["hello", "world"], [[1, 2, 3, 4], [5, 6, 1001, 8]])])
    with pytest.raises(InputError, match="bbox.*outside 0..1000"):
        model(dict(inputs, bbox=inputs["bbox"] + 1))
    with pytest.raises(InputError, match="predict: bbox.*x0 <= x1"):
        bad = inputs["bbox"].copy()
        bad[0, 1] = [10, 10, 5, 20]
        model.predict(dict(inputs, bbox=bad), verbose=0)


# --- FNet: Fourier mixing, no attention mask (padding is mixed in, as in Transformers) -------------
FNET = dict(vocab_size=99, hidden_size=16, num_hidden_layers=2, intermediate_size=20, max_position_embeddings=40,
            type_vocab_size=3, hidden_act="gelu", layer_norm_eps=1e-6, pad_token_id=0)


def _fnet_ref(task):
    import transformers

    inputs = text_inputs(pad_id=0, token_types=True)
    mask = inputs.pop("attention_mask")  # Transformers' FNet takes none

    def build():
        cfg = transformers.FNetConfig(**FNET, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, "FNet" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"encc-fnet-{task}", build, inputs)
    return folder, inputs, mask, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", STD)
def test_fnet_parity(task):
    folder, inputs, mask, expected = _fnet_ref(task)
    model = (km.Backbone if task == "Backbone" else getattr(km, task)).from_preset(folder)
    assert type(model).__name__.startswith("FNet")
    out = model(inputs)
    if task == "Backbone":  # every position counts, padding included; an attention_mask changes nothing
        assert_close(out, expected["last_hidden_state"], what="fnet backbone")
        assert_close(model(dict(inputs, attention_mask=mask)), expected["last_hidden_state"], what="fnet masked")
        embedder = km.TextEmbedder.from_preset(folder)
        want = (expected["last_hidden_state"] * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        assert_close(embedder(dict(inputs, attention_mask=mask)), want, what="fnet TextEmbedder")
        return
    assert model.head_from_checkpoint
    for key in ("start_logits", "end_logits") if task == "QuestionAnswerer" else ("logits",):
        assert_close(out[key] if isinstance(out, dict) else out, expected[key], what=f"fnet {task} {key}")


def test_fnet_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, _, expected = _fnet_ref("MaskedLM")
    km.MaskedLM.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.FNetForMaskedLM.from_pretrained(tmp_path / "saved", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if "pooler" not in k]  # FNetForMaskedLM's unused pooler
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what="fnet round trip")


# --- I-BERT (float: quant_mode false) and Bert Generation's encoder ---------------------------------
QUANT = ("integer", "scaling_factor", "x_min", "x_max", "shift")  # I-BERT's unused quantisation buffers
MORE = {  # name -> (our class prefix, HF builder (task -> model), input style, tasks)
    "ibert": ("IBert", lambda t: _hf("IBert" + SUFFIX[t], "IBertConfig", t, dict(TINY, pad_token_id=1,
                                                                                  layer_norm_eps=1e-6)),
              "roberta", STD),
    "bert_generation": ("BertGeneration", lambda t: _hf("BertGenerationEncoder", "BertGenerationConfig", t,
                                                         dict(TINY, hidden_act="gelu_new", layer_norm_eps=1e-5)),
                        "none", ("Backbone",)),
}


def _hf(cls_name, config_cls, task, kwargs):
    import transformers

    cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
    return getattr(transformers, cls_name)(cfg)


def _more_ref(spec, task):
    inputs = text_inputs(pad_id=1 if MORE[spec][2] == "roberta" else 0, token_types=False)
    folder, expected = hf_reference(f"encc-{spec}-{task}", lambda: MORE[spec][1](task), inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", [(s, t) for s, (*_, tasks) in MORE.items() for t in tasks])
def test_more_parity(spec, task):
    folder, inputs, expected = _more_ref(spec, task)
    check_parity(MORE[spec][0], spec, task, folder, inputs, expected)


@pytest.mark.parametrize("spec", sorted(MORE))
def test_more_save_to_preset_reloads_in_transformers(spec, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _more_ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not any(s in k for s in ("pooler",) + QUANT)]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")


def test_ibert_quant_mode_is_refused(tmp_path):
    import json
    import shutil

    from keras_models.errors import ConfigError

    folder, _, _ = _more_ref("ibert", "Backbone")
    shutil.copytree(folder, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    (tmp_path / "q" / "config.json").write_text(json.dumps(dict(config, quant_mode=True)))
    with pytest.raises(ConfigError, match="quant_mode"):
        km.Backbone.from_preset(tmp_path / "q")


# --- MarkupLM: XPath tag / subscript embeddings (xpath_tags_seq, xpath_subs_seq inputs) -------------
MARKUPLM = dict(TINY, max_depth=4, xpath_unit_hidden_size=6, max_xpath_tag_unit_embeddings=12,
                max_xpath_subs_unit_embeddings=15, tag_pad_id=11, subs_pad_id=14, hidden_act="gelu_new",
                layer_norm_eps=1e-6)


def _markuplm_ref(task):
    import transformers

    inputs = text_inputs(pad_id=0, token_types=True)
    rng = np.random.RandomState(3)
    shape = inputs["input_ids"].shape + (4,)
    inputs["xpath_tags_seq"] = rng.randint(0, 12, shape)
    inputs["xpath_subs_seq"] = rng.randint(0, 15, shape)

    def build():
        cfg = transformers.MarkupLMConfig(**MARKUPLM, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, "MarkupLM" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"encc-markuplm-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ("Backbone", "TextClassifier", "TokenClassifier", "QuestionAnswerer"))
def test_markuplm_parity(task):
    folder, inputs, expected = _markuplm_ref(task)
    check_parity("MarkupLM", "markuplm", task, folder, inputs, expected)


def test_markuplm_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _markuplm_ref("TextClassifier")  # (its pooler too)
    km.TextClassifier.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.MarkupLMForSequenceClassification.from_pretrained(tmp_path / "saved",
                                                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what="markuplm round trip")
