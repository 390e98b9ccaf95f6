"""ProphetNet end to end from text: a tiny ProphetNetForConditionalGeneration saved with its python-only
tokenizer (prophetnet.tokenizer, no tokenizer.json); ``Seq2SeqLM.from_preset(folder).generate(text)``
gives Transformers' generate + decode string. (Tokenizer parity itself:
tests/tokenizers/test_checkpoint_only_prophetnet.py.)"""

import pytest

from tests.models.seq2seq_text import check_generate_text, record_generate, reference

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Language models predict the next token piece by piece.",
    "Unknown words are split into word pieces, or become unknown.",
    "Hello world! How are you? Fine, thanks.",
]
PROMPTS = ["some text about the quick fox", "Hello, world! Unknown pieces?"]


def _build(tmp):
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "[X_SEP]", "[unused0]"]
    wp.train_from_iterator(TEXTS, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials,
                                                            show_progress=False))
    vocab = sorted(wp.get_vocab().items(), key=lambda kv: kv[1])
    (tmp / "vocab.tmp").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    tok = transformers.ProphetNetTokenizer(vocab_file=str(tmp / "vocab.tmp"), model_max_length=32)
    (tmp / "vocab.tmp").unlink()
    sep = tok.sep_token_id  # as in the real checkpoints: [SEP] starts, ends and begins decoding
    config = transformers.ProphetNetConfig(
        vocab_size=len(tok), hidden_size=32, num_encoder_layers=1, num_decoder_layers=1,
        num_encoder_attention_heads=4, num_decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37,
        max_position_embeddings=40, ngram=2, num_buckets=8, relative_max_distance=12, init_std=0.2,
        pad_token_id=tok.pad_token_id, bos_token_id=sep, eos_token_id=sep, decoder_start_token_id=sep)
    torch.manual_seed(0)
    model = transformers.ProphetNetForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    record_generate(tmp, model, tok, PROMPTS, max_new_tokens=5)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_text_matches_transformers(prompt):
    folder, expected = reference("s2s-prophetnet-text", _build, TEXTS, PROMPTS)
    assert (folder / "prophetnet.tokenizer").is_file() and not (folder / "tokenizer.json").exists()
    assert expected[prompt]["text"].strip()  # the reference generates real words, not only special tokens
    check_generate_text(folder, expected, prompt, "ProphetNetTokenizer", max_new_tokens=5)
