"""Document-layout encoders (LiLT, BROS, LayoutLMv3): backbone and every head against tiny random
Transformers models on padded batches with boxes, a Transformers reload of ``save_to_preset``,
``.keras`` round trips and bad-config errors."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.models.test_encoders import SUFFIX
from tests.models.test_encoders_extra_c import _boxes
from tests.parity import assert_backbone_close, assert_close, hf_reference, text_inputs, to_numpy


def _masked_mean(h, mask):
    m = mask[..., None].astype("float32")
    return (h * m).sum(1) / m.sum(1)


def check_parity(prefix, spec, task, folder, inputs, expected, full_mask=None, embedder=True):
    """Load ``folder`` through the public ``from_preset`` (Backbone, or the task's class) and compare
    its outputs and its backbone's hidden state with Transformers' (compiled ``predict_on_batch``:
    eager JAX compiles op by op). ``full_mask``: the mask over every output position (text + image
    tokens); ``embedder``: also check the TextEmbedder (masked mean of the hidden states)."""
    mask = inputs["attention_mask"]
    full = mask if full_mask is None else full_mask
    model = (km.Backbone if task == "Backbone" else getattr(km, task)).from_preset(folder)
    assert type(model).__name__.startswith(prefix)
    out = model.predict_on_batch(inputs)
    if task == "Backbone":
        assert_close(out, expected["last_hidden_state"], mask=full, what=f"{spec} backbone")
        if embedder:
            want = _masked_mean(expected["last_hidden_state"], mask)
            got = km.TextEmbedder.from_preset(folder).predict_on_batch(inputs)
            assert_close(got, want, what=f"{spec} TextEmbedder")
        return model, out
    assert model.head_from_checkpoint
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=full, what=f"{spec} {task} {k}")
    elif task == "TextClassifier":
        assert_close(out, expected["logits"], what=f"{spec} {task}")
    else:
        assert_close(out, expected["logits"], mask=mask, what=f"{spec} {task}")
    hidden = model.backbone.predict_on_batch(inputs)
    assert_backbone_close(model, inputs, expected, mask=full, hidden=hidden, what=f"{spec} {task}")
    return model, out

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
    model, out = check_parity("Lilt", "lilt", task, folder, inputs, expected)
    if task == "Backbone":  # the boxes count
        no_box = model.predict_on_batch(dict(inputs, bbox=np.zeros_like(inputs["bbox"])))
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
    model, out = check_parity("Bros", "bros", task, folder, inputs, expected)
    if task == "Backbone":  # eight corners given directly == four coordinates expanded
        quad = inputs["bbox"][..., [0, 1, 2, 1, 2, 3, 0, 3]]
        assert_close(model.predict_on_batch(dict(inputs, bbox=quad)), to_numpy(out), atol=1e-5)
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


# --- LayoutLMv3: concatenated box embeddings, 1D/2D relative biases, optional image patches --------
V3 = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
          max_position_embeddings=40, hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3,
          pad_token_id=1, coordinate_size=4, shape_size=4, max_2d_position_embeddings=1001, rel_pos_bins=8,
          max_rel_pos=20, rel_2d_pos_bins=16, max_rel_2d_pos=40, input_size=8, patch_size=4)
V3_SPECS = {  # name -> (config kwargs, tasks)
    "image": (dict(V3), ("Backbone", "TextClassifier", "TokenClassifier", "QuestionAnswerer")),
    # text only; 11 labels: Transformers' token classifier becomes dense + tanh + linear
    "text": (dict(V3, visual_embed=False, hidden_act="relu"), ("Backbone", "TokenClassifier")),
}
V3_CASES = [(spec, task) for spec, (_, tasks) in V3_SPECS.items() for task in tasks]


def _v3_ref(spec, task):
    import transformers

    kwargs, _ = V3_SPECS[spec]
    inputs = text_inputs(pad_id=1, token_types=True)
    inputs["bbox"] = _boxes(inputs)
    if kwargs.get("visual_embed", True):
        inputs["pixel_values"] = np.random.RandomState(5).randn(2, 3, 8, 8).astype("float32")
    labels = 2 if task == "QuestionAnswerer" else 11 if spec == "text" else 3

    def build():
        cfg = transformers.LayoutLMv3Config(**kwargs, num_labels=labels)
        return getattr(transformers, "LayoutLMv3" + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"layout-v3-{spec}-{task}", build, inputs)
    ours = dict(inputs)
    if "pixel_values" in ours:
        ours["pixel_values"] = ours["pixel_values"].transpose(0, 2, 3, 1)  # channels_last
    return folder, ours, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", V3_CASES)
def test_layoutlmv3_parity(spec, task):
    folder, inputs, expected = _v3_ref(spec, task)
    mask = inputs["attention_mask"]
    full = mask if "pixel_values" not in inputs else np.concatenate([mask, np.ones((2, 5), mask.dtype)], 1)
    model, out = check_parity("LayoutLMv3", f"v3 {spec}", task, folder, inputs, expected, full_mask=full,
                              embedder=False)
    if task == "Backbone" and spec == "image":  # text only through the same weights: the image counts
        text_only = to_numpy(model.predict_on_batch({k: v for k, v in inputs.items() if k != "pixel_values"}))
        assert text_only.shape[1] == 9
        assert np.abs(text_only - to_numpy(out)[:, :9]).max() > 1e-2


def test_layoutlmv3_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _v3_ref("image", "QuestionAnswerer")
    km.QuestionAnswerer.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.LayoutLMv3ForQuestionAnswering.from_pretrained(tmp_path / "saved",
                                                                             output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    hf_inputs = dict(inputs, pixel_values=inputs["pixel_values"].transpose(0, 3, 1, 2))
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in hf_inputs.items()})
    assert_close(out.start_logits.numpy(), expected["start_logits"], what="layoutlmv3 round trip")


# --- .keras round trips (new blocks and inputs) and bad configs ----------------------------------
def _keras_case(name):
    m = km.models
    t = dict(vocab_size=50, num_layers=1, num_heads=2, intermediate_size=20, max_position_embeddings=16)
    return {
        "lilt": lambda: m.LiltTokenClassifier(m.LiltBackbone(**t, hidden_size=24, pad_token_id=1,
                                                             channel_shrink_ratio=2,
                                                             max_2d_position_embeddings=1001), num_classes=3),
        "bros": lambda: m.BrosTokenClassifier(m.BrosBackbone(**t, hidden_size=64, dim_bbox=4, bbox_scale=10.0),
                                              num_classes=3),
        "layoutlmv3": lambda: m.LayoutLMv3TokenClassifier(m.LayoutLMv3Backbone(
            **t, hidden_size=24, coordinate_size=4, shape_size=4, max_2d_position_embeddings=1001,
            rel_pos_bins=8, max_rel_pos=10, rel_2d_pos_bins=8, max_rel_2d_pos=20, input_size=8, patch_size=4),
            num_classes=12),
    }[name]()


@pytest.mark.one_case_per_pass("name")
@pytest.mark.parametrize("name", ["lilt", "bros", "layoutlmv3"])
def test_keras_save_load(name, tmp_path):
    model = _keras_case(name)
    model.backbone.build_from_dummy()  # symbolically: a first eager call would build op by op
    ids = np.array([[5, 6, 7, 8, 3], [9, 10, 11, 1, 1]], "int32")
    x = {"input_ids": ids, "attention_mask": (ids != 1).astype("int32"),
         "bbox": np.array([[[1, 2, 3, 4]] * 5, [[10, 20, 300, 400]] * 5], "int32")}
    if name == "bros":
        x["bbox"] = (x["bbox"] / 1000).astype("float32")
    if name == "layoutlmv3":
        x["pixel_values"] = np.random.RandomState(0).randn(2, 8, 8, 3).astype("float32")
    _keras_round_trip(model, x, tmp_path)


def _keras_round_trip(model, x, folder):
    """tests/parity.assert_keras_round_trip through compiled ``predict_on_batch`` (eager JAX
    compiles op by op): the same class, backbone config and outputs after ``.keras`` save/load."""
    import keras

    before = model.predict_on_batch(x)
    model.save(folder / "m.keras")
    restored = keras.saving.load_model(folder / "m.keras")
    assert type(restored) is type(model)
    drop = ("name", "dtype")
    assert ({k: v for k, v in restored.backbone.get_config().items() if k not in drop}
            == {k: v for k, v in model.backbone.get_config().items() if k not in drop})
    np.testing.assert_allclose(to_numpy(restored.predict_on_batch(x)), to_numpy(before), atol=1e-6)


BAD_CONFIGS = [
    ("lilt", "Backbone", {"hidden_size": 20}, "hidden_size"),                      # not a multiple of 6
    ("lilt", "Backbone", {"channel_shrink_ratio": 7}, "channel_shrink_ratio"),
    ("bros", "Backbone", {"dim_bbox": 6}, "dim_bbox"),
    ("bros", "Backbone", {"bbox_scale": "x"}, "bbox_scale"),
    ("v3", "Backbone", {"shape_size": 5}, "shape_size"),
    ("v3", "Backbone", {"text_embed": False}, "text_embed"),
    ("v3", "Backbone", {"patch_size": [4, 2]}, "patch_size"),
    ("v3", "Backbone", {"position_embedding_type": "relative_key"}, "position_embedding_type"),
]


@pytest.mark.parametrize("family,task,change,key", BAD_CONFIGS)
def test_bad_config_raises(family, task, change, key, tmp_path):
    import shutil

    folder = {"lilt": lambda: _lilt_ref(task)[0], "bros": lambda: _bros_ref(task)[0],
              "v3": lambda: _v3_ref("image", task)[0]}[family]()
    shutil.copytree(folder, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg.update(change)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=key):
        km.Backbone.from_preset(tmp_path / "m")


def test_lilt_roberta_tokenizer_loads(tmp_path):
    """LiLT checkpoints ship RoBERTa's byte-level BPE tokenizer: it loads with the model's folder and
    gives Transformers' ids."""
    import shutil

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["invoice total amount due date", "hello world of documents"] * 5, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                  pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    shutil.copytree(_lilt_ref("TokenClassifier")[0], tmp_path / "m")
    hf_tok.save_pretrained(tmp_path / "m")
    texts = ["invoice total", "hello world of documents due"]
    ours = km.Tokenizer.from_preset(tmp_path / "m")(texts, padding=True)
    want = hf_tok(texts, padding=True)["input_ids"]
    np.testing.assert_array_equal(np.asarray(ours["input_ids"]), np.asarray(want))
    assert km.TokenClassifier.from_preset(tmp_path / "m").preprocessor is not None


def _bpe_files(tmp_path):
    """A tiny byte-level BPE vocabulary (vocab.json + merges.txt) trained on a few words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.train_from_iterator(["invoice total amount due date", "hello world of documents"] * 5, trainer)
    tok.model.save(str(tmp_path))  # (ids < 60: inside the tiny model's vocabulary)
    return tmp_path / "vocab.json", tmp_path / "merges.txt"


def test_layoutlmv3_preprocessor_matches_transformers(tmp_path):
    """Words + one box per word -> ids and bbox equal to Transformers' LayoutLMv3 tokenizer (box on
    every piece of a word, the special boxes from tokenizer_config.json), fed to the model."""
    import shutil

    import transformers

    vocab, merges = _bpe_files(tmp_path)
    hf_tok = transformers.LayoutLMv3Tokenizer(vocab=str(vocab), merges=str(merges), sep_token_box=[7, 7, 9, 9])
    shutil.copytree(_v3_ref("text", "TokenClassifier")[0], tmp_path / "m")
    hf_tok.save_pretrained(tmp_path / "m")
    words = [["hello", "invoice", "totals"], ["world"]]
    boxes = [[[1, 2, 30, 40], [50, 60, 70, 80], [100, 110, 120, 130]], [[5, 6, 7, 8]]]
    want = hf_tok(words, boxes=boxes, padding=True)
    model = km.TokenClassifier.from_preset(tmp_path / "m")
    x = model.preprocessor([{"words": w, "boxes": b} for w, b in zip(words, boxes)])
    np.testing.assert_array_equal(x["input_ids"], np.asarray(want["input_ids"]))
    np.testing.assert_array_equal(x["attention_mask"], np.asarray(want["attention_mask"]))
    np.testing.assert_array_equal(x["bbox"], np.asarray(want["bbox"]))
    assert tuple(to_numpy(model.predict_on_batch(x)).shape) == (2, len(want["input_ids"][0]), 11)


def test_layoutlmv3_image_processor_pixel_values(tmp_path):
    """A LayoutLMv3 preprocessor_config.json (OCR off: the words and boxes come from the user)
    gives the pixel values of Transformers' LayoutLMv3ImageProcessor, channels_last."""
    import transformers

    from keras_models.preprocessing.image import ImageProcessor

    hf = transformers.LayoutLMv3ImageProcessor(apply_ocr=False, size={"height": 40, "width": 32})
    hf.save_pretrained(tmp_path)
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (50, 70, 3)).astype("uint8"), rng.randint(0, 256, (31, 29, 3)).astype("uint8")]
    want = hf(images, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    got = ImageProcessor.from_preset(tmp_path)(images)
    got = got["pixel_values"] if isinstance(got, dict) else got
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
