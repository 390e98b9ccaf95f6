"""``model.export(path, format="tf_saved_model", raw_strings=True)``: a SavedModel whose serving
signature takes raw strings, its WordPiece tokenization in TensorFlow / tensorflow_text ops.

Reloaded with ``tf.saved_model.load`` (no keras_models involved), its token inputs equal the
preprocessor's (the Rust tokenizer's) on a corpus with accents, upper case, Greek final sigma,
ß, ligatures and full-width forms, CJK, punctuation and symbols, control and whitespace
characters, over-long words ([UNK]) and the empty string, and its outputs equal
``model.predict(texts)`` within 1e-5. Tokenizer configurations: uncased BERT, cased BERT, and an
odd one (accents stripped without lower-casing, no CJK padding, max_input_chars_per_word=8,
fixed-length padding with truncation). Runs under jax (jax2tf) and tensorflow; SavedModel export
needs one of them."""

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

CORPUS = [
    "Hello, World! The movie was GREAT.",
    "Café naïve résumé ÉCOLE Ångström Ñandú",
    "ΟΔΟΣ ΣΟΦΟΣ Straße İstanbul ﬁne ＦＵＬＬ ｗｉｄｔｈ",
    "中文字符测试 and 日本語のテキスト 한국어",
    "a-b_c (d) [e] {f} \"g\" 'h' $i +j <k> ^l `m` |n| ~o ¿p? ¡q! «r» “s” — t… 100%",
    "tabs\tnew\nlines\r\nand\u3000ideographic\u00a0spaces",
    "control\x00chars\u200bzero\ufffdwidth\x7fdel",
    "supercalifragilistic antidisestablishmentarianism ok",
    "",
    "   ",
    "x",
    "[CLS] typed [MASK] tokens[SEP]and [UNK]s [mask]",
    "the movie was good and the food was great, really very good! " * 3,
]

CASES = {
    "uncased": dict(normalizer=dict(lowercase=True), max_chars=100, sequence_length=None),
    "cased": dict(normalizer=dict(lowercase=False, strip_accents=False), max_chars=100, sequence_length=None),
    "odd": dict(normalizer=dict(lowercase=False, strip_accents=True, handle_chinese_chars=False), max_chars=8,
                sequence_length=12),
}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _rust_tokenizer(vocab, normalizer, max_chars):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                              max_input_chars_per_word=max_chars))
    tok.normalizer = normalizers.BertNormalizer(**normalizer)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.add_special_tokens(SPECIALS)
    return tok


def _vocab():
    """Every word and character the corpus gives under each case's normalizer (so the comparison
    sees real ids, not mostly [UNK]), plus their ##-continuations."""
    from tokenizers import normalizers, pre_tokenizers

    words = set()
    for case in CASES.values():
        norm = normalizers.BertNormalizer(**case["normalizer"])
        for text in CORPUS:
            for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(norm.normalize_str(text)):
                if len(word) <= 6:
                    words.add(word)
                words.update(word)
    chars = sorted({c for w in words for c in w})
    return SPECIALS + sorted(words) + ["##" + c for c in chars] + ["##ing", "super", "##cal"]


def _folder(case):
    def build(folder):
        import transformers

        vocab = _vocab()
        tok = _rust_tokenizer(vocab, CASES[case]["normalizer"], CASES[case]["max_chars"])
        tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "BertTokenizer", "model_max_length": 64, "pad_token": "[PAD]", "unk_token": "[UNK]",
            "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
            "do_lower_case": CASES[case]["normalizer"]["lowercase"]}))
        cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=24, max_position_embeddings=64,
                                      num_labels=3)
        transformers.set_seed(0)
        transformers.BertForSequenceClassification(cfg).save_pretrained(str(folder))

    return cached_folder(f"export-raw-strings-{case}", build)


def _model(case):
    seq = CASES[case]["sequence_length"]
    return km.TextClassifier.from_preset(_folder(case), **({"sequence_length": seq} if seq else {}))


