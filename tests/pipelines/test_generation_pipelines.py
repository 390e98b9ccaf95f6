"""text-generation against Transformers' pipeline (greedy) on a tiny Llama."""

import pytest

import keras_models as km
from tests.pipelines.refs import assert_same, causal_checkpoint, hf_pipeline_outputs

CHAT = [{"role": "user", "content": "where does john live?"}]
CALLS = [
    (["the cat"], {"max_new_tokens": 6, "do_sample": False}),
    (["hello world"], {"max_new_tokens": 4, "do_sample": False, "return_full_text": False}),
    ([["john lives", "where"]], {"max_new_tokens": 3, "do_sample": False}),
    ([CHAT], {"max_new_tokens": 5, "do_sample": False}),
]


def test_text_generation_matches_transformers():
    folder = causal_checkpoint()
    expected = hf_pipeline_outputs("text-generation", folder, CALLS)
    assert any(e[0]["generated_text"] for e in expected[:2])
    pipe = km.pipeline("text-generation", model=folder)
    for (args, kwargs), theirs in zip(CALLS, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"text-generation {args!r:.40} {kwargs}")


def test_text_generation_bad_input():
    pipe = km.pipeline("text-generation", model=causal_checkpoint())
    with pytest.raises(km.pipelines.PipelineError, match="inputs"):
        pipe(123)
