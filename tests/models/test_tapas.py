"""TAPAS: backbone, table question answering, sequence classification and masked LM against tiny
random Transformers models, on (question, table) inputs with the seven token-type ids."""

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_backbone_close, assert_close, assert_keras_round_trip, hf_reference, to_numpy

HEADS = {
    # task -> Transformers class
    "Backbone": "TapasModel",
    "TableQuestionAnswerer": "TapasForQuestionAnswering",
    "TextClassifier": "TapasForSequenceClassification",
    "MaskedLM": "TapasForMaskedLM",
}

CONFIGS = {
    # aggregation head, rows and columns clipped to the head's table limits, per-cell positions
    "agg": dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                max_position_embeddings=64, type_vocab_sizes=[3, 5, 7, 2, 6, 6, 4], layer_norm_eps=1e-7,
                hidden_act="gelu", num_aggregation_labels=4, max_num_rows=4, max_num_columns=3,
                temperature=0.8, num_labels=3),
    # no aggregation head, absolute positions, empty column allowed, relu, untied MLM decoder
    "plain": dict(vocab_size=101, hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=20,
                  max_position_embeddings=40, type_vocab_sizes=[2, 6, 8, 3, 5, 5, 3], layer_norm_eps=1e-5,
                  hidden_act="relu", reset_position_index_per_cell=False, allow_empty_column_selection=True,
                  tie_word_embeddings=False, num_labels=2),
}


def table_inputs(config, seq=24, seed=0):
    """Two (question, table) examples laid out as TapasTokenizer does: [CLS] question [SEP], then
    the header (row 0) and data rows, one or two word pieces per cell, the second example padded."""
    rng = np.random.RandomState(seed)
    sizes = config["type_vocab_sizes"]
    n_cols, n_rows = sizes[1] - 1, sizes[2] - 2
    ids = rng.randint(3, config["vocab_size"], size=(2, seq))
    tt = np.zeros((2, seq, 7), "int64")
    mask = np.ones((2, seq), "int64")
    for b, question in enumerate((4, 3)):
        ids[b, 0], ids[b, question + 1] = 1, 2  # [CLS], [SEP]
        pos = question + 2
        for row in range(n_rows + 1):
            for col in range(1, n_cols + 1):
                for _ in range(rng.randint(1, 3)):
                    if pos < seq:
                        tt[b, pos, :3] = (1, col, row)
                        tt[b, pos, 3] = rng.randint(sizes[3])
                        tt[b, pos, 4:] = [rng.randint(s) for s in sizes[4:]]
                        pos += 1
        if b == 1:
            ids[b, seq - 3:], tt[b, seq - 3:], mask[b, seq - 3:] = 0, 0, 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def _build(name, task):
    import transformers

    cfg = transformers.TapasConfig(**CONFIGS[name])
    return getattr(transformers, HEADS[task])(cfg)


def _save_aggregation(inputs):
    """extra_save hook: the aggregation logits, which the shared reference does not record."""

    def save(folder, model):
        import torch

        if getattr(model.config, "num_aggregation_labels", 0) and hasattr(model, "aggregation_classifier"):
            with torch.no_grad():
                out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
            np.save(folder.parent / "logits_aggregation.npy", out.logits_aggregation.numpy())

    return save


def _ref(name, task):
    inputs = table_inputs(CONFIGS[name])
    folder, expected = hf_reference(f"tapas-{name}-{HEADS[task]}", lambda: _build(name, task), inputs,
                                    extra_save=_save_aggregation(inputs))
    extra = folder.parent / "logits_aggregation.npy"
    if extra.exists():
        expected["logits_aggregation"] = np.load(extra)
    return folder, inputs, expected


def assert_cell_logits_close(actual, expected, mask, what):
    """Cell-selection logits: the selected column's cells to 1e-4, the rest pushed below -5000
    on both sides (to 1e-4 of their size)."""
    actual, expected = np.asarray(to_numpy(actual)), np.asarray(expected)
    real = mask.astype(bool)
    kept = real & (expected > -5000)
    assert kept.any() and (real & (expected < -5000)).any(), f"{what}: the reference selects nothing or everything"
    assert_close(actual[kept], expected[kept], what=f"{what} selected cells")
    pushed = real & ~kept
    assert (actual[pushed] < -5000).all(), f"{what}: cells outside the selected column not pushed down"
    assert_close(actual[pushed], expected[pushed], what=f"{what} other cells")


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("task", sorted(HEADS))
def test_parity(name, task):
    folder, inputs, expected = _ref(name, task)
    cls = km.Backbone if task == "Backbone" else getattr(km, task)
    model = cls.from_preset(folder)
    if task != "Backbone":
        assert model.head_from_checkpoint
    out = model.predict_on_batch(inputs)
    mask = inputs["attention_mask"]
    if task == "Backbone":
        assert_close(out, expected["last_hidden_state"], mask=mask, what=name)
        return
    if task == "TableQuestionAnswerer":
        assert_cell_logits_close(out["logits"], expected["logits"], mask, f"{name} logits")
        if CONFIGS[name].get("num_aggregation_labels"):
            assert_close(out["logits_aggregation"], expected["logits_aggregation"], what=f"{name} aggregation")
        else:
            assert "logits_aggregation" not in out
    elif task == "TextClassifier":
        assert_close(out, expected["logits"], what=name)
    else:
        assert_close(out, expected["logits"], mask=mask, what=name)
    assert_backbone_close(model, inputs, expected, mask=mask, what=f"{name} {task}")