@pytest.mark.backend_independent  # TF ops and the Rust tokenizer only: no model runs
@pytest.mark.parametrize("case", sorted(CASES))
def test_tf_tokenization_equals_the_preprocessor(case):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_text")
    from keras_models.export.raw_text import tf_tokenizer
    from keras_models.preprocessing.text import TextClassifierPreprocessor

    seq = CASES[case]["sequence_length"]
    pre = TextClassifierPreprocessor.from_preset(_folder(case), **({"sequence_length": seq} if seq else {}))
    features = pre.features(CORPUS)
    unk = np.isin(features["input_ids"], [1]).sum()
    assert unk < 12, f"the corpus is mostly [UNK] ({unk}): the comparison would see little"
    tokens = {k: v.numpy() for k, v in tf_tokenizer(pre)(tf.constant(CORPUS)).items()}
    assert sorted(tokens) == sorted(features)
    for name in features:
        np.testing.assert_array_equal(tokens[name], features[name], err_msg=name)
    if seq:
        assert tokens["input_ids"].shape == (len(CORPUS), seq)
    typed = CORPUS.index("[CLS] typed [MASK] tokens[SEP]and [UNK]s [mask]")
    assert {2, 3, 4} <= set(tokens["input_ids"][typed][1:].tolist())  # typed special tokens kept whole


@saved_model_backends
@pytest.mark.one_case_per_pass("case")  # the tokenization of every case is checked above; here the export
@pytest.mark.parametrize("case", ["odd", "uncased"])
def test_raw_string_saved_model_matches_predict(tmp_path, case):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_text")
    model = _model(case)
    features = model.preprocessor.features(CORPUS)
    seq = CASES[case]["sequence_length"]
    path = model.export(str(tmp_path / "raw"), format="tf_saved_model", raw_strings=True)
    loaded = tf.saved_model.load(str(path))  # kept alive: it owns the variables
    tokens = {k: v.numpy() for k, v in loaded.tokenize(tf.constant(CORPUS)).items()}
    assert sorted(tokens) == sorted(features)
    for name in features:
        np.testing.assert_array_equal(tokens[name], features[name], err_msg=name)
    if seq:
        assert tokens["input_ids"].shape == (len(CORPUS), seq)
    expected = model.predict(CORPUS, verbose=0)
    np.testing.assert_allclose(loaded.serve(tf.constant(CORPUS)).numpy(), expected, atol=1e-5)
    out = loaded.signatures["serving_default"](texts=tf.constant(CORPUS[:2]))
    # against the whole batch's rows (CI time: no second predict compile for a 2-row batch); the
    # signature pads the 2 texts to their own length, which the masked rows do not see
    np.testing.assert_allclose(next(iter(out.values())).numpy(), expected[:2], atol=1e-5)


@saved_model_backends
def test_unsupported_tokenizers_name_the_type(tmp_path):
    import shutil

    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    folder = tmp_path / "bpe"
    shutil.copytree(_folder("uncased"), folder)
    vocab = {t: i for i, t in enumerate(_vocab())}
    Tokenizer(BPE(vocab, [], unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    model = km.TextClassifier.from_preset(folder)
    with pytest.raises(ExportError, match="WordPiece.*is BPE"):
        model.export(str(tmp_path / "out"), format="tf_saved_model", raw_strings=True)
    with pytest.raises(ExportError, match="raw_strings=True is for format='tf_saved_model'"):
        model.export(str(tmp_path / "m.onnx"), format="onnx", raw_strings=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bpe"]  # nothing half-written


@pytest.mark.backend_independent  # file handling only
def test_an_existing_target_is_replaced_only_when_it_is_a_saved_model(tmp_path, monkeypatch):
    """The export writes beside the target and swaps it in: an earlier SavedModel there is replaced,
    anything else (the working directory, a user's folder with a README or other files, a file) is
    refused and left as it was."""
    from keras_models.export.raw_text import _remove_old_saved_model

    old = tmp_path / "old"
    (old / "variables").mkdir(parents=True)
    (old / "saved_model.pb").write_bytes(b"x")
    (old / "fingerprint.pb").write_bytes(b"x")
    _remove_old_saved_model(old)
    assert not old.exists()

    user = tmp_path / "user"
    user.mkdir()
    (user / "saved_model.pb").write_bytes(b"x")
    (user / "README.md").write_text("mine")
    plain = tmp_path / "notes.txt"
    plain.write_text("mine")
    (tmp_path / "empty_dir").mkdir()
    for target in (user, plain, tmp_path / "empty_dir"):
        with pytest.raises(ExportError, match="not a SavedModel this export may replace"):
            _remove_old_saved_model(target)
    assert (user / "README.md").read_text() == "mine" and plain.read_text() == "mine"

    (tmp_path / "saved_model.pb").write_bytes(b"x")  # even a SavedModel-looking working directory
    for name in list(tmp_path.iterdir()):
        if name.name != "saved_model.pb":
            shutil.rmtree(name) if name.is_dir() else name.unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExportError, match="not a SavedModel this export may replace"):
        _remove_old_saved_model(".")
    assert (tmp_path / "saved_model.pb").exists()
