"""KOSMOS-2 (km.ImageTextToText) against Transformers' Kosmos2ForConditionalGeneration.

Two tiny references (vision hidden 24 unlike the text hidden 32, latent queries fewer than the
patches), each with random weights (tests/parity.randomize_weights):
  * "base": Transformers' defaults (gelu text MLP, scaled embeddings, quick_gelu vision tower,
    tied head), 5 latent queries;
  * "odd": untied head (both tie flags off), relu text MLP, no embedding scale, gelu vision
    tower, LayerNorm eps 1e-3 in the text model, 3 vision layers, 3 latent queries.
"base" carries Transformers' Kosmos2Processor (an XLM-R sentencepiece tokenizer with the tag and 16
patch-index tokens, left padding, CLIP image processing): its batch (bos, <image>, the latent
positions marked by image_embeds_position_mask, </image>, text; one row left-padded) is the model's
input, and our processor must produce it. "odd" gets the same layout by hand. Logits, the text
decoder's last hidden state and the projected image features are compared on real tokens; greedy
``generate`` must equal Transformers' token for token, and its decoded, post-processed text too.
"""

import json

import numpy as np
import pytest

from tests.parity import _key, assert_close, cached_folder, randomize_weights

PAD, BOS, EOS, BOI, EOI = 1, 0, 2, 3, 70
TEXT = dict(vocab_size=260, embed_dim=32, layers=2, ffn_dim=40, attention_heads=4, max_position_embeddings=64)
VISION = dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=4)
KINDS = {
    "base": dict(text={}, vision={}, latent_query_num=5, tie_word_embeddings=True),
    "odd": dict(text=dict(tie_word_embeddings=False, activation_function="relu", scale_embedding=False,
                          layer_norm_eps=1e-3),
                vision=dict(hidden_act="gelu", num_hidden_layers=3), latent_query_num=3, tie_word_embeddings=False),
}


def _config(kind):
    import transformers as T

    k = KINDS[kind]
    return T.Kosmos2Config(text_config={**TEXT, **k["text"]}, vision_config={**VISION, **k["vision"]},
                           latent_query_num=k["latent_query_num"], tie_word_embeddings=k["tie_word_embeddings"])


PROMPTS = ["<grounding> An image of<phrase> a ball</phrase> and", "<grounding> a dog"]


def _inputs(kind, expected=None):
    """Two rows as the processor builds them, one left-padded ("base": its processor's output)."""
    if kind == "base":
        names = ("input_ids", "attention_mask", "image_embeds_position_mask")
        return {k: expected[f"in_{k}"] for k in names}, expected["in_pixel_values"].transpose(0, 2, 3, 1)
    q = KINDS[kind]["latent_query_num"]
    rng = np.random.RandomState(0)
    rows = [[BOS, BOI] + list(range(4, 4 + q)) + [EOI] + list(rng.randint(5, 90, size=6)),
            [BOS, BOI] + list(range(4, 4 + q)) + [EOI] + list(rng.randint(5, 90, size=3))]
    width = max(len(r) for r in rows)
    ids = np.full((2, width), PAD, "int64")
    mask = np.zeros((2, width), "int64")
    pos = np.zeros((2, width), "int64")
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
        pos[i, width - len(r) + 2: width - len(r) + 2 + q] = 1
    pixels = rng.randn(2, 16, 16, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask, "image_embeds_position_mask": pos}, pixels


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.Kosmos2ForConditionalGeneration(_config(kind)).eval())
        model.save_pretrained(tmp / "model")
        model = T.Kosmos2ForConditionalGeneration.from_pretrained(tmp / "model").eval()
        expected = {}
        if kind == "base":
            proc = _save_processor(tmp / "model")
            enc = proc(text=PROMPTS, images=_proc_images(2), num_image_tokens=5, return_tensors="np")
            expected.update({f"in_{k}": np.asarray(v) for k, v in enc.items()})
        text, pixels = _inputs(kind, expected)
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(pixels.transpose(0, 3, 1, 2))
        captured = {}
        hook = model.text_model.model.register_forward_hook(
            lambda m, a, out: captured.update(hidden=out.last_hidden_state))
        with torch.no_grad():
            expected["logits"] = model(**t, pixel_values=pv).logits.numpy()
            hook.remove()
            expected["hidden"] = captured["hidden"].numpy()
            expected["image_embeds"] = model.get_image_features(pv).pooler_output.numpy()
            expected["generated"] = model.generate(**t, pixel_values=pv, max_new_tokens=6, do_sample=False,
                                                   pad_token_id=PAD, eos_token_id=EOS).numpy()
            if kind == "base":
                expected["beam"] = model.generate(**t, pixel_values=pv, max_new_tokens=4, num_beams=2, do_sample=False,
                                                  pad_token_id=PAD, eos_token_id=EOS).numpy()
        if kind == "base":
            _processor_expectations(proc, expected, tmp)
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"kosmos2-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours(kind):
    text, pixels = _inputs(kind, reference(kind)[1])
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}, text["attention_mask"]


