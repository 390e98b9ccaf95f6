"""``model.export(path, format="tf_saved_model", raw_strings=True)`` with SentencePiece Unigram
tokenizers: the preset's ``spiece.model`` run by ``tensorflow_text.SentencepieceTokenizer`` behind our
tokenizer.json's normaliser steps, the post-processor template (T5-like: ``text </s>``; ALBERT-like:
``[CLS] text [SEP]`` with ALBERT's ``"``/NFKD/accent/lower-case steps; XLM-R-like: ``<s> text </s>``
with fairseq's id offset, tokenization only), truncation and padding.

Tiny spm models trained here; a small ALBERT classifier carries each tokenizer. The TF token inputs
equal the preprocessor's on a corpus with accents, CJK and Hangul, upper case, full-width forms,
whitespace runs, control characters, typed special tokens and the empty string; the reloaded
SavedModel's outputs equal ``model.predict`` within 1e-5 (jax via jax2tf, and tensorflow)."""

import io
import json
import shutil

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.export import ExportError
from tests.parity import cached_folder

BACKEND = keras.backend.backend()
saved_model_backends = pytest.mark.skipif(BACKEND == "torch", reason="SavedModel export needs jax or tensorflow")

TRAIN = ["Hello world, the movie was GREAT and the food was great.", "Café naïve résumé École Ångström",
         "中文字符测试 and 日本語のテキスト 한국어", "tabs and spaces and new lines", "the quick brown fox jumps",
         "supercalifragilistic antidisestablishmentarianism ok", "``quoted'' text", "Straße İstanbul ΟΔΟΣ"] * 4
CORPUS = [
    "Hello, World! The movie was GREAT.",
    "Café naïve résumé ÉCOLE Ångström Ñandú",
    "ΟΔΟΣ Straße İstanbul ﬁne ＦＵＬＬ ｗｉｄｔｈ",
    "中文字符测试 and 日本語のテキスト 한국어",
    "``quoted'' text — t… 100%",
    "tabs\tnew\nlines\r\nand\u3000ideographic\u00a0spaces   runs  of   blanks",
    "control\x00chars\u200bzero\ufffdwidth\x7fdel",
    "",
    "   ",
    "x",
    "typed [CLS] [MASK] <extra_id_0> b<extra_id_1>c </s> <mask>x<s>",
    "the movie was good and the food was great, really very good! " * 3,
]
CASES = {
    "t5": ("T5Tokenizer", dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1), {"extra_ids": 3}, None),
    "albert": ("AlbertTokenizer", dict(pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
                                       control_symbols=["[CLS]", "[SEP]", "[MASK]"]), {}, 16),
    # fairseq numbering: <s> <pad> </s> <unk>, then the spm pieces shifted by one, <mask> last
    "xlmr": ("XLMRobertaTokenizer", dict(unk_id=0, bos_id=1, eos_id=2), {}, None),
}
SPM_FILE = {"xlmr": "sentencepiece.bpe.model"}


def _folder(case):
    def build(folder):
        import sentencepiece as spm
        import transformers

        class_name, options, config, _ = CASES[case]
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(TRAIN), model_writer=buf, hard_vocab_limit=False,
                                       num_threads=1, minloglevel=2, character_coverage=1.0, vocab_size=120,
                                       model_type="unigram", **options)
        (folder / SPM_FILE.get(case, "spiece.model")).write_bytes(buf.getvalue())
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": class_name, **config}))
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        tok.save_pretrained(str(folder))  # tokenizer.json beside spiece.model, as on the Hub
        cfg = transformers.AlbertConfig(vocab_size=len(tok), embedding_size=8, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=256,
                                        num_labels=3, pad_token_id=0)
        transformers.set_seed(0)
        transformers.AlbertForSequenceClassification(cfg).save_pretrained(str(folder))

    return cached_folder(f"export-raw-strings-spm-{case}", build)


def _kwargs(case):
    seq = CASES[case][3]
    return {"sequence_length": seq} if seq else {}


@pytest.mark.backend_independent  # TF ops and the Rust tokenizer only: no model runs
@pytest.mark.parametrize("case", sorted(CASES))
def test_tf_sentencepiece_tokenization_equals_the_preprocessor(case):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_text")
    pytest.importorskip("sentencepiece")
    from keras_models.export.raw_text import tf_tokenizer
    from keras_models.preprocessing.text import TextClassifierPreprocessor

    pre = TextClassifierPreprocessor.from_preset(_folder(case), **_kwargs(case))
    assert pre.tokenizer.sentencepiece_file == SPM_FILE.get(case, "spiece.model")
    features = pre.features(CORPUS)
    unk = (features["input_ids"] == pre.tokenizer.unk_token_id).sum()
    assert unk < 0.2 * features["attention_mask"].sum(), f"the corpus is mostly <unk> ({unk}): it would see little"
    tokens = {k: v.numpy() for k, v in tf_tokenizer(pre, tuple(features))(tf.constant(CORPUS)).items()}
    assert sorted(tokens) == sorted(features)
    for name in features:
        np.testing.assert_array_equal(tokens[name], features[name], err_msg=name)
    if case == "albert":
        assert tokens["input_ids"].shape == (len(CORPUS), 16)


@saved_model_backends
@pytest.mark.one_case_per_pass("case")  # every case's tokenization is checked above; here the export
@pytest.mark.parametrize("case", ["albert", "t5"])
def test_raw_string_saved_model_matches_predict_spm(tmp_path, case):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_text")
    pytest.importorskip("sentencepiece")
    model = km.TextClassifier.from_preset(_folder(case), **_kwargs(case))
    features = model.preprocessor.features(CORPUS)
    path = model.export(str(tmp_path / "raw"), format="tf_saved_model", raw_strings=True)
    loaded = tf.saved_model.load(str(path))  # kept alive: it owns the variables
    tokens = {k: v.numpy() for k, v in loaded.tokenize(tf.constant(CORPUS)).items()}
    for name in tokens:
        np.testing.assert_array_equal(tokens[name], features[name], err_msg=name)
    expected = model.predict(CORPUS, verbose=0)
    np.testing.assert_allclose(loaded.serve(tf.constant(CORPUS)).numpy(), expected, atol=1e-5)


@saved_model_backends
def test_sentencepiece_without_its_model_file_is_refused(tmp_path):
    pytest.importorskip("sentencepiece")
    folder = tmp_path / "no_spm"
    shutil.copytree(_folder("t5"), folder)
    (folder / "spiece.model").unlink()
    model = km.TextClassifier.from_preset(folder)
    with pytest.raises(ExportError, match=r"SentencePiece \.model file \(spiece\.model"):
        model.export(str(tmp_path / "out"), format="tf_saved_model", raw_strings=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_spm"]  # nothing half-written
