"""Encoder models are plain Keras models: .keras save/load restores config (every switch) and
weights, on every backend (under tools/test.sh each case runs under torch and one of jax /
tensorflow: tests/conftest.py, ONE_OF_TWO)."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_keras_round_trip

T = dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=20, max_position_embeddings=16)


def _make(name):
    m = km.models
    return {
        "albert_groups": lambda: m.AlbertMaskedLM(m.AlbertBackbone(**T, embedding_size=8, num_layer_groups=2)),
        "electra_discriminator": lambda: m.ElectraDiscriminator(m.ElectraBackbone(**T, embedding_size=8)),
        "deberta_v2": lambda: m.DebertaV2TextClassifier(m.DebertaV2Backbone(
            **T, relative_attention=True, pos_att_type=["c2p", "p2c"], position_buckets=4, conv_kernel_size=3,
            norm_rel_ebd=True, position_biased_input=False), num_classes=3),
        "roformer": lambda: m.RoFormerTokenClassifier(m.RoFormerBackbone(**T), num_classes=2),
        "mpnet": lambda: m.MPNetQuestionAnswerer(m.MPNetBackbone(**T, relative_attention_buckets=32)),
        "esm_rotary": lambda: m.EsmTextEmbedder(m.EsmBackbone(**T, rotary="computed", position_mode="none",
                                                                token_dropout=True, mask_token_id=3)),
        "ernie_task_ids": lambda: m.ErnieMaskedLM(m.ErnieBackbone(**T, task_type_vocab_size=3)),
        "rembert_untied": lambda: m.RemBertMaskedLM(m.RemBertBackbone(**T, embedding_size=8, output_embedding_size=12),
                                                    tie_word_embeddings=False),
        "distilbert": lambda: m.DistilBertTextClassifier(m.DistilBertBackbone(**T), num_classes=2),
        "xlm_roberta_xl": lambda: m.XLMRobertaXLBackbone(**T),
    }[name]()


@pytest.mark.parametrize("name", ["albert_groups", "electra_discriminator", "deberta_v2", "roformer", "mpnet",
                                  "esm_rotary", "ernie_task_ids", "rembert_untied", "distilbert", "xlm_roberta_xl"])
def test_keras_save_load(name, tmp_path):
    model = _make(name)
    ids = np.array([[5, 6, 7, 8, 3], [9, 10, 11, 1, 1]], "int32")
    x = {"input_ids": ids, "attention_mask": (ids != 1).astype("int32")}
    assert_keras_round_trip(model, x, tmp_path)