_LOADED = {}


def _model(kind):
    """The reference loaded through the public API, once per run (no test changes it)."""
    import keras_models as km

    if kind not in _LOADED:
        _LOADED[kind] = km.ImageTextToText.from_preset(reference(kind)[0])
    return _LOADED[kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_logits_hidden_states_and_greedy_generate_equal_transformers(kind):
    import keras

    from tests.parity import jit_under_jax, to_numpy

    _, expected = reference(kind)
    model = _model(kind)
    inputs, mask = _ours(kind)
    hidden = model.backbone.predict_on_batch(inputs)  # one compiled call; the head is one matmul
    assert_close(hidden, expected["hidden"], mask=mask, what=f"{kind} text hidden state")
    assert_close(model.logits(keras.ops.convert_to_tensor(hidden)), expected["logits"], mask=mask,
                 what=f"{kind} logits")
    features = jit_under_jax(model.backbone.image_features)(keras.ops.convert_to_tensor(inputs["pixel_values"]))
    assert_close(to_numpy(features), expected["image_embeds"], what=f"{kind} image features")
    assert (model.lm_head is None) == (kind == "base")
    if kind == "odd" and keras.backend.backend() != "torch":
        return  # the decode path is the base case's (CI time: one decode compile per pass)
    out = model.generate(inputs, max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=EOS)
    np.testing.assert_array_equal(out, expected["generated"])
    if kind == "base" and keras.backend.backend() == "torch":  # beams: the image rows follow (eager loop: cheap)
        out = model.generate(inputs, max_new_tokens=4, num_beams=2, do_sample=False, pad_token_id=PAD,
                             eos_token_id=EOS)
        np.testing.assert_array_equal(out, expected["beam"])


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """The untied reference saved by us loads in Transformers with equal logits, and here again."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference("odd")
    model = _model("odd")
    model.save_to_preset(tmp_path / "saved")
    text, pixels = _inputs("odd", expected)
    hf_model = T.Kosmos2ForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                          pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))).logits.numpy()
    mask = text["attention_mask"]
    assert_close(logits, expected["logits"], mask=mask, what="transformers reload")
    again = km.ImageTextToText.from_preset(tmp_path / "saved")
    assert again.backbone.spec == model.backbone.spec
    inputs, _ = _ours("odd")
    assert_close(again.predict_on_batch(inputs), expected["logits"], mask=mask, what="reload")


def test_keras_round_trip_and_input_errors(tmp_path):
    """``.keras`` save and load (same class and config, logits equal to Transformers'), and
    generate's errors naming the input at fault."""
    import keras

    from keras_models.errors import InputError

    _, expected = reference("base")
    model = _model("base")
    inputs, mask = _ours("base")
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model)
    assert restored.backbone.get_config() == model.backbone.get_config()
    assert_close(restored.predict_on_batch(inputs), expected["logits"], mask=mask, what=".keras logits")
    bad = dict(inputs, image_embeds_position_mask=inputs["image_embeds_position_mask"] * 0)
    with pytest.raises(InputError, match="marks 0 positions.*2 image"):
        model.generate(bad, max_new_tokens=1)
    with pytest.raises(InputError, match="image_embeds_position_mask"):
        model.generate({k: v for k, v in inputs.items() if k != "image_embeds_position_mask"}, max_new_tokens=1)
    with pytest.raises(InputError, match=r"pixel_values of shape \(2, 12, 12, 3\)"):
        model.generate(dict(inputs, pixel_values=inputs["pixel_values"][:, :12, :12]), max_new_tokens=1)


def test_config_errors(tmp_path):
    from keras_models.errors import ConfigError
    from keras_models.models.kosmos2 import Kosmos2Spec

    folder, _ = reference("base")
    config = json.loads((folder / "config.json").read_text())
    spec = Kosmos2Spec.from_hf(config)
    assert spec.latent_query_num == 5 and spec.text_config.hidden_size == 32
    assert Kosmos2Spec.from_hf(spec.to_hf()) == spec
    for where, key, bad in (("text_config", "add_cross_attention", True),
                            ("text_config", "activation_function", "nope"),
                            ("text_config", "attention_heads", 5),
                            ("text_config", "pad_token_id", 500),
                            ("vision_config", "patch_size", 5),
                            ("vision_config", "hidden_act", "nope"),
                            (None, "latent_query_num", 0)):
        broken = json.loads(json.dumps(config))
        (broken if where is None else broken[where])[key] = bad
        with pytest.raises(ConfigError, match=key if key != "attention_heads" else "attention_heads"):
            Kosmos2Spec.from_hf(broken)


# --- processor ----------------------------------------------------------------------------------
GROUNDED = ("<grounding> An image of<phrase> a snowman</phrase><object><patch_index_0044><patch_index_0863></object> "
            "warming himself by<phrase> a fire</phrase><object><patch_index_0005><patch_index_0911>"
            "</delimiter_of_multi_objects/><patch_index_0006><patch_index_0038></object> and<object><patch_index_0100>"
            "<patch_index_0100></object>.")
CALLS = {  # name -> (texts, number of images, keyword arguments)
    "grounded_batch": (["<grounding> a cat is here ", "<grounding><phrase> the dog</phrase> and<phrase> a ball</phrase>"],
                       2, dict(bboxes=[None, [(1, 14), [(0.1, 0.2, 0.5, 0.9), (2, 3)]]])),
    "single": ("describe it", 1, {}),
    "eos": (["a cat", "hello world again"], 2, dict(add_eos_token=True)),
    "text_only": (["a cat", "hello world again <phrase>x</phrase>"], 0, dict(padding=True)),
}


def _proc_images(n):
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(20 + 6 * i, 18, 3), dtype=np.uint8)) for i in range(n)]


