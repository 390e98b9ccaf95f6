"""FSMT end to end from text: a tiny FSMTForConditionalGeneration saved with its python-only tokenizer
(vocab-src.json + vocab-tgt.json + merges.txt, Moses via sacremoses, no tokenizer.json);
``Seq2SeqLM.from_preset(folder).generate(text)`` gives Transformers' generate + decode string (the
target vocabulary + Moses detokenisation). (Tokenizer parity itself:
tests/tokenizers/test_checkpoint_only_fsmt.py.)"""

import hashlib
import inspect
import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import cached_folder

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine translation turns English sentences into German ones, piece by piece.",
    "Unknown words are split into pieces -- or become unknown!",
    "Hello world! How are you? Fine, thanks: 1,000 times.",
]
PROMPTS = ["some text about the quick fox", "Hello, world! \"Unknown\" pieces?"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def _build(tmp):
    import sacremoses
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    moses = sacremoses.MosesTokenizer(lang="en")
    words = [moses.tokenize(t, aggressive_dash_splits=True, return_str=True, escape=True) for t in TEXTS]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bpe.train_from_iterator(words, trainers.BpeTrainer(vocab_size=150, end_of_word_suffix="</w>", show_progress=False))
    merges = [m if isinstance(m, list) else m.split(" ") for m in json.loads(bpe.to_str())["model"]["merges"]]
    (tmp / "merges.txt").write_text("".join(f"{a} {b} 10\n" for a, b in merges), encoding="utf-8")
    pieces = sorted(set(bpe.get_vocab()))
    src = dict({s: i for i, s in enumerate(SPECIALS)}, **{p: 4 + i for i, p in enumerate(pieces)})
    tgt = dict({s: i for i, s in enumerate(SPECIALS)}, **{p: 4 + i for i, p in enumerate(reversed(pieces[10:]))})
    (tmp / "src.json").write_text(json.dumps(src), encoding="utf-8")
    (tmp / "tgt.json").write_text(json.dumps(tgt), encoding="utf-8")
    tok = transformers.FSMTTokenizer(langs=["en", "de"], src_vocab_file=str(tmp / "src.json"),
                                     tgt_vocab_file=str(tmp / "tgt.json"), merges_file=str(tmp / "merges.txt"))
    config = transformers.FSMTConfig(
        langs=["en", "de"], src_vocab_size=len(src), tgt_vocab_size=len(tgt), d_model=32, encoder_layers=1,
        decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
        decoder_ffn_dim=41, max_position_embeddings=40, init_std=0.2, num_beams=1)
    torch.manual_seed(0)
    model = transformers.FSMTForConditionalGeneration(config).eval()
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    expected = {}
    for text in PROMPTS:
        with torch.no_grad():  # use_cache=False: Transformers' FSMT builds its masks only without a cache
            out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=5, do_sample=False,
                                 num_beams=1, use_cache=False)
        expected[text] = {"ids": out[0].tolist(), "text": tok.decode(out[0], skip_special_tokens=True)}
    (tmp / "expected.json").write_text(json.dumps(expected))


def _reference():
    key = "s2s-fsmt-text-" + hashlib.sha1(inspect.getsource(_build).encode() + repr(
        (TEXTS, PROMPTS)).encode()).hexdigest()[:10]
    folder = cached_folder(key, _build)
    return folder / "model", json.loads((folder / "expected.json").read_text())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_text_matches_transformers(prompt):
    folder, expected = _reference()
    assert (folder / "vocab-src.json").is_file() and not (folder / "tokenizer.json").exists()
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.preprocessor is not None and model.preprocessor.tokenizer.class_name == "FSMTTokenizer"
    ref = expected[prompt]
    assert ref["text"].strip()  # the reference generates real words, not only special tokens
    got = model.generate(prompt, max_new_tokens=5, do_sample=False)
    assert got == ref["text"], (got, ref)
    ids = np.asarray(model.generate(model.preprocessor.tokenizer(prompt), max_new_tokens=5, do_sample=False))
    assert ids[0].tolist() == ref["ids"]
