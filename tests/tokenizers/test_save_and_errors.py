"""save_pretrained round trips (through transformers too), clear errors, import hygiene."""

import json
import os
import subprocess
import sys

import pytest
from tok_corpus import CORPUS, PAIRS
from tok_refs import BUILDERS, hf_tokenizer, our_tokenizer, ref_dir

from keras_models.errors import ConfigError, KerasModelsError, PresetError, TokenizerFileError
from keras_models.tokenizers import Tokenizer


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_save_pretrained_reloads_in_transformers(name, tmp_path):
    from transformers import AutoTokenizer

    ours = our_tokenizer(name)
    ours.save_pretrained(tmp_path)
    reloaded_hf = AutoTokenizer.from_pretrained(str(tmp_path))
    reloaded = Tokenizer.from_preset(tmp_path)
    hf = hf_tokenizer(name)
    for text in CORPUS:
        expected = hf(text)["input_ids"]
        assert reloaded_hf(text)["input_ids"] == expected, (name, text[:60])
        assert reloaded(text, return_tensors=None)["input_ids"] == expected, (name, text[:60])
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    assert reloaded_hf(firsts, seconds)["input_ids"] == hf(firsts, seconds)["input_ids"]
    assert reloaded.model_input_names == hf.model_input_names
    assert reloaded.pad_token_id == hf.pad_token_id and reloaded.eos_token_id == hf.eos_token_id


def test_add_tokens_and_special_tokens_match_transformers(tmp_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(ref_dir("bert_json")))
    ours = Tokenizer.from_preset(ref_dir("bert_json"))
    assert ours.add_tokens(["newword", "[NEWSPECIAL]"]) == hf.add_tokens(["newword", "[NEWSPECIAL]"])
    assert ours.add_special_tokens({"extra_special_tokens": ["<ctrl>"]}) == hf.add_special_tokens(
        {"additional_special_tokens": ["<ctrl>"]}
    )
    text = "a newword and <ctrl> and [NEWSPECIAL] x"
    assert ours.encode(text) == hf.encode(text)
    ids = hf.encode(text)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert len(ours) == len(hf)
    ours.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again.encode(text) == ids
    assert Tokenizer.from_preset(tmp_path).encode(text) == ids


def test_convert_tokens_and_ids():
    ours, hf = our_tokenizer("bert_json"), hf_tokenizer("bert_json")
    toks = ["hello", "[CLS]", "notaword-xyz", "##s"]
    assert ours.convert_tokens_to_ids(toks) == hf.convert_tokens_to_ids(toks)
    assert ours.convert_tokens_to_ids("hello") == hf.convert_tokens_to_ids("hello")
    assert ours.convert_ids_to_tokens(101) == hf.convert_ids_to_tokens(101)
    assert ours.convert_ids_to_tokens([101, 7592, 102], skip_special_tokens=True) == ["hello"]
    assert ours.tokenize("Hello worlds") == hf.tokenize("Hello worlds")


def test_pad_token_setter_and_missing_pad():
    tok = Tokenizer.from_preset(ref_dir("gpt2_vocab"))
    with pytest.raises(ValueError, match="padding token"):
        tok(["a", "b c"], padding=True)
    tok.pad_token = tok.eos_token
    out = tok(["a", "b c d"], padding=True)
    assert out["input_ids"].shape[0] == 2 and out["attention_mask"][0].tolist()[-1] == 0


def test_ragged_numpy_output_is_a_clear_error():
    tok = our_tokenizer("bert_json")
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "b c d"])
    out = tok(["a", "b c d"], return_tensors=None)
    assert [len(x) for x in out["input_ids"]] == [3, 5]


def _copy(name, tmp_path):
    src = ref_dir(name)
    for f in src.iterdir():
        if f.is_file():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def test_malformed_tokenizer_json(tmp_path):
    _copy("bert_json", tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="tokenizer.json"):
        Tokenizer.from_preset(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="tokenizer.json"):
        Tokenizer.from_preset(tmp_path)
    assert issubclass(TokenizerFileError, ConfigError) and issubclass(TokenizerFileError, KerasModelsError)


def test_malformed_tokenizer_config(tmp_path):
    _copy("bert_json", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="tokenizer_config.json"):
        Tokenizer.from_preset(tmp_path)


def test_vocab_without_unk_token(tmp_path):
    _copy("bert_vocab_uncased", tmp_path)
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "vocab.txt").write_text("\n".join(x for x in lines if x != "[UNK]") + "\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.txt.*\[UNK\]"):
        Tokenizer.from_preset(tmp_path)


