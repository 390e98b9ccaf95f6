"""Encoder pipelines against Transformers' own pipelines on the same tiny checkpoints."""

import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.pipelines.refs import assert_same, checkpoint, hf_pipeline_outputs, km_pipeline

S1 = "john lives in paris."
S2 = "the movie was great, mary works at google in london!"
S3 = "who does the cat love"

CASES = {
    ("text-classification", "sentiment"): [
        ([S1], {}),
        ([[S1, S2]], {}),
        ([S1], {"top_k": 2}),
        ([S2], {"top_k": None}),
        ([[S1, S2, S3]], {"top_k": 1}),
        ([{"text": S1, "text_pair": S3}], {}),
        ([S1], {"function_to_apply": "sigmoid", "top_k": None}),
        ([[S1, S2, S3]], {"batch_size": 2}),
    ],
    ("text-classification", "multilabel"): [([S1], {"top_k": None}), ([[S2, S3]], {})],
    ("text-classification", "regression1"): [([S1], {}), ([S2], {"top_k": None})],
    ("zero-shot-classification", "nli"): [
        ([S1, ["city", "person", "bad movie"]], {}),
        ([S2], {"candidate_labels": "city, good", "multi_label": True}),
        ([S2], {"candidate_labels": ["city"]}),
        ([[S1, S3]], {"candidate_labels": ["a", "b"], "hypothesis_template": "this is {}."}),
    ],
    ("fill-mask", "mlm"): [
        (["the cat sat on the [MASK]."], {}),
        (["[MASK] lives in [MASK]."], {"top_k": 3}),
        ([["hello [MASK]", "the [MASK] is in france"]], {"top_k": 2}),
        (["paris is a [MASK]."], {"targets": ["city", "cat", "world"]}),
        ([["what is [MASK]?"]], {}),
    ],
    ("feature-extraction", "base"): [([S1], {}), ([[S1, S3]], {})],
}


@pytest.mark.parametrize("task,ckpt", list(CASES), ids=[f"{t}-{c}" for t, c in CASES])
def test_matches_transformers(task, ckpt):
    folder = checkpoint(ckpt)
    calls = CASES[(task, ckpt)]
    hf_calls = [(a, {k: v for k, v in kw.items() if k != "batch_size"}) for a, kw in calls]
    expected = hf_pipeline_outputs(task, folder, hf_calls)
    pipe = km_pipeline(task, ckpt)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"{task}{args!r:.60}{kwargs}")


def test_labels_from_model_object_and_alias():
    folder = checkpoint("sentiment")
    model = km.TextClassifier.from_preset(folder)
    pipe = km.pipeline("sentiment-analysis", model=model)
    out = pipe(S1, top_k=None)
    assert sorted(o["label"] for o in out) == ["NEG", "NEU", "POS"]
    assert abs(sum(o["score"] for o in out) - 1) < 1e-5


def test_errors_name_the_argument():
    folder = checkpoint("mlm")
    pipe = km_pipeline("fill-mask", "mlm")
    with pytest.raises(km.pipelines.PipelineError, match="mask token"):
        pipe("no mask here")
    with pytest.raises(km.pipelines.PipelineError, match="'bogus'"):
        pipe("a [MASK]", bogus=1)
    with pytest.raises(km.pipelines.PipelineError, match="batch_size"):
        pipe("a [MASK]", batch_size=0)
    with pytest.raises(km.pipelines.PipelineError, match="Unknown pipeline task"):
        km.pipeline("no-such-task", model=folder)


def test_transformers_argument_spellings():
    """torch_dtype= is dtype= (a torch dtype or its name); device='cpu' / -1 run here, a GPU index
    is refused with the way to choose one; disagreeing dtypes are refused."""
    import torch

    folder = checkpoint("sentiment")
    want = km.pipeline("text-classification", model=folder)(S1, top_k=None)
    for kwargs in ({"device": -1, "torch_dtype": torch.float32}, {"device": "cpu", "torch_dtype": "float32"}):
        pipe = km.pipeline("text-classification", model=folder, **kwargs)
        assert pipe.model.compute_dtype == "float32"
        assert_same(pipe(S1, top_k=None), want)
    assert km.pipeline("text-classification", model=folder, torch_dtype=torch.bfloat16).model.compute_dtype == "bfloat16"
    with pytest.raises(km.pipelines.PipelineError, match="CUDA_VISIBLE_DEVICES"):
        km.pipeline("text-classification", model=folder, device=0)
    with pytest.raises(km.pipelines.PipelineError, match="torch_dtype"):
        km.pipeline("text-classification", model=folder, dtype="float16", torch_dtype="bfloat16")
    with pytest.raises(ConfigError, match="dtype=.int7."):
        km.pipeline("text-classification", model=folder, torch_dtype="int7")


def _st_folder():
    """The tiny BERT as a sentence-transformers folder (CLS + mean pooling, normalised), and
    sentence-transformers' own cosine similarities on it."""
    import json
    import shutil

    from tests.parity import cached_folder

    base = checkpoint("base")

    def build(tmp):
        from sentence_transformers import SentenceTransformer

        shutil.copytree(base, tmp / "model")
        st = "sentence_transformers.models."
        modules = [{"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": st + "Normalize"}]
        (tmp / "model" / "modules.json").write_text(json.dumps(modules))
        (tmp / "model" / "1_Pooling").mkdir()
        (tmp / "model" / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 16, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}))
        model = SentenceTransformer(str(tmp / "model"), device="cpu")
        vectors = model.encode([S1, S2, S3, "hello world"], convert_to_tensor=True)
        sims = model.similarity(vectors[:1], vectors[1:])[0].tolist()
        (tmp / "sims.json").write_text(json.dumps(sims))

    folder = cached_folder("pipe-st-" + base.parent.name, build)
    return folder / "model", json.loads((folder / "sims.json").read_text())


def test_sentence_similarity_matches_sentence_transformers():
    folder, expected = _st_folder()
    pipe = km.pipeline("sentence-similarity", model=folder)
    assert_same(pipe({"source_sentence": S1, "sentences": [S2, S3, "hello world"]}), expected)
    assert_same(pipe(S1, sentences=[S2, S3, "hello world"], batch_size=3), expected)
    with pytest.raises(km.pipelines.PipelineError, match="'sentences'"):
        pipe({"source_sentence": S1, "sentences": "not a list"})


def test_task_inferred_from_the_checkpoint_and_progress_bar(capsys):
    pipe = km.pipeline(model=checkpoint("ner"))
    assert pipe.task == "token-classification"
    ours = km_pipeline("fill-mask", "mlm")(["hello [MASK]", "the [MASK]", "a [MASK]"], progress=True, batch_size=2)
    assert len(ours) == 3
    assert "fill-mask" in capsys.readouterr().err  # tqdm's bar, on stderr
    with pytest.raises(km.pipelines.PipelineError, match="pass task="):
        km.pipeline(model=km_pipeline("fill-mask", "mlm").model)
