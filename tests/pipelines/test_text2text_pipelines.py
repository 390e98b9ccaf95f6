"""text2text-generation / summarization / translation (removed in Transformers 5, kept with the
4.x behaviour) against the reference model's own ``generate`` on the same tokenization."""

import json

import pytest

import keras_models as km
from tests.parity import _key, cached_folder
from tests.pipelines.refs import seq2seq_checkpoint

TEXTS = ["the cat sat on the mat", "john lives in paris"]
CASES = [  # (task, prefix the 4.x pipeline puts in front, call kwargs, generate kwargs)
    ("text2text-generation", "", {"max_new_tokens": 5}, {"max_new_tokens": 5}),
    ("summarization", "summarize: ", {}, {"max_new_tokens": 4}),
    ("translation_en_to_de", "translate English to German: ", {"max_new_tokens": 3, "num_beams": 2},
     {"max_new_tokens": 3, "num_beams": 2}),
]


def _reference(folder):
    def build(tmp):
        import torch
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
        out = {}
        for task, prefix, _, gen in CASES:
            rows = []
            for text in TEXTS:
                enc = tok(prefix + text, return_tensors="pt")
                with torch.no_grad():
                    ids = model.generate(**enc, do_sample=False, **gen)
                rows.append(tok.decode(ids[0], skip_special_tokens=True))
            out[task] = rows
        (tmp / "out.json").write_text(json.dumps(out))

    return json.loads((cached_folder(_key("t2t-ref", str(folder), repr(CASES)), build) / "out.json").read_text())


@pytest.mark.one_case_per_pass("task")  # generation per backend: tests/models/test_seq2seq_generate.py
@pytest.mark.parametrize("task", [c[0] for c in CASES])
def test_seq2seq_pipelines_match_the_reference_generate(task):
    folder = seq2seq_checkpoint()
    expected = _reference(folder)
    assert any(expected[t][0] for t in expected), "degenerate reference: empty generations"
    names = {"text2text-generation": "generated_text", "summarization": "summary_text",
             "translation_en_to_de": "translation_text"}
    kwargs = next(c[2] for c in CASES if c[0] == task)
    pipe = km.pipeline(task, model=folder)
    assert pipe(TEXTS[0], **kwargs) == [{names[task]: expected[task][0]}], task
    assert pipe(TEXTS, **kwargs) == [{names[task]: e} for e in expected[task]], task
