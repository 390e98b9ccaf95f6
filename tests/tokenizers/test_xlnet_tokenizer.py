"""XLNet's tokenizer (issue 18): a Unigram tokenizer.json written by Transformers 5's
XLNetTokenizer, read through our loader. Transformers 5 builds XLNetTokenizer from a vocabulary
list without sentencepiece; a folder with only spiece.model (the slow converter's input) is not
converted by our loader."""

import numpy as np

import keras_models as km


def test_xlnet_tokenizer_json_matches_transformers(tmp_path):
    """A tokenizer.json written by Transformers' XLNetTokenizer (Unigram, NFKD + accent stripping,
    X <sep> <cls>, left padding) gives Transformers' ids through our loader."""
    import transformers as T

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    pieces = ["\u2581", "\u2581the", "\u2581cat", "\u2581sat", "s", "a", "t", "e", "h", "c", "\u2581on", "\u2581mat",
              "o", "n", "m", ".", ",", "\u2581caf", "!", "\u2581A", "\u2581B", "``"]
    vocab = [(t, 0.0) for t in specials] + [(p, -1.0 - i / 4) for i, p in enumerate(pieces)]
    T.XLNetTokenizer(vocab=vocab).save_pretrained(tmp_path)
    ref, ours = T.AutoTokenizer.from_pretrained(tmp_path), km.Tokenizer.from_preset(tmp_path)
    for args in (("the cat sat on the mat.",), ("  The  CAT, caf\u00e9! ``A''",), ("the cat", "sat on")):
        assert np.asarray(ours(*args)["input_ids"]).ravel().tolist() == ref(*args)["input_ids"], args
    batch = ["the cat sat on the mat.", "A B"]
    want, got = ref(batch, padding=True), ours(batch, padding=True)
    for k in ("input_ids", "attention_mask"):
        assert np.asarray(got[k]).tolist() == want[k], k
