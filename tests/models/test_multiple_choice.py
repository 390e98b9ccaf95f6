"""km.MultipleChoice: Transformers' ``*ForMultipleChoice`` (tiny random models) loaded through the
public ``from_preset``, logits (batch, num_choices) against Transformers' on (batch, choices, seq)
inputs; families whose multiple-choice head differs from their sequence classifier's (RoBERTa:
BERT's pooler; ELECTRA: the sequence summary; MRA: pre_classifier + relu) and ones that reuse it
with one unit (DeBERTa-v2's ContextPooler, Funnel's classification head)."""

import numpy as np
import pytest
from keras import ops

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.models import mra_kernel_standin as standin
from tests.parity import assert_close, hf_reference, text_inputs

TINY = dict(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=20, max_position_embeddings=40)
BATCH, CHOICES, SEQ = 2, 3, 9

# family -> (Transformers class prefix, config class, config kwargs, pad id, token types?)
FAMILIES = {
    "bert": ("Bert", "BertConfig", dict(TINY, hidden_act="gelu_new", type_vocab_size=2), 0, True),
    "roberta": ("Roberta", "RobertaConfig", dict(TINY, pad_token_id=1, classifier_dropout=0.3), 1, False),
    # factorised embeddings, a tanh summary (not the default gelu)
    "electra": ("Electra", "ElectraConfig", dict(TINY, embedding_size=12, summary_activation="tanh",
                                                 hidden_act="relu"), 0, True),
    "deberta_v2": ("DebertaV2", "DebertaV2Config",
                   dict(TINY, relative_attention=True, position_buckets=6, pos_att_type=["p2c", "c2p"],
                        norm_rel_ebd="layer_norm", position_biased_input=False, max_relative_positions=20,
                        pooler_hidden_act="gelu"), 0, True),
    "funnel": ("Funnel", "FunnelConfig",
               dict(vocab_size=99, d_model=16, n_head=2, d_head=6, d_inner=20, block_sizes=[1, 1],
                    num_decoder_layers=1, hidden_act="relu"), 0, True),
    # MRA on the CUDA-kernel stand-in (tests/models/test_mra.py): 128 tokens, head size 64
    "mra": ("Mra", "MraConfig", dict(vocab_size=99, hidden_size=128, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=48, max_position_embeddings=128, block_per_row=2,
                                     pad_token_id=1, type_vocab_size=2), 1, True),
}


def _inputs(family):
    pad, token_types = FAMILIES[family][3], FAMILIES[family][4]
    if family == "mra":  # one question, two choices; equal masks (see test_mra._inputs)
        flat = text_inputs(batch=2, seq=128, pad_id=1, pad_last=0, token_types=True)
        flat["input_ids"][:, -20:] = 1
        for k in ("attention_mask", "token_type_ids"):
            flat[k][:, -20:] = 0
        return {k: v.reshape(1, 2, 128) for k, v in flat.items()}
    flat = text_inputs(batch=BATCH * CHOICES, seq=SEQ, pad_id=pad, token_types=token_types)
    flat["input_ids"][2, SEQ - 2:] = pad  # a second padded choice, in the first question
    flat["attention_mask"][2, SEQ - 2:] = 0
    return {k: v.reshape(BATCH, CHOICES, SEQ) for k, v in flat.items()}


def _ref(family):
    inputs = _inputs(family)
    prefix, config_cls, kwargs, _, _ = FAMILIES[family]

    def build():
        import transformers

        if family == "mra":
            standin.install()
        return getattr(transformers, prefix + "ForMultipleChoice")(getattr(transformers, config_cls)(**kwargs))

    folder, expected = hf_reference(f"mc-{family}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("family")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_parity(family):
    folder, inputs, expected = _ref(family)
    model = km.MultipleChoice.from_preset(folder)
    assert type(model).__name__ == FAMILIES[family][0] + "MultipleChoice"
    assert model.head_from_checkpoint
    out = model(inputs)
    assert tuple(out.shape) == expected["logits"].shape == inputs["input_ids"].shape[:2]
    assert np.abs(expected["logits"]).max() > 1e-3
    assert_close(out, expected["logits"], what=f"{family} MultipleChoice")


@pytest.mark.parametrize("family", ["roberta", "electra"])
def test_save_to_preset_reloads_in_transformers(family, tmp_path):
    """The saved preset is a <Family>ForMultipleChoice checkpoint Transformers reloads with no
    missing or unexpected tensors and the same logits."""
    import json

    import torch
    import transformers

    folder, inputs, expected = _ref(family)
    km.MultipleChoice.from_preset(folder).save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[family][0] + "ForMultipleChoice"]
    model, info = transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path / "saved",
                                                                          output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what=f"{family} round trip")


def test_fit_default_loss():
    """The default loss is cross-entropy over the choices (Transformers' loss on its logits);
    fit trains with it."""
    folder, inputs, expected = _ref("bert")
    model = km.MultipleChoice.from_preset(folder)
    labels = np.array([2, 0])
    z = expected["logits"] - expected["logits"].max(-1, keepdims=True)
    want = float(np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(BATCH), labels]))
    loss = float(ops.convert_to_numpy(model.default_loss()(labels, model(inputs))))
    assert abs(loss - want) < 1e-4, (loss, want)
    before = ops.convert_to_numpy(model.head.out.kernel)
    history = model.fit(inputs, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(ops.convert_to_numpy(model.head.out.kernel), before)


def test_bad_inputs_and_config():
    folder, inputs, _ = _ref("bert")
    model = km.MultipleChoice.from_preset(folder)
    with pytest.raises(InputError, match="input_ids"):
        model({k: v[:, 0] for k, v in inputs.items()})  # (batch, seq): no choice axis
    with pytest.raises(ConfigError, match="num_classes"):
        km.MultipleChoice.from_preset(folder, num_classes=3)


def test_preprocessor_matches_transformers_pairs(tmp_path):
    """(prompt, [choices]) -> the ids Transformers' tokenizer gives [[prompt, choice], ...]."""
    import transformers

    from keras_models.tasks.multiple_choice import MultipleChoicePreprocessor
    from keras_models.tokenizers import Tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "a", "mat", "dog", "ran",
             "where", "did", "it", "?", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    samples = [("where did the cat sit ?", ["on a mat .", "the dog", "ran"]),
               ("the dog ran", ["a cat", "on the mat", "where ?"])]
    pre = MultipleChoicePreprocessor(Tokenizer.from_preset(tmp_path))
    out = pre(samples)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path)(
        [[p, c] for p, cs in samples for c in cs], padding=True, return_tensors="np")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(out[k], ref[k].reshape(2, 3, -1))
    with pytest.raises(InputError, match="numbers of choices"):
        pre([samples[0], ("x", ["a"])])
