"""BERT and RoBERTa: backbone and every head against tiny random Transformers models."""

import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference, text_inputs

HEADS = {
    # generic task -> (HF class suffix, output keys)
    "Backbone": ("Model", ["last_hidden_state"]),
    "MaskedLM": ("ForMaskedLM", ["logits"]),
    "TextClassifier": ("ForSequenceClassification", ["logits"]),
    "TokenClassifier": ("ForTokenClassification", ["logits"]),
    "QuestionAnswerer": ("ForQuestionAnswering", ["start_logits", "end_logits"]),
}


def _make(transformers, cls_name, cfg):
    if cls_name.endswith("ForQuestionAnswering"):
        cfg.num_labels = 2
    return getattr(transformers, cls_name)(cfg)


def _bert(suffix):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, type_vocab_size=3,
        layer_norm_eps=1e-7, hidden_act="gelu", num_labels=3,
    )
    return _make(transformers, "Bert" + suffix, cfg)


def _bert_untied_relu(suffix):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=101, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=40, type_vocab_size=2,
        layer_norm_eps=1e-5, hidden_act="relu", tie_word_embeddings=False, num_labels=5,
    )
    return _make(transformers, "Bert" + suffix, cfg)


def _roberta(suffix):
    import transformers

    cfg = transformers.RobertaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, layer_norm_eps=1e-6,
        hidden_act="gelu_new", pad_token_id=1, num_labels=4,
    )
    return _make(transformers, "Roberta" + suffix, cfg)


BUILDERS = {"bert": _bert, "bert_untied_relu": _bert_untied_relu, "roberta": _roberta}


def _inputs(family):
    if family == "roberta":
        return text_inputs(pad_id=1, token_types=False)
    return text_inputs(pad_id=0, token_types=True)


def _ref(family, task):
    suffix, _ = HEADS[task]
    builder = BUILDERS[family]
    inputs = _inputs(family)

    folder, expected = hf_reference(f"{family}-{suffix}", lambda: builder(suffix), inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("family", sorted(BUILDERS))
@pytest.mark.parametrize("task", sorted(HEADS))
def test_parity(family, task):
    folder, inputs, expected = _ref(family, task)
    cls = km.Backbone if task == "Backbone" else getattr(km, task)
    model = cls.from_preset(folder)
    if task != "Backbone":
        assert model.head_from_checkpoint
    out = model(inputs)
    mask = inputs["attention_mask"]
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=mask, what=f"{family} {task} {k}")
    elif task == "TextClassifier":
        assert_close(out, expected["logits"], what=f"{family} {task}")
    else:
        key = "last_hidden_state" if task == "Backbone" else "logits"
        assert_close(out, expected[key], mask=mask, what=f"{family} {task}")
    if task != "Backbone":
        assert_backbone_close(model, inputs, expected, mask=mask, what=f"{family} {task}")
