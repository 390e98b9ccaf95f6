"""Stop strings against Transformers' StopStringCriteria; streamers; GenerationConfig errors."""

import json

import numpy as np
import pytest
from keras import ops

import keras_models as km
from keras_models.generation import (
    GenerationConfig, GenerationError, TextIteratorStreamer, TextStreamer, TokenCallbackStreamer,
    UnknownGenerationArgumentError,
)
from keras_models.generation.stop_strings import StopStrings
from tests.generation.helpers import hf_tokenizer, tokenizer_folder

STOPS = ["stop", ". ", "STOP now", "z"]
TEXTS = ["go on and stop", "unstoppable thing", "stopper", "the end. ", "dog.", "STOP now", "STOP no",
         "lazy", "a b c", "hello world! the end is near; STOP now"]


def test_stop_strings_match_transformers():
    import torch
    from transformers.generation.stopping_criteria import StopStringCriteria

    hf_tok = hf_tokenizer()
    ours = StopStrings(km.Tokenizer.from_preset(str(tokenizer_folder())), STOPS)
    ref = StopStringCriteria(hf_tok, STOPS)
    rows = [hf_tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    rng = np.random.RandomState(0)
    rows += [rng.randint(3, len(hf_tok), size=rng.randint(1, 9)).tolist() for _ in range(40)]
    width = max(len(r) for r in rows) + 2
    tokens = np.zeros((len(rows), width), dtype="int32")
    hits = 0
    for cut in range(1, width + 1):
        # right-aligned rows: every prefix length of each row ends at `cut`
        for i, r in enumerate(rows):
            tokens[i] = 0
            n = min(len(r), cut)
            tokens[i, cut - n: cut] = r[:n]
        expected = ref(torch.tensor(tokens[:, :cut], dtype=torch.long), None).numpy()
        got = ops.convert_to_numpy(ours(ops.convert_to_tensor(tokens), cut))
        np.testing.assert_array_equal(got, expected, err_msg=f"cut={cut}")
        hits += expected.sum()
    assert hits > 10


def test_token_callback_and_text_streamers(capsys):
    tok = km.Tokenizer.from_preset(str(tokenizer_folder()))
    ids = tok("the quick brown fox jumps", return_tensors=None)["input_ids"]
    seen = []
    cb = TokenCallbackStreamer(seen.append)
    cb.put(np.asarray(ids[:2]))  # the prompt: skipped
    for t in ids[2:]:
        cb.put(np.asarray([t]))
    cb.end()
    assert [s[0] for s in seen] == ids[2:]

    it = TextIteratorStreamer(tok, skip_prompt=True)
    printer = TextStreamer(tok)
    it.put(np.asarray(ids[:1]))
    for t in ids:
        it.put(np.asarray([t]))
        printer.put(np.asarray([t]))
    it.end()
    printer.end()
    assert "".join(it) == tok.decode(ids)
    assert capsys.readouterr().out.strip() == tok.decode(ids)


def test_config_defaults_files_and_errors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": [5, 7], "pad_token_id": 0}))
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "top_p": 0.9, "temperature": 0.6, "transformers_version": "4.0", "max_length": 30,
         "some_future_key": 1}))
    cfg = GenerationConfig.from_folder(tmp_path)
    assert cfg.eos_token_id == (5, 7) and cfg.pad_token_id == 0 and cfg.do_sample and cfg.top_p == 0.9
    assert cfg.top_k == 50 and cfg.resolved_lengths(4) == (30, 0)
    assert GenerationConfig().resolved_lengths(7, context_length=20) == (20, 0)
    assert GenerationConfig(max_new_tokens=5).resolved_lengths(7) == (12, 0)
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(GenerationError, match="generation_config.json"):
        GenerationConfig.from_folder(tmp_path)
    bad = [dict(top_p=0.0), dict(top_p=1.5), dict(max_new_tokens=-1), dict(temperature=0), dict(num_beams=0),
           dict(early_stopping="sometimes"), dict(top_k=-2), dict(min_p=2.0), dict(num_return_sequences=2),
           dict(num_beams=2, num_return_sequences=3), dict(repetition_penalty=0.0)]
    for kw in bad:
        name = next(iter(kw))
        with pytest.raises(GenerationError, match=name):
            GenerationConfig(**kw).validate()
    with pytest.raises(UnknownGenerationArgumentError, match="max_new_tokenz"):
        GenerationConfig(max_new_tokenz=3)
    with pytest.raises(GenerationError, match="num_beam_groups"):
        GenerationConfig(num_beam_groups=2)
    with pytest.raises(GenerationError, match="stop_strings"):
        GenerationConfig(stop_strings=[""])
