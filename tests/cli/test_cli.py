"""Every ``keras-models`` subcommand, run as a subprocess (``python -m keras_models.cli``, the
same entry point as the console script) on tiny local checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from tests.pipelines.refs import checkpoint

BACKEND = os.environ.get("KERAS_BACKEND", "jax")


def cli(*args, stdin=None, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    env.pop("KERAS_BACKEND", None)  # --backend must be what selects it
    proc = subprocess.run([sys.executable, "-m", "keras_models.cli", "--backend", BACKEND, *map(str, args)],
                          input=stdin, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.mark.all_backends
def test_run_prints_json_lines_matching_the_python_pipeline():
    import keras_models as km

    folder = checkpoint("sentiment")
    proc = cli("run", "text-classification", "--model", folder, "--arg", "top_k=2", "--batch-size", "2",
               "john lives in paris.", "hello world")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(lines) == 2
    expected = km.pipeline("text-classification", model=folder)(["john lives in paris.", "hello world"], top_k=2)
    for got, want in zip(lines, expected):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert all(abs(g["score"] - w["score"]) < 1e-4 for g, w in zip(got, want))


def test_run_reads_stdin_and_json_inputs_in_process(capsys, monkeypatch):
    import io

    from keras_models import cli as km_cli

    monkeypatch.setattr("sys.stdin", io.StringIO("hello [MASK]\nthe [MASK]\n"))
    assert km_cli.main(["run", "fill-mask", "--model", str(checkpoint("mlm")), "--arg", "top_k=1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(len(x) == 1 and {"score", "token", "token_str", "sequence"} <= set(x[0]) for x in lines)
    context = "john lives in paris."
    assert km_cli.main(["run", "question-answering", "--model", str(checkpoint("qa")),
                        json.dumps({"question": "where does john live?", "context": context})]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert context[answer["start"]:answer["end"]] == answer["answer"]
    assert km_cli.main(["run", "no-such-task", "--model", str(checkpoint("mlm")), "x"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: PipelineError: Unknown pipeline task 'no-such-task'")


def test_info_describes_the_preset():
    info = json.loads(cli("info", checkpoint("ner"), "--json").stdout)
    assert info["model_type"] == "bert" and info["architectures"] == ["BertForTokenClassification"]
    assert info["head_in_checkpoint"] == ["TokenClassifier"]
    assert "token-classification" in info["pipelines"]
    assert not any(p.startswith(("image", "zero-shot-image")) for p in info["pipelines"]), info["pipelines"]
    assert info["weight_dtypes"] == ["float32"]
    # parameters counted from the safetensors headers = transformers' own count
    from safetensors import safe_open

    with safe_open(str(checkpoint("ner") / "model.safetensors"), "np") as f:
        total = sum(f.get_tensor(k).size for k in f.keys())
    assert info["parameters"] == total


def test_convert_round_trip_with_verification(tmp_path):
    keras_file = tmp_path / "ner.keras"
    out = cli("convert", checkpoint("ner"), keras_file)
    assert "verification: max abs diff" in out.stdout and "ok" in out.stdout
    assert keras_file.is_file()
    back = tmp_path / "ner-hf"
    from keras_models import cli as km_cli

    assert km_cli.main(["convert", str(keras_file), str(back)]) == 0  # and back (in-process)
    assert (back / "config.json").is_file() and (back / "model.safetensors").is_file()
    # the .keras file carried the tokenizer, so the exported folder runs pipelines again
    import keras_models as km

    texts = ["Hugging Face is in New York", "a b"]
    assert (km.Tokenizer.from_preset(back)(texts, padding=True)["input_ids"].tolist()
            == km.Tokenizer.from_preset(checkpoint("ner"))(texts, padding=True)["input_ids"].tolist())
    # the exported folder is a Transformers checkpoint with the same weights
    from safetensors.numpy import load_file

    a, b = load_file(checkpoint("ner") / "model.safetensors"), load_file(back / "model.safetensors")
    assert set(a) == set(b) and all(abs(a[k] - b[k]).max() == 0 for k in a)


def test_models_prints_the_registry_table():
    out = cli("models").stdout
    assert out.startswith("# Supported models") and "`bert`" in out and "`roberta`" in out


def test_demo_subcommand_runs_the_main_job():
    """The main job end to end as a subprocess (real MiniLM preset), shortened with --limit."""
    out = cli("demo", "--epochs", "1", "--limit", "32").stdout
    assert "Semantic search" in out and "held-out accuracy" in out and "predictions on new sentences" in out


def test_generate_streams_the_greedy_continuation():
    import keras_models as km
    from tests.pipelines.refs import causal_checkpoint

    folder = causal_checkpoint()
    out = cli("generate", "--model", folder, "--max-new-tokens", "5", "the cat").stdout
    expected = km.pipeline("text-generation", model=folder)("the cat", max_new_tokens=5, do_sample=False,
                                                            return_full_text=False)[0]["generated_text"]
    assert out.rstrip("\n") == expected


def test_info_text_and_missing_preset_in_process(capsys):
    from keras_models import cli as km_cli

    assert km_cli.main(["info", str(checkpoint("ner"))]) == 0
    text = capsys.readouterr().out
    assert "BertForTokenClassification" in text and "model.safetensors" in text and "parameters" in text
    assert km_cli.main(["info", "/no/such/folder"]) == 1
    assert "PresetError" in capsys.readouterr().err
