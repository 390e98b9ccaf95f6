"""Encoder families on the shared encoder: backbone and every head against tiny random
Transformers models, with padded batches and non-default config switches."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference, text_inputs

TINY = dict(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=20, max_position_embeddings=40)
STD = ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")
SUFFIX = {"Backbone": "Model", "MaskedLM": "ForMaskedLM", "TextClassifier": "ForSequenceClassification",
          "TokenClassifier": "ForTokenClassification", "QuestionAnswerer": "ForQuestionAnswering",
          "Discriminator": "ForPreTraining"}

# spec name -> (HF class prefix, config class, config kwargs, input style, tasks)
SPECS = {
    "xlm_roberta": ("XLMRoberta", "XLMRobertaConfig", dict(TINY, pad_token_id=1, hidden_act="gelu_new"), "roberta", STD),
    "camembert": ("Camembert", "CamembertConfig", dict(TINY, pad_token_id=1, type_vocab_size=1), "roberta", STD),
    "data2vec_text": ("Data2VecText", "Data2VecTextConfig", dict(TINY, pad_token_id=1, layer_norm_eps=1e-6), "roberta", STD),
    "roberta_preln": ("RobertaPreLayerNorm", "RobertaPreLayerNormConfig", dict(TINY, pad_token_id=1), "roberta", STD),
    "xlm_roberta_xl": ("XLMRobertaXL", "XLMRobertaXLConfig", dict(TINY, pad_token_id=1, hidden_act="relu"), "roberta", STD),
    "ernie": ("Ernie", "ErnieConfig", dict(TINY, use_task_id=True, task_type_vocab_size=4, type_vocab_size=3), "ernie", STD),
    "megatron_bert": ("MegatronBert", "MegatronBertConfig", dict(TINY, layer_norm_eps=1e-5), "bert", STD),
    "rembert": ("RemBert", "RemBertConfig", dict(TINY, input_embedding_size=12, output_embedding_size=20,
                                                 layer_norm_eps=1e-6), "bert", STD),
    "electra": ("Electra", "ElectraConfig", dict(TINY, embedding_size=12, hidden_act="gelu_new"), "bert",
                STD + ("Discriminator",)),
    "electra_same_width": ("Electra", "ElectraConfig", dict(TINY, embedding_size=16), "bert", ("Backbone", "MaskedLM")),
    "albert": ("Albert", "AlbertConfig", dict(TINY, embedding_size=12, num_hidden_layers=4, num_hidden_groups=2,
                                              inner_group_num=2), "bert", STD),
    "albert_shared": ("Albert", "AlbertConfig", dict(TINY, embedding_size=12, num_hidden_layers=3), "bert",
                      ("Backbone", "TextClassifier")),
    "distilbert": ("DistilBert", "DistilBertConfig", dict(vocab_size=99, dim=16, n_layers=2, n_heads=2, hidden_dim=20,
                                                         max_position_embeddings=40, activation="gelu"), "none", STD),
    "distilbert_sinusoidal": ("DistilBert", "DistilBertConfig", dict(vocab_size=99, dim=16, n_layers=1, n_heads=4,
                                                                    hidden_dim=24, max_position_embeddings=40,
                                                                    sinusoidal_pos_embds=True, activation="relu"),
                              "none", ("Backbone", "MaskedLM")),
    "roformer": ("RoFormer", "RoFormerConfig", dict(TINY, embedding_size=12, hidden_act="gelu_new"), "bert", STD),
    "roformer_rotary_value": ("RoFormer", "RoFormerConfig", dict(TINY, num_attention_heads=4, rotary_value=True),
                              "bert", ("Backbone",)),
    "esm_rotary": ("Esm", "EsmConfig", dict(TINY, vocab_size=33, pad_token_id=1, mask_token_id=32, token_dropout=True,
                                            position_embedding_type="rotary", emb_layer_norm_before=True),
                   "esm", ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier")),
    "esm_absolute": ("Esm", "EsmConfig", dict(TINY, vocab_size=33, pad_token_id=1, mask_token_id=32, hidden_act="relu"),
                     "esm", ("Backbone", "MaskedLM")),
    "mpnet": ("MPNet", "MPNetConfig", dict(TINY, relative_attention_num_buckets=40, hidden_act="gelu_new"), "roberta", STD),
    "deberta_v2": ("DebertaV2", "DebertaV2Config", dict(TINY, relative_attention=True, position_buckets=6,
                                                      pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                                                      conv_kernel_size=3, embedding_size=12, share_att_key=False,
                                                      position_biased_input=False, max_relative_positions=20,
                                                      hidden_act="gelu_new"), "bert", STD),
    "deberta_v2_shared": ("DebertaV2", "DebertaV2Config", dict(TINY, relative_attention=True, pos_att_type="c2p|p2c",
                                                             share_att_key=True, type_vocab_size=2, max_relative_positions=5),
                          "bert", ("Backbone", "TextClassifier")),
}
CASES = [(spec, task) for spec, (*_, tasks) in SPECS.items() for task in tasks]


def _inputs(style):
    if style == "roberta":
        return text_inputs(pad_id=1, token_types=False)
    if style == "esm":  # protein tokens (vocab 33) with a few [MASK] (32) tokens for token dropout
        inputs = text_inputs(vocab=32, pad_id=1, token_types=False)
        inputs["input_ids"][0, 2] = inputs["input_ids"][1, 4] = 32
        return inputs
    inputs = text_inputs(pad_id=0, token_types=style != "none")
    if style == "ernie":
        inputs["task_type_ids"] = (np.arange(9)[None, :] % 4 * inputs["attention_mask"]).astype("int64")
    return inputs


def _build(spec, task):
    import transformers

    prefix, config_cls, kwargs, _, _ = SPECS[spec]
    cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
    return getattr(transformers, prefix + SUFFIX[task])(cfg)


def _ref(spec, task):
    inputs = _inputs(SPECS[spec][3])
    folder, expected = hf_reference(f"enc-{spec}-{task}", lambda: _build(spec, task), inputs)
    return folder, inputs, expected


def _masked_mean(h, mask):
    m = mask[..., None].astype("float32")
    return (h * m).sum(1) / m.sum(1)


def check_parity(prefix, spec, task, folder, inputs, expected, cls=None):
    """Load ``folder`` through the public ``from_preset`` of ``cls`` (default: the task's class,
    or Backbone + TextEmbedder) and compare every output with the Transformers reference (for a
    task, its backbone's output too)."""
    mask = inputs["attention_mask"]
    cls = cls or (km.Backbone if task == "Backbone" else getattr(km, task))
    model = cls.from_preset(folder)
    assert type(model).__name__.startswith(prefix)
    out = model(inputs)
    if task == "Backbone":
        assert_close(out, expected["last_hidden_state"], mask=mask, what=f"{spec} backbone")
        want = _masked_mean(expected["last_hidden_state"], mask)
        assert_close(km.TextEmbedder.from_preset(folder)(inputs), want, what=f"{spec} TextEmbedder")
        return out
    assert model.head_from_checkpoint
    if isinstance(out, dict):  # question answering: start/end logits, (batch, [questions,] seq)
        for k in ("start_logits", "end_logits"):
            m = np.broadcast_to(mask[:, None, :], expected[k].shape) if expected[k].ndim == 3 else mask
            assert_close(out[k], expected[k], mask=m, what=f"{spec} {task} {k}")
    elif task == "TextClassifier":  # one row per sequence
        assert_close(out, expected["logits"], what=f"{spec} {task}")
    else:
        assert_close(out, expected["logits"], mask=mask, what=f"{spec} {task}")
    assert_backbone_close(model, inputs, expected, mask=mask, what=f"{spec} {task}")
    return out


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", CASES)
def test_parity(spec, task):
    folder, inputs, expected = _ref(spec, task)
    cls = km.models.ElectraDiscriminator if task == "Discriminator" else None
    check_parity(SPECS[spec][0], spec, task, folder, inputs, expected, cls=cls)


ROUND_TRIP = [spec for spec in SPECS if not spec.endswith(("_same_width", "_shared", "_value"))]


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_save_to_preset_reloads_in_transformers(spec, tmp_path):
    """config_to_hf + exported weights: Transformers reloads the saved preset with no missing or
    unexpected tensors and computes the same hidden states."""
    import torch
    import transformers

    folder, inputs, expected = _ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert type(model).__name__ == SPECS[spec][0] + "Model"
    missing = [k for k in info["missing_keys"] if not any(s in k for s in ("pooler", "contact_head", "inv_freq"))]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")
