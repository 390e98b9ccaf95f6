"""Text in, text out through ``Seq2SeqLM.from_preset``: shared by the tests of checkpoints whose
tokenizer is python-only in Transformers (ByT5, FSMT, ProphetNet). A test's ``build(tmp)`` makes a
tiny random model and its tokenizer and hands them to :func:`record_generate`; :func:`reference`
builds that once per run (shared cache); :func:`check_generate_text` compares our generate."""

import hashlib
import inspect
import json

import numpy as np

import keras_models as km
from tests.parity import cached_folder


def record_generate(tmp, model, tok, prompts, max_new_tokens, **generate_kwargs):
    """Save ``model`` and ``tok`` to ``tmp / "model"`` and Transformers' greedy output per prompt."""
    import torch

    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    expected = {}
    for text in prompts:
        with torch.no_grad():
            out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=max_new_tokens,
                                 do_sample=False, **generate_kwargs)
        expected[text] = {"ids": out[0].tolist(), "text": tok.decode(out[0], skip_special_tokens=True)}
    (tmp / "expected.json").write_text(json.dumps(expected))


def reference(name, build, *parts):
    """(model folder, expected outputs) of ``build``, cached under its source and ``parts``."""
    digest = hashlib.sha1(inspect.getsource(build).encode() + repr(parts).encode()).hexdigest()[:10]
    folder = cached_folder(f"{name}-{digest}", build)
    return folder / "model", json.loads((folder / "expected.json").read_text())


def check_generate_text(folder, expected, prompt, tokenizer_class, max_new_tokens):
    """The folder's Seq2SeqLM attaches ``tokenizer_class`` and generates Transformers' string from
    text and Transformers' ids from token ids."""
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.preprocessor is not None and model.preprocessor.tokenizer.class_name == tokenizer_class
    ref = expected[prompt]
    assert len(ref["ids"]) > 2  # the reference generated something
    got = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False)
    assert got == ref["text"], (got, ref)
    ids = np.asarray(model.generate(model.preprocessor.tokenizer(prompt), max_new_tokens=max_new_tokens,
                                    do_sample=False))
    assert ids[0].tolist() == ref["ids"]
