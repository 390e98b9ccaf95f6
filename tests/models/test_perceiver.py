"""Perceiver IO over text (masked LM and sequence classification) against tiny random Transformers
models: logits, the latents (last hidden state) and every hidden state on a padded batch; a
Transformers reload of ``save_to_preset``, a ``.keras`` round trip and bad-config errors."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import (assert_backbone_close, assert_close, assert_keras_round_trip, hf_reference, jit_under_jax,
                          text_inputs, to_numpy)

# masked LM: GELU, query residual on, two blocks of two self-attention layers (shared weights)
MLM = dict(num_latents=5, d_latents=24, d_model=32, num_blocks=2, num_self_attends_per_block=2,
           num_self_attention_heads=4, num_cross_attention_heads=2, vocab_size=262, max_position_embeddings=16,
           attention_probs_dropout_prob=0.0)
# classifier: ReLU, q/k narrower than the latents, cross-attention shaped on the queries, widened
# MLPs, no query residual in the encoder's cross-attention
CLS = dict(num_latents=6, d_latents=24, d_model=16, num_blocks=1, num_self_attends_per_block=2,
           num_self_attention_heads=2, num_cross_attention_heads=4, qk_channels=16, v_channels=24,
           cross_attention_shape_for_attention="q", self_attention_widening_factor=2,
           cross_attention_widening_factor=3, use_query_residual=False, hidden_act="relu", vocab_size=262,
           max_position_embeddings=12, num_labels=3, attention_probs_dropout_prob=0.0)
CASES = {"MaskedLM": ("PerceiverForMaskedLM", MLM, 11), "TextClassifier": ("PerceiverForSequenceClassification",
                                                                          CLS, 9)}


def _ref(task):
    import transformers

    arch, kwargs, seq = CASES[task]
    inputs = text_inputs(batch=2, seq=seq, vocab=262, pad_last=4, token_types=False, low=6)

    def build():
        return getattr(transformers, arch)(transformers.PerceiverConfig(**kwargs))

    def hidden(folder, model):
        import torch

        with torch.no_grad():
            out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}, output_hidden_states=True)
        np.save(folder / "hidden_states.npy", np.stack([h.numpy() for h in out.hidden_states]))

    folder, expected = hf_reference(f"perceiver_{task}", build, inputs, extra_save=hidden)
    expected["hidden_states"] = np.load(folder / "hidden_states.npy")
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", list(CASES))
def test_perceiver_parity(task):
    folder, inputs, expected = _ref(task)
    model = getattr(km, task).from_preset(folder)
    assert type(model).__name__ == {"MaskedLM": "PerceiverMaskedLM", "TextClassifier": "PerceiverTextClassifier"}[task]
    # logits and the encoder's states in one compiled call under JAX (eager JAX is slow op by op)
    logits, (z, states) = jit_under_jax(lambda x: (model(x), model.backbone.encode(x, hidden_states=True)))(inputs)
    logits = to_numpy(logits)
    mask = inputs["attention_mask"] if task == "MaskedLM" else None
    want = expected["logits"][:, : logits.shape[1]] if task == "MaskedLM" else expected["logits"]
    assert_close(logits, want, mask=mask, what=f"perceiver {task} logits")
    assert_backbone_close(model, inputs, expected, hidden=z, what=f"perceiver {task}")
    assert len(states) == len(expected["hidden_states"])
    for i, (got, ref) in enumerate(zip(states, expected["hidden_states"])):
        assert_close(got, ref, what=f"perceiver {task} hidden state {i}")


def test_perceiver_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _ref("TextClassifier")
    # with a PerceiverTokenizer (bytes, no vocabulary file) as the task's preprocessor, saved back
    (tmp_path / "src").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "src" / name).write_bytes((folder / name).read_bytes())
    transformers.PerceiverTokenizer().save_pretrained(tmp_path / "src")
    model = km.TextClassifier.from_preset(tmp_path / "src")
    assert model.preprocessor is not None
    model.save_to_preset(tmp_path / "saved")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert type(tok).__name__ == "PerceiverTokenizer" and tok(TEXTS)["input_ids"] == \
        transformers.PerceiverTokenizer()(TEXTS)["input_ids"]
    ref, info = transformers.PerceiverForSequenceClassification.from_pretrained(tmp_path / "saved",
                                                                                 output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        out = ref.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], what="perceiver round trip")


def test_perceiver_keras_round_trip(tmp_path):
    folder, inputs, expected = _ref("TextClassifier")
    model = km.TextClassifier.from_preset(folder)
    assert_keras_round_trip(model, inputs, tmp_path)


@pytest.mark.parametrize("change, key", [
    (dict(cross_attention_shape_for_attention="k"), "cross_attention_shape_for_attention"),
    (dict(v_channels=16), "v_channels"),
    (dict(d_latents=26), "d_latents"),
    (dict(qk_channels=0), "qk_channels"),
])
def test_perceiver_bad_config(tmp_path, change, key):
    import json

    from keras_models.errors import ConfigError

    folder, _, _ = _ref("MaskedLM")
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.Backbone.from_preset(tmp_path, load_weights=False)


TEXTS = ["Hello [MASK] w\u00f6rld", "\u00e9 \u65e5\u672c  x", "", " a [SEP][CLS]b\n\t[PAD]"]


def test_perceiver_tokenizer(tmp_path):
    """km.Tokenizer on a PerceiverTokenizer folder (UTF-8 bytes, specials split out of the text): ids,
    pairs, padded batches, tokens and decoding equal to Transformers'."""
    import transformers

    ref = transformers.PerceiverTokenizer()
    ref.save_pretrained(tmp_path / "tok")
    tok = km.Tokenizer.from_preset(tmp_path / "tok")
    for text in TEXTS:
        assert list(np.ravel(tok(text)["input_ids"])) == ref(text)["input_ids"], text
    assert list(np.ravel(tok("ab", "c\u00e9")["input_ids"])) == ref("ab", "c\u00e9")["input_ids"]
    got, want = tok(TEXTS, padding=True), ref(TEXTS, padding=True, return_tensors="np")
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(np.asarray(got[key]), want[key])
    ids = ref(TEXTS[0])["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    for skip in (False, True):
        assert tok.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    assert (len(tok), tok.vocab_size) == (len(ref), ref.vocab_size)