def _save_processor(folder):
    """Transformers' Kosmos2Processor over an XLM-R sentencepiece tokenizer (16 patch-index
    tokens, left padding), saved in ``folder`` and reloaded as a user's AutoProcessor is."""
    import sys
    from pathlib import Path

    import transformers as T

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenizers"))
    from tok_refs import ref_dir

    tok = T.AutoTokenizer.from_pretrained(ref_dir("xlmr_spm"), padding_side="left")
    image = T.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    T.Kosmos2Processor(image, tok, num_patch_index_tokens=16).save_pretrained(folder)
    proc = T.AutoProcessor.from_pretrained(folder)
    assert len(proc.tokenizer) <= TEXT["vocab_size"]
    return proc


def _processor_expectations(proc, expected, tmp):
    for name, (texts, n, kw) in CALLS.items():
        enc = proc(text=texts, images=_proc_images(n) if n else None, num_image_tokens=5, return_tensors="np", **kw)
        expected.update({f"{name}_{k}": np.asarray(v) for k, v in enc.items()})
    (tmp / "post.json").write_text(json.dumps({
        "decoded": proc.post_process_image_text_to_text(expected["grounded_batch_input_ids"]),
        "generated": proc.post_process_image_text_to_text(expected["generated"]),
        "extracted": [proc.post_process_generation(t) for t in (GROUNDED, "<image></image>" + GROUNDED, "plain")],
        "raw": proc.post_process_generation(GROUNDED, False)}))


@pytest.mark.backend_independent  # numpy and Rust tokenizers only: the torch pass runs it
def test_processor_equals_transformers(tmp_path):
    """Image placeholders and their position mask, bos / eos, grounding and patch-index tokens
    from integer and float boxes, right padding, CLIP pixels; post-processing of grounded text."""
    import transformers as T

    from keras_models.errors import InputError

    folder, expected = reference("base")
    post = json.loads((folder.parent / "post.json").read_text())
    proc = _model("base").preprocessor  # loaded with the model: num_image_tokens = latent_query_num
    out = proc(text=PROMPTS, images=_proc_images(2))
    for key in ("input_ids", "attention_mask", "image_embeds_position_mask"):
        np.testing.assert_array_equal(out[key], expected[f"in_{key}"], err_msg=key)
    for name, (texts, n, kw) in CALLS.items():
        kw = {k: v for k, v in kw.items() if k != "padding"}
        out = proc(text=texts, images=_proc_images(n) if n else None, **kw)
        for key in ("input_ids", "attention_mask", "image_embeds_position_mask"):
            if f"{name}_{key}" in expected:
                np.testing.assert_array_equal(out[key], expected[f"{name}_{key}"], err_msg=f"{name} {key}")
        if n:
            np.testing.assert_allclose(out["pixel_values"], expected[f"{name}_pixel_values"].transpose(0, 2, 3, 1),
                                       atol=1e-5)
    assert proc.post_process_image_text_to_text(expected["grounded_batch_input_ids"]) == post["decoded"]
    assert proc.post_process_image_text_to_text(expected["generated"]) == post["generated"]
    extracted = [proc.post_process_generation(t) for t in (GROUNDED, "<image></image>" + GROUNDED, "plain")]
    assert json.loads(json.dumps(extracted)) == post["extracted"]
    assert proc.post_process_generation(GROUNDED, False) == post["raw"]
    with pytest.raises(InputError, match="2 text.*1 image"):
        proc(text=["a", "b"], images=_proc_images(1))
    with pytest.raises(InputError, match="bboxes has 2 entries but the text has 1"):
        proc(text="<phrase>a</phrase>", images=_proc_images(1), bboxes=[(1, 2), (3, 4)])
    proc.save_pretrained(tmp_path)  # what save_to_preset writes: Transformers reads it back
    again = T.AutoProcessor.from_pretrained(tmp_path)
    enc = again(text=PROMPTS, images=_proc_images(2), num_image_tokens=5, return_tensors="np")
    for key in ("input_ids", "attention_mask", "image_embeds_position_mask"):
        np.testing.assert_array_equal(enc[key], expected[f"in_{key}"], err_msg=f"reloaded {key}")
