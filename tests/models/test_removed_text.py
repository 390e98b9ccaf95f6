"""Text architectures removed from Transformers 5 (NEZHA, ...), against references recorded with
Transformers 4.57.1 (tests/models/removed_golden/record.py: tiny seeded checkpoints + outputs; no
Transformers model is built here). Each family: every head through the public ``from_preset``, the
backbone's last hidden state, and a ``save_to_preset`` reload with equal outputs (Transformers 5
cannot load these checkpoints)."""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, to_numpy

GOLDEN = Path(__file__).parent / "removed_golden"
ENCODER_TASKS = ("MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")


def golden(name):
    data = dict(np.load(GOLDEN / f"{name}.npz"))
    inputs = {k[3:]: v for k, v in data.items() if k.startswith("in_")}
    expected = {}
    for k, v in data.items():
        if "__" in k:
            task, out = k.split("__")
            expected.setdefault(task, {})[out] = v
    return inputs, expected


def check_task(name, task, inputs, want, model=None):
    """``task`` loaded from the recorded checkpoint (or ``model``) against the recorded outputs."""
    mask = inputs["attention_mask"]
    model = model or getattr(km, task).from_preset(GOLDEN / name / task)
    assert model.head_from_checkpoint
    out = model(inputs)
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], want[k], mask=mask, what=f"{name} {task} {k}")
    elif task == "TextClassifier":
        assert_close(out, want["logits"], what=f"{name} {task}")
    else:
        assert_close(out, want["logits"], mask=mask, what=f"{name} {task}")
    return model


def check_backbone(name, folder, inputs, want, prefix):
    model = km.Backbone.from_preset(folder)
    assert type(model).__name__ == prefix + "Backbone"
    assert_close(model(inputs), want, mask=inputs["attention_mask"], what=f"{name} backbone")
    m = inputs["attention_mask"][..., None].astype("float32")
    pooled = (want * m).sum(1) / m.sum(1)
    assert_close(km.TextEmbedder.from_preset(folder)(inputs), pooled, what=f"{name} TextEmbedder")


# --- NEZHA: functional relative positions (clipped at 3 < sequence length 9) -----------------------
@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_nezha_parity(task, tmp_path):
    inputs, expected = golden("nezha")
    model = check_task("nezha", task, inputs, expected[task])
    assert type(model).__name__ == "Nezha" + task
    if task == "MaskedLM":
        check_backbone("nezha", GOLDEN / "nezha" / task, inputs, expected[task]["hidden"], "Nezha")
    if task == "TextClassifier":
        model.save_to_preset(tmp_path / "saved")
        check_task("nezha", task, inputs, expected[task], km.TextClassifier.from_preset(tmp_path / "saved"))


# --- Open-Llama: the shared decoder with a LayerNorm'd embedding and tied LM head (defaults), and
# an odd config (own lm_head, no stable embedding, linear rope scaling, gelu) --------------------
@pytest.mark.parametrize("case", ["CausalLM", "CausalLM_odd"])
def test_open_llama_parity(case):
    inputs, expected = golden("open_llama")
    folder, mask = GOLDEN / "open_llama" / case, inputs["attention_mask"]
    model = km.CausalLM.from_preset(folder)
    assert type(model).__name__ == "OpenLlamaCausalLM" and model.head_from_checkpoint
    assert_close(model(inputs), expected[case]["logits"], mask=mask, what=f"open_llama {case}")
    assert_close(model.backbone(inputs), expected[case]["hidden"], mask=mask, what=f"open_llama {case} backbone")
    # greedy tokens of the recorded generate(do_sample=False), one row left-padded: the torch pass only
    # (the decode loop is the shared one, greedy-tested on every backend in tests/models/test_decoders.py;
    # compiling it costs 20-40 s under jax / tensorflow)
    if case == "CausalLM" and keras.backend.backend() == "torch":
        ref = expected["generate"]
        prompt = {"input_ids": ref["prompt"].astype("int32"), "attention_mask": ref["mask"].astype("int32")}
        got = np.asarray(model.generate(prompt, do_sample=False, max_new_tokens=8, pad_token_id=0))
        np.testing.assert_array_equal(got, ref["tokens"])


