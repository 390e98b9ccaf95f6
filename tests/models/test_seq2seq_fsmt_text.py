"""FSMT end to end from text: a tiny FSMTForConditionalGeneration saved with its python-only tokenizer
(vocab-src.json + vocab-tgt.json + merges.txt, Moses via sacremoses, no tokenizer.json);
``Seq2SeqLM.from_preset(folder).generate(text)`` gives Transformers' generate + decode string (the
target vocabulary + Moses detokenisation). (Tokenizer parity itself:
tests/tokenizers/test_checkpoint_only_fsmt.py.)"""

import json

import pytest

from tests.models.seq2seq_text import check_generate_text, record_generate, reference

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
    # use_cache=False: Transformers' FSMT builds its masks only without a cache
    record_generate(tmp, model, tok, PROMPTS, max_new_tokens=5, num_beams=1, use_cache=False)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_text_matches_transformers(prompt):
    folder, expected = reference("s2s-fsmt-text", _build, TEXTS, PROMPTS)
    assert (folder / "vocab-src.json").is_file() and not (folder / "tokenizer.json").exists()
    assert expected[prompt]["text"].strip()  # the reference generates real words, not only special tokens
    check_generate_text(folder, expected, prompt, "FSMTTokenizer", max_new_tokens=5)
