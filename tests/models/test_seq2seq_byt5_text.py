"""ByT5 end to end from text: its tokenizer has no vocabulary file at all (tokenizer_config.json
names ByT5Tokenizer), so a Seq2SeqLM must still attach it and ``generate(text)`` give Transformers'
generate + decode string. (Tokenizer parity itself: tests/tokenizers/test_checkpoint_only_s2s.py.)"""

import pytest

from tests.models.seq2seq_text import check_generate_text, record_generate, reference

PROMPTS = ["bytes in, bytes out", "Grüße, 世界!"]


def _build(tmp):
    import torch
    import transformers

    tok = transformers.ByT5Tokenizer()
    config = transformers.T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                   num_decoder_layers=1, num_heads=4, feed_forward_proj="gated-gelu",
                                   tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    record_generate(tmp, model, tok, PROMPTS, max_new_tokens=6)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_text_matches_transformers(prompt):
    folder, expected = reference("s2s-byt5-text", _build, PROMPTS)
    assert not any(folder.glob("*.model")) and not (folder / "tokenizer.json").exists()
    check_generate_text(folder, expected, prompt, "ByT5Tokenizer", max_new_tokens=6)
