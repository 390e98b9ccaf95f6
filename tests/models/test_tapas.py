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