@pytest.mark.parametrize("name,task", [("agg", "TableQuestionAnswerer"), ("plain", "MaskedLM")])
def test_save_to_preset_reloads_in_transformers(name, task, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _ref(name, task)
    model = getattr(km, task).from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf_model = getattr(transformers, HEADS[task]).from_pretrained(tmp_path / "saved").eval()
    from keras_models.models.tapas.tasks import QA_KEYS

    head_keys = QA_KEYS if task != "TableQuestionAnswerer" else {}  # the other heads do not write them
    for key, value in CONFIGS[name].items():
        if key != "num_labels" and key not in head_keys:
            assert getattr(hf_model.config, key) == value, key
    with torch.no_grad():
        out = hf_model(**{k: torch.tensor(v) for k, v in inputs.items()})
    mask = inputs["attention_mask"]
    if task == "TableQuestionAnswerer":
        assert_cell_logits_close(out.logits.numpy(), expected["logits"], mask, "transformers reload")
        assert_close(out.logits_aggregation.numpy(), expected["logits_aggregation"], what="reload aggregation")
    else:
        assert_close(out.logits.numpy(), expected["logits"], mask=mask, what="transformers reload")


def test_keras_round_trip(tmp_path):
    folder, inputs, _ = _ref("agg", "TableQuestionAnswerer")
    model = km.TableQuestionAnswerer.from_preset(folder)
    restored = assert_keras_round_trip(model, inputs, tmp_path, atol=1e-4)
    assert restored.max_num_rows == 4 and restored.temperature == 0.8 and restored.num_aggregation_labels == 4


@pytest.mark.backend_independent  # numpy post-processing of the recorded logits
def test_answer_coordinates_match_transformers(tmp_path):
    import torch
    import transformers

    from keras_models.models.tapas.tasks import answer_coordinates

    _, inputs, expected = _ref("agg", "TableQuestionAnswerer")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EMPTY]", "a", "b"]) + "\n")
    tokenizer = transformers.TapasTokenizer(str(vocab))
    data = {k: torch.tensor(v) for k, v in inputs.items()}
    for threshold in (0.5, 0.2):
        want = tokenizer.convert_logits_to_predictions(
            data, torch.tensor(expected["logits"]), torch.tensor(expected["logits_aggregation"]),
            cell_classification_threshold=threshold)
        got = answer_coordinates(inputs, expected, cell_classification_threshold=threshold)
        assert got[0] == want[0] and got[1] == list(want[1]), threshold
    assert any(got[0]), "no cell selected: the check is empty"


def _config(folder, tmp_path, **changes):
    import json
    import shutil

    target = tmp_path / "bad"
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("change,key", [
    (dict(type_vocab_sizes=[3, 5, 7]), "type_vocab_sizes"),
    (dict(type_vocab_sizes=[3, 5, 7, 2, 0, 6, 4]), "type_vocab_sizes"),
    (dict(select_one_column=False), "select_one_column"),
    (dict(max_num_rows=0), "max_num_rows"),
    (dict(temperature=0), "temperature"),
    (dict(is_decoder=True), "is_decoder"),
    (dict(reset_position_index_per_cell="yes"), "reset_position_index_per_cell"),
])
def test_bad_config_values_raise(change, key, tmp_path):
    folder, _, _ = _ref("agg", "TableQuestionAnswerer")
    with pytest.raises(ConfigError, match=key):
        km.TableQuestionAnswerer.from_preset(_config(folder, tmp_path, **change), load_weights=False)


def test_bad_token_type_ids_raise():
    folder, inputs, _ = _ref("agg", "Backbone")
    model = km.Backbone.from_preset(folder)
    with pytest.raises(InputError, match="token_type_ids"):
        model.predict({**inputs, "token_type_ids": inputs["token_type_ids"][..., :3]})
    bad = inputs["token_type_ids"].copy()
    bad[0, 5, 2] = 7  # row id past type_vocab_sizes[2]
    with pytest.raises(InputError, match="row_ids"):
        model.predict({**inputs, "token_type_ids": bad})


@pytest.mark.backend_independent  # file handling only: no model is run
def test_checkpoint_with_tapas_tokenizer_files_loads(tmp_path):
    """A checkpoint folder as the Hub has them (vocab.txt + TapasTokenizer's tokenizer_config.json):
    every task loads without a (text-only) preprocessor, and TapasTokenizer reads the folder."""
    import shutil

    import transformers

    folder, _, _ = _ref("agg", "TableQuestionAnswerer")
    target = tmp_path / "ckpt"
    shutil.copytree(folder, target)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EMPTY]", "a"]) + "\n")
    transformers.TapasTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(target)
    for task, kwargs in (("TableQuestionAnswerer", {}), ("TextClassifier", {"num_classes": 2}), ("MaskedLM", {})):
        assert getattr(km, task).from_preset(target, load_weights=False, **kwargs).preprocessor is None
    tokenizer = km.models.TapasTokenizer.from_preset(target)
    assert tokenizer.tokenize("a b") == ["a", "[UNK]"] and tokenizer.tokenize("n/a") == ["[EMPTY]"]
