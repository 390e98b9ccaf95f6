"""Our SentencePiece .model reader: equal to the protobuf parse, clear errors on corrupted files.
(With the sentencepiece package installed, protobuf's parser is used instead: the same result.)"""

import os
import subprocess
import sys

import pytest
from tok_refs import ref_dir

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import Tokenizer
from keras_models.tokenizers.sentencepiece_model import load_model, parse_model

MODELS = [
    ("t5_spm", "spiece.model"),
    ("albert_spm", "spiece.model"),
    ("xlmr_spm", "sentencepiece.bpe.model"),
    ("llama_spm", "tokenizer.model"),
]


@pytest.mark.parametrize("name,file", MODELS)
def test_reader_matches_protobuf(name, file):
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    path = ref_dir(name) / file
    ref = pb.ModelProto()
    ref.ParseFromString(path.read_bytes())
    ours = parse_model(path.read_bytes(), use_protobuf=False)  # the wire reader used without sentencepiece
    assert ours == load_model(path)  # = what loading gives through protobuf's parser
    assert [(p.piece, p.score, p.type) for p in ref.pieces] == [(p.piece, p.score, p.type) for p in ours.pieces]
    for key in ("model_type", "byte_fallback", "unk_id", "bos_id", "eos_id", "pad_id", "unk_piece", "bos_piece",
                "eos_piece", "pad_piece", "treat_whitespace_as_suffix", "vocab_size"):
        assert getattr(ref.trainer_spec, key) == getattr(ours.trainer_spec, key), key
    for key in ("name", "precompiled_charsmap", "add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces"):
        assert getattr(ref.normalizer_spec, key) == getattr(ours.normalizer_spec, key), key


@pytest.mark.parametrize("name", ["generic_spm_bpe", "generic_spm_unigram"])
def test_generic_conversion_follows_sentencepiece(name):
    """The generic path follows the model's own normalizer spec, like SentencePiece (and Transformers)."""
    spm = pytest.importorskip("sentencepiece")
    proc = spm.SentencePieceProcessor(model_file=str(ref_dir(name) / "tokenizer.model"))
    tok = Tokenizer.from_preset(ref_dir(name))
    for text in ["Hello world", "日本語のテキスト 👨‍👩‍👧", "tabs\tand  spaces", "Привет, мир!", "ＦＵＬＬ width"]:
        assert tok.encode(text, add_special_tokens=False) == proc.encode(text)


def _folder_with(tmp_path, name, file, data: bytes):
    src = ref_dir(name)
    for f in src.iterdir():
        if f.is_file() and f.name != file:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / file).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[: len(b) // 2],  # truncated mid-message
        lambda b: b"",  # empty
        lambda b: b"\x0a\xff\xff\xff\xff\x0f" + b[:100],  # a length running past the end
        lambda b: bytes(range(256)) * 4,  # not a protobuf at all
        lambda b: b"\x0b" + b,  # a group (wire type 3), never in a SentencePiece model
    ],
)
def test_corrupted_model_file_names_the_file(tmp_path, mangle):
    data = (ref_dir("t5_spm") / "spiece.model").read_bytes()
    folder = _folder_with(tmp_path, "t5_spm", "spiece.model", mangle(data))
    with pytest.raises(TokenizerFileError, match="spiece.model"):
        Tokenizer.from_preset(folder)


def test_unsupported_class_with_only_a_model_file(tmp_path):
    folder = _folder_with(tmp_path, "t5_spm", "spiece.model", (ref_dir("t5_spm") / "spiece.model").read_bytes())
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "MarianTokenizer"}')
    with pytest.raises(TokenizerFileError, match="MarianTokenizer"):
        Tokenizer.from_preset(folder)


def test_loading_needs_neither_sentencepiece_nor_protobuf():
    code = (
        "import sys\n"
        "sys.modules['sentencepiece'] = sys.modules['google.protobuf'] = None  # as if not installed\n"
        "from keras_models.tokenizers import Tokenizer\n"
        f"t = Tokenizer.from_preset({str(ref_dir('llama_spm'))!r})\n"
        "t2 = Tokenizer.from_preset(" + repr(str(ref_dir("t5_spm"))) + ")\n"
        "assert t.encode('hello') and t2.encode('hello')\n"
        "print(','.join(m for m in ('transformers', 'tensorflow', 'torch', 'jax', 'keras') if m in sys.modules))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
