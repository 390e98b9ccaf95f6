"""Text preprocessors: shapes, label alignment, masking and packing (numpy only)."""

import numpy as np
import pytest
from tok_refs import hf_tokenizer, our_tokenizer

from keras_models.preprocessing.text import (
    CausalLMPreprocessor,
    MaskedLMPreprocessor,
    Seq2SeqPreprocessor,
    TextClassifierPreprocessor,
    TokenClassifierPreprocessor,
    align_word_labels,
)


def test_classifier_single_and_pairs_match_tokenizer():
    tok, hf = our_tokenizer("bert_json"), hf_tokenizer("bert_json")
    pre = TextClassifierPreprocessor(tok, sequence_length=16)
    feats, y = pre(["Hello world", "a b c"], [1, 0])
    ref = hf(["Hello world", "a b c"], padding="max_length", truncation=True, max_length=16)
    for k in ref:
        assert feats[k].tolist() == ref[k]
    assert y.dtype == np.int32 and y.tolist() == [1, 0]
    pairs = [("Hello world", "second"), ("q", "a long answer " * 10)]
    ref = hf([p[0] for p in pairs], [p[1] for p in pairs], padding="max_length", truncation=True, max_length=16)
    for x in (pairs, ([p[0] for p in pairs], [p[1] for p in pairs])):
        feats = pre(x)
        for k in ref:
            assert feats[k].tolist() == ref[k]
    # default: pad to the batch's longest, capped by model_max_length
    longest = TextClassifierPreprocessor(tok)
    assert longest(["a", "a b c d"])["input_ids"].shape == (2, 6)
    assert longest(["word " * 1000])["input_ids"].shape == (1, tok.model_max_length)


def test_regression_targets_are_float():
    pre = TextClassifierPreprocessor(our_tokenizer("bert_json"), sequence_length=8)
    _, y = pre(["a", "b"], [0.5, 1.5])
    assert y.dtype == np.float32


@pytest.mark.parametrize("name", ["bert_json", "roberta_vocab_prefix"])
def test_token_classification_alignment_matches_word_ids(name):
    tok, hf = our_tokenizer(name), hf_tokenizer(name)
    words = [["Hello", "worldwide", "xyzzyq", "Привет"], ["a", "b"]]
    labels = [[1, 2, 3, 4], [5, 6]]
    pre = TokenClassifierPreprocessor(tok, sequence_length=20)
    feats, y, w = pre(words, labels)
    ref = hf(words, is_split_into_words=True, padding="max_length", truncation=True, max_length=20)
    assert feats["input_ids"].tolist() == ref["input_ids"]
    for i in range(2):
        expected = align_word_labels(ref.word_ids(i), labels[i])
        assert [lab if wt else -100 for lab, wt in zip(y[i].tolist(), w[i].tolist())] == expected
    assert pre(words)["input_ids"].shape == (2, 20)
    with pytest.raises(ValueError, match="one label per word"):
        pre(words, [[1], [2, 3]])


def test_label_all_tokens_and_string_labels():
    tok = our_tokenizer("bert_json")
    pre = TokenClassifierPreprocessor(
        tok, sequence_length=12, label_all_tokens=True, label_to_id={"O": 0, "B-X": 1}
    )
    _, y, w = pre(["worldwide xyzzyq"], [["O", "B-X"]])
    pieces = int(w.sum())
    assert pieces == int(pre.features(["worldwide xyzzyq"])["attention_mask"].sum()) - 2
    assert set(y[0][w[0] == 1].tolist()) == {0, 1}


def test_masked_lm_dynamic_masking():
    tok = our_tokenizer("bert_json")
    pre = MaskedLMPreprocessor(tok, sequence_length=64, seed=0, mask_probability=0.3)
    texts = ["the quick brown fox jumps over the lazy dog " * 5] * 8
    feats, labels, weights = pre(texts)
    clean = pre.features(texts)["input_ids"]
    assert labels.tolist() == clean.tolist()
    sel = weights.astype(bool)
    assert 0.2 < sel[clean > 103].mean() < 0.4  # about mask_probability of the real tokens
    assert not sel[np.isin(clean, [0, 101, 102])].any()  # never pad / cls / sep
    changed = feats["input_ids"] != clean
    assert not changed[~sel].any()  # only selected positions change
    frac_mask = (feats["input_ids"][sel] == tok.mask_token_id).mean()
    assert 0.65 < frac_mask < 0.95
    feats2, _, w2 = pre(texts)
    assert not np.array_equal(w2, weights)  # fresh masking each call


def test_causal_lm_labels_and_packing():
    tok = Tokenizer_with_pad("gpt2_vocab")
    pre = CausalLMPreprocessor(tok, sequence_length=8)
    feats, labels, w = pre(["hello world", "a much longer text that will be cut"])
    ids = [tok.encode("hello world") + [tok.eos_token_id], tok.encode("a much longer text that will be cut")]
    assert feats["input_ids"][0, : len(ids[0]) - 1].tolist() == ids[0][:-1]
    assert labels[0, : len(ids[0]) - 1].tolist() == ids[0][1:]
    assert w[0].sum() == len(ids[0]) - 1
    assert feats["input_ids"].shape == (2, 8) and labels[1].tolist() == ids[1][1:9]
    packed = CausalLMPreprocessor(tok, sequence_length=8, packing=True)
    feats, labels, w = packed(["hello world", "a much longer text that will be cut"])
    stream = [t for text in ("hello world", "a much longer text that will be cut")
              for t in tok.encode(text) + [tok.eos_token_id]]
    assert feats["input_ids"].shape[1] == 8
    got = [int(t) for row, m in zip(feats["input_ids"], feats["attention_mask"]) for t in row[m == 1]]
    assert got == stream[: len(got)]
    assert labels[0].tolist() == stream[1:9]


def Tokenizer_with_pad(name):
    from keras_models.tokenizers import Tokenizer
    from tok_refs import ref_dir

    tok = Tokenizer.from_preset(ref_dir(name))
    tok.pad_token = tok.eos_token
    return tok


def test_seq2seq_shift_right():
    tok = our_tokenizer("t5_spm")
    pre = Seq2SeqPreprocessor(tok, sequence_length=16, target_sequence_length=8)
    feats, labels, w = pre(["translate: hello world"], ["Привет мир"])
    target = tok.encode("Привет мир")
    assert labels[0, : len(target)].tolist() == target
    assert feats["decoder_input_ids"][0, 0] == tok.pad_token_id
    assert feats["decoder_input_ids"][0, 1 : len(target)].tolist() == target[:-1]
    assert w[0].sum() == len(target) and feats["decoder_attention_mask"].shape == (1, 8)
    assert feats["input_ids"].shape == (1, 16)