def test_bad_merges_file(tmp_path):
    _copy("gpt2_vocab", tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nzzzq qqqz\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="merges.txt"):
        Tokenizer.from_preset(tmp_path)
    (tmp_path / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="vocab.json"):
        Tokenizer.from_preset(tmp_path)


def test_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PresetError, match="No tokenizer files"):
        Tokenizer.from_preset(tmp_path)


def test_import_does_not_pull_heavy_frameworks():
    code = (
        "import sys, keras_models.tokenizers, keras_models.tokenizers.chat_template\n"
        "first = [m for m in ('tensorflow', 'torch', 'jax', 'keras') if m in sys.modules]\n"
        "import keras_models.preprocessing.text\n"
        "second = [m for m in ('tensorflow', 'torch', 'jax', 'keras') if m in sys.modules]\n"
        "print(','.join(first) + ';' + ','.join(second))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    tokenizers_mods, preprocessing_mods = out.stdout.strip().split(";")
    assert tokenizers_mods == "", f"importing keras_models.tokenizers loaded {tokenizers_mods}"
    assert "tensorflow" not in preprocessing_mods.split(","), preprocessing_mods


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_matches_transformers(side):
    hf, ours = hf_tokenizer("bert_json"), our_tokenizer("bert_json")
    feats = [hf(t, return_special_tokens_mask=True) for t in ["a b c", "hello", "Привет мир 日本"]]
    feats = [{k: list(v) for k, v in f.items()} for f in feats]
    for kw in (dict(padding=True), dict(padding="max_length", max_length=20), dict(padding=True, pad_to_multiple_of=8)):
        ref = hf.pad(feats, padding_side=side, **kw)
        got = ours.pad(feats, padding_side=side, return_tensors=None, **kw)
        assert {k: [list(r) for r in v] for k, v in got.items()} == {k: [list(r) for r in ref[k]] for k in ref}
        batch = {k: [f[k] for f in feats] for k in feats[0]}
        assert ours.pad(batch, padding_side=side, **kw)["input_ids"].tolist() == [list(r) for r in ref["input_ids"]]


def test_tokenizer_copies_for_worker_processes():
    import copy
    import pickle

    from keras_models.preprocessing.text import TextClassifierPreprocessor

    tok = our_tokenizer("llama_spm")
    pre = TextClassifierPreprocessor(tok, sequence_length=8)
    for clone in (copy.deepcopy(pre), pickle.loads(pickle.dumps(pre))):  # what multiprocessing workers do
        assert clone.tokenizer.encode("Привет мир") == tok.encode("Привет мир")
        assert clone(["a b"])["input_ids"].tolist() == pre(["a b"])["input_ids"].tolist()


@pytest.mark.parametrize(
    "patch",
    [{"model_max_length": "long"}, {"padding_side": "middle"}, {"pad_token": 5}, {"mask_token": {"lstrip": True}},
     {"model_input_names": "input_ids"}],
)
def test_bad_values_in_tokenizer_config(tmp_path, patch):
    _copy("bert_json", tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.update(patch)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerFileError, match="tokenizer_config.json"):
        Tokenizer.from_preset(tmp_path)


def test_non_utf8_chat_template_names_the_file(tmp_path):
    """A chat_template.jinja (or an additional template) that is not UTF-8 raises
    TokenizerFileError naming the file, not a bare UnicodeDecodeError."""
    import shutil

    from keras_models.errors import TokenizerFileError
    from keras_models.tokenizers import Tokenizer
    from tests.presets.fixtures import save_tiny_tokenizer

    for name in ("chat_template.jinja", "additional_chat_templates/tool.jinja"):
        folder = tmp_path / name.replace("/", "_")
        save_tiny_tokenizer(folder)
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"{{ messages }}\xff\xfe")
        with pytest.raises(TokenizerFileError, match=name.split("/")[-1]):
            Tokenizer.from_preset(folder)
        shutil.rmtree(folder)


@pytest.mark.parametrize("class_name,files,needle", [
    ("TransfoXLTokenizer", {"vocab.pkl": "not read"}, "pickle"),
])
def test_classes_we_do_not_implement_say_why(tmp_path, class_name, files, needle):
    import json

    from keras_models.errors import TokenizerFileError
    from keras_models.tokenizers import Tokenizer

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": class_name}))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(TokenizerFileError, match=f"{class_name} is not supported: .*{needle}"):
        Tokenizer.from_preset(tmp_path)
