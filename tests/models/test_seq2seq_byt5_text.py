"""ByT5 end to end from text: its tokenizer has no vocabulary file at all (tokenizer_config.json
names ByT5Tokenizer), so a Seq2SeqLM must still attach it and ``generate(text)`` give Transformers'
generate + decode string. (Tokenizer parity itself: tests/tokenizers/test_checkpoint_only_s2s.py.)"""

import hashlib
import inspect
import json

import numpy as np
import pytest

import keras_models as km
from tests.parity import cached_folder

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
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    expected = {}
    for text in PROMPTS:
        with torch.no_grad():
            out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=6, do_sample=False)
        expected[text] = {"ids": out[0].tolist(), "text": tok.decode(out[0], skip_special_tokens=True)}
    (tmp / "expected.json").write_text(json.dumps(expected))


def _reference():
    key = "s2s-byt5-text-" + hashlib.sha1(inspect.getsource(_build).encode() + repr(PROMPTS).encode()).hexdigest()[:10]
    folder = cached_folder(key, _build)
    return folder / "model", json.loads((folder / "expected.json").read_text())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_text_matches_transformers(prompt):
    folder, expected = _reference()
    assert not any(folder.glob("*.model")) and not (folder / "tokenizer.json").exists()
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.preprocessor is not None and model.preprocessor.tokenizer.class_name == "ByT5Tokenizer"
    ref = expected[prompt]
    assert len(ref["ids"]) > 3
    assert model.generate(prompt, max_new_tokens=6, do_sample=False) == ref["text"]
    ids = np.asarray(model.generate(model.preprocessor.tokenizer(prompt), max_new_tokens=6, do_sample=False))
    assert ids[0].tolist() == ref["ids"]