def test_open_llama_save_to_preset_reloads(tmp_path):
    import json

    inputs, expected = golden("open_llama")
    km.CausalLM.from_preset(GOLDEN / "open_llama" / "CausalLM_odd").save_to_preset(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "open-llama" and config["rope_scaling"] == {"type": "linear", "factor": 2.0}
    assert not config["use_stable_embedding"] and not config["shared_input_output_embedding"]
    model = km.CausalLM.from_preset(tmp_path / "saved")
    assert_close(model(inputs), expected["CausalLM_odd"]["logits"], mask=inputs["attention_mask"],
                 what="open_llama saved")


# --- XLM-ProphetNet: ProphetNet (3 predict streams, relu) with its SentencePiece tokenizer ---------
def test_xlm_prophetnet_parity(tmp_path):
    inputs, expected = golden("xlm_prophetnet")
    model = km.Seq2SeqLM.from_preset(GOLDEN / "xlm_prophetnet" / "Seq2SeqLM")
    assert type(model).__name__ == "XLMProphetNetSeq2SeqLM" and model.head_from_checkpoint
    want, dmask = expected["Seq2SeqLM"], inputs["decoder_attention_mask"]
    assert_close(model(inputs), want["logits"], mask=dmask, what="xlm_prophetnet logits")
    assert_close(model.encode(inputs), want["encoder_last_hidden_state"], mask=inputs["attention_mask"],
                 what="xlm_prophetnet encoder")
    assert_close(model.backbone(inputs)["last_hidden_state"], want["hidden"], mask=dmask,
                 what="xlm_prophetnet main stream")
    model.save_to_preset(tmp_path / "saved")
    assert (tmp_path / "saved" / "prophetnet.tokenizer").is_file()
    saved = km.Seq2SeqLM.from_preset(tmp_path / "saved")
    assert type(saved).__name__ == "XLMProphetNetSeq2SeqLM"
    assert saved.preprocessor.tokenizer.class_name == "XLMProphetNetTokenizer"
    assert_close(saved(inputs), want["logits"], mask=dmask, what="xlm_prophetnet saved")


# The tokenizer is numpy + Rust, and ProphetNet's generate runs on every backend in
# tests/models/test_seq2seq_prophetnet.py: this end-to-end check runs in the torch pass only.
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="backend-independent (see the comment above)")
def test_xlm_prophetnet_tokenizer_and_generate():
    import json

    _, expected = golden("xlm_prophetnet")
    extra = json.loads((GOLDEN / "xlm_prophetnet.json").read_text(encoding="utf-8"))
    model = km.Seq2SeqLM.from_preset(GOLDEN / "xlm_prophetnet" / "Seq2SeqLM")
    # ids, pieces and decoding of XLMProphetNetTokenizer (4.57.1)
    tok, ref = model.preprocessor.tokenizer, expected["tokenizer"]
    queries = extra["queries"]
    assert tok.class_name == "XLMProphetNetTokenizer"
    assert tok(queries[0])["input_ids"][0].tolist() == ref["single"].tolist()
    assert tok(queries[0], queries[1])["input_ids"][0].tolist() == ref["pair"].tolist()
    batch = tok(queries, padding=True, return_tensors="np")
    np.testing.assert_array_equal(batch["input_ids"], ref["batch_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], ref["batch_mask"])
    assert [tok.tokenize(q) for q in queries] == extra["tokenize"]
    assert [tok.decode(ids) for ids in ref["batch_ids"]] == extra["decode"]
    assert [tok.decode(ids, skip_special_tokens=True) for ids in ref["batch_ids"]] == extra["decode_skip"]
    # greedy generation from a right-padded batch of texts: Transformers' tokens and strings with its
    # KV cache; without it Transformers picks other tokens (ProphetNet's two paths differ), which
    # forward passes over each prefix reproduce
    prompts = ["Language models predict the next token, piece by piece, in many languages.",
               "Hello world! How are you? Fine, thanks. Bonjour le monde, ça va?"]
    assert model.generate(prompts, do_sample=False, max_new_tokens=6) == extra["generate_text"]
    enc = tok(prompts, padding=True)
    got = to_numpy(model.generate(enc, do_sample=False, max_new_tokens=6))
    np.testing.assert_array_equal(got, expected["generate"]["tokens"])
    uncached = expected["generate"]["tokens_uncached"]
    for k in range(1, uncached.shape[1]):
        logits = to_numpy(model({**enc, "decoder_input_ids": uncached[:, :k].astype("int32")}))
        np.testing.assert_array_equal(logits[:, -1].argmax(-1), uncached[:, k])


# --- RetriBERT: two BERT towers (not shared), pooler + bias-free projection per tower --------------
@pytest.mark.parametrize("tower", ["query", "doc"])
def test_retribert_towers(tower, tmp_path):
    inputs, expected = golden("retribert")
    folder, want = GOLDEN / "retribert" / "TextEmbedder", expected[tower]
    kw = {} if tower == "query" else {"tower": "doc"}  # the query tower is the default
    backbone = km.Backbone.from_preset(folder, **kw)
    assert type(backbone).__name__ == "RetriBertBackbone" and backbone.tower == tower
    assert_close(backbone(inputs), want["hidden"], mask=inputs["attention_mask"], what=f"retribert {tower} states")
    # embed_questions / embed_answers take no token types
    ids = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    model = km.TextEmbedder.from_preset(folder, **kw)
    assert type(model).__name__ == "RetriBertTextEmbedder" and model.head_from_checkpoint
    assert_close(model(ids), want["embedding"], what=f"retribert {tower} embedding")
    if tower == "doc":  # the saved preset is the doc tower alone, and says so
        model.save_to_preset(tmp_path / "saved")
        saved = km.TextEmbedder.from_preset(tmp_path / "saved")
        assert saved.backbone.tower == "doc"
        assert_close(saved(ids), want["embedding"], what="retribert saved doc tower")


# --- ERNIE-M: no token types, positions from 2, its own weight names (relu, eps 1e-6, pad id 1) ----
@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ENCODER_TASKS[1:])  # the family has no MLM head
def test_ernie_m_parity(task, tmp_path):
    inputs, expected = golden("ernie_m")
    model = check_task("ernie_m", task, inputs, expected[task])
    assert type(model).__name__ == "ErnieM" + task
    if task == "TextClassifier":
        check_backbone("ernie_m", GOLDEN / "ernie_m" / task, inputs, expected[task]["hidden"], "ErnieM")
        model.save_to_preset(tmp_path / "saved")
        check_task("ernie_m", task, inputs, expected[task], km.TextClassifier.from_preset(tmp_path / "saved"))


# --- REALM: its retrieval embedder (pooler -> dense -> LayerNorm), projection 8, 3 token types ------
def test_realm_embedder(tmp_path):
    inputs, expected = golden("realm")
    folder, want = GOLDEN / "realm" / "TextEmbedder", expected["TextEmbedder"]
    backbone = km.Backbone.from_preset(folder)
    assert type(backbone).__name__ == "RealmBackbone"
    assert_close(backbone(inputs), want["hidden"], mask=inputs["attention_mask"], what="realm states")
    model = km.TextEmbedder.from_preset(folder)
    assert type(model).__name__ == "RealmTextEmbedder" and model.head_from_checkpoint
    assert_close(model(inputs), want["embedding"], what="realm projected_score")
    model.save_to_preset(tmp_path / "saved")
    assert_close(km.TextEmbedder.from_preset(tmp_path / "saved")(inputs), want["embedding"], what="realm saved")
