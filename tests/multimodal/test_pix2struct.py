"""Pix2Struct (and the DePlot / MatCha checkpoints, is_vqa) against Transformers 5's
Pix2StructForConditionalGeneration and its image processor.

One tiny reference with options that change the numbers: a 32-wide encoder with 3 heads of d_kv 6
(attention 18 wide, unlike the width), ReLU gated MLP, eps 1e-5, 4x4 patches, row / column tables
of 16; a 32-wide decoder with 4 heads, gelu_new, 8 relative buckets up to distance 20, eos 1,
decoder start / pad 0. Built once (weights of unit variance per fan-in, vectors moved off 1 / 0:
tests/parity.py) into one cache folder with: logits and encoder states on a batch of two images of
different aspect ratios (so their padding patches differ) with a right-padded decoder batch;
greedy ``generate`` from the patches, with a decoder prefix (Transformers puts the start token in
front) and from raw images through the image processor; the processor's flattened patches for the
plain and the VQA (question rendered as a header with a given font) settings, and the VQA generate.
"""

import hashlib
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, assert_keras_round_trip, cached_folder, randomize_weights

VISION = dict(hidden_size=32, patch_embed_hidden_size=48, d_ff=36, d_kv=6, num_hidden_layers=2, num_attention_heads=3,
              dense_act_fn="relu", layer_norm_eps=1e-5, seq_len=16, dropout_rate=0.0)
TEXT = dict(vocab_size=64, hidden_size=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4, dense_act_fn="gelu_new",
            relative_attention_num_buckets=8, relative_attention_max_distance=20, layer_norm_epsilon=1e-5,
            dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
PROCESSOR = dict(patch_size={"height": 4, "width": 4}, max_patches=12)
NEW_TOKENS = 6
PREFIX = np.array([[5, 9], [7, 3]])
DECODER = {"decoder_input_ids": np.array([[0, 5, 9, 11, 2], [0, 7, 3, 0, 0]]),
           "decoder_attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
QUESTION = "What is the value of the second bar?"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _images():
    rng = np.random.RandomState(1)
    return [(rng.rand(20, 28, 3) * 255).astype("uint8"), (rng.rand(30, 14, 3) * 255).astype("uint8")]


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference))
    key = "pix2struct-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T
        from transformers.models.pix2struct.image_processing_pil_pix2struct import Pix2StructImageProcessorPil

        torch.manual_seed(0)
        cfg = T.Pix2StructConfig(text_config=TEXT, vision_config=VISION)
        model = randomize_weights(T.Pix2StructForConditionalGeneration(cfg)).eval()
        model.save_pretrained(tmp / "model")
        model = T.Pix2StructForConditionalGeneration.from_pretrained(tmp / "model").eval()
        processor = Pix2StructImageProcessorPil(**PROCESSOR)
        processor.save_pretrained(tmp / "model")
        enc = processor(images=_images(), return_tensors="pt")
        out = {"flattened_patches": enc["flattened_patches"].numpy(), "attention_mask": enc["attention_mask"].numpy()}
        t = {k: torch.tensor(v) for k, v in dict(out, **DECODER).items()}
        gen = dict(do_sample=False, max_new_tokens=NEW_TOKENS)
        with torch.no_grad():
            res = model(**t)
            out["logits"] = res.logits.numpy()
            out["encoder"] = res.encoder_last_hidden_state.numpy()
            out["ids"] = model.generate(flattened_patches=t["flattened_patches"], attention_mask=t["attention_mask"],
                                        **gen).numpy()
            out["prefixed"] = model.generate(flattened_patches=t["flattened_patches"],
                                             attention_mask=t["attention_mask"],
                                             decoder_input_ids=torch.tensor(PREFIX), **gen).numpy()
            if FONT.is_file():
                # Transformers 5.25's __call__ refuses font_path (it downloads Arial): its own
                # render_header with the font, then the plain processor, as its VQA path runs
                vqa_proc = Pix2StructImageProcessorPil(**PROCESSOR, is_vqa=True)
                rendered = [vqa_proc.render_header(im.transpose(2, 0, 1), QUESTION, font_path=str(FONT))
                            for im in _images()]
                vqa = processor(images=[r.transpose(1, 2, 0) for r in rendered], return_tensors="pt")
                out["vqa_patches"] = vqa["flattened_patches"].numpy()
                out["vqa_ids"] = model.generate(flattened_patches=vqa["flattened_patches"],
                                                attention_mask=vqa["attention_mask"], **gen).numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _inputs(expected):
    return dict({k: expected[k] for k in ("flattened_patches", "attention_mask")}, **DECODER)


def test_logits_and_encoder_match_transformers():
    folder, expected = _reference()
    model = km.ImageToText.from_preset(folder)
    assert type(model).__name__ == "Pix2StructImageToText"
    inputs = _inputs(expected)
    assert expected["attention_mask"][0].sum() != expected["attention_mask"][1].sum()  # different padding
    mask = inputs["attention_mask"]
    states = model.backbone.encode_patches(inputs["flattened_patches"], mask)
    assert_close(states, expected["encoder"], mask=mask, what="pix2struct encoder")
    assert_close(model.predict_on_batch(inputs), expected["logits"], mask=DECODER["decoder_attention_mask"],
                 what="pix2struct logits")


def test_image_processor_matches_transformers():
    folder, expected = _reference()
    processor = km.ImageToText.from_preset(folder).preprocessor
    out = processor(_images())
    np.testing.assert_allclose(out["flattened_patches"], expected["flattened_patches"], atol=2e-5)
    np.testing.assert_array_equal(out["attention_mask"], expected["attention_mask"])


def test_greedy_generate_matches_transformers():
    """From the patches, with a decoder prefix (the start token put in front, as Transformers)
    and from raw images through the checkpoint's image processor."""
    folder, expected = _reference()
    model = km.ImageToText.from_preset(folder)
    patches = {k: expected[k] for k in ("flattened_patches", "attention_mask")}
    assert len(set(expected["ids"][:, 1:].ravel().tolist())) > 2  # decisive, varied tokens
    np.testing.assert_array_equal(np.asarray(model.generate(patches, max_new_tokens=NEW_TOKENS)), expected["ids"])
    out = model.generate(patches, decoder_input_ids=PREFIX, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["prefixed"])
    out = model.generate(_images(), max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["ids"])


def test_vqa_renders_the_question_and_generates(tmp_path):
    """DePlot / MatCha (is_vqa): the question rendered as a header with a user-given font gives
    Transformers' patches and tokens; without a font the error names it."""
    folder, expected = _reference()
    if "vqa_ids" not in expected:
        pytest.skip(f"no TrueType font at {FONT}")
    vqa = tmp_path / "vqa"
    shutil.copytree(folder, vqa)
    for name, key in (("config.json", "is_vqa"), ("preprocessor_config.json", "is_vqa")):
        config = json.loads((vqa / name).read_text())
        (vqa / name).write_text(json.dumps(dict(config, **{key: True})))
    model = km.ImageToText.from_preset(vqa)
    assert model.backbone.spec.is_vqa
    out = model.preprocessor(_images(), text=QUESTION, font_path=str(FONT))
    np.testing.assert_allclose(out["flattened_patches"], expected["vqa_patches"], atol=2e-5)
    ids = model.generate(_images(), header_text=QUESTION, font_path=str(FONT), max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(ids), expected["vqa_ids"])
    with pytest.raises(InputError, match="font"):
        model.preprocessor(_images(), text=QUESTION)


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import Pix2StructForConditionalGeneration

    folder, expected = _reference()
    km.ImageToText.from_preset(folder).save_to_preset(tmp_path / "saved")
    hf = Pix2StructForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    inputs = _inputs(expected)
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=DECODER["decoder_attention_mask"], what="reloaded logits")
    saved = json.loads((tmp_path / "saved" / "preprocessor_config.json").read_text())
    assert saved["max_patches"] == 12 and saved["patch_size"] == {"height": 4, "width": 4}


def test_keras_round_trip(tmp_path):
    folder, expected = _reference()
    model = km.ImageToText.from_preset(folder)
    assert_keras_round_trip(model, _inputs(expected), tmp_path, atol=1e-5)


def test_bad_configs_name_the_key(tmp_path):
    folder, _ = _reference()
    config = json.loads((folder / "config.json").read_text())
    bad = [
        (dict(config, tie_word_embeddings=True), "tie_word_embeddings"),
        (dict(config, text_config=dict(config["text_config"], d_kv=6)), "num_heads \\* d_kv"),
        (dict(config, vision_config=dict(config["vision_config"], hidden_size=24)), "vision_config.hidden_size"),
        (dict(config, text_config=dict(config["text_config"], num_layers=0)), "num_layers"),
        (dict(config, text_config=dict(config["text_config"], is_decoder=False)), "is_decoder"),
    ]
    for i, (cfg, message) in enumerate(bad):
        where = tmp_path / str(i)
        where.mkdir()
        (where / "config.json").write_text(json.dumps(cfg))
        (where / "model.safetensors").symlink_to(folder / "model.safetensors")
        with pytest.raises(ConfigError, match=message):
            km.ImageToText.from_preset(where)
    where = tmp_path / "proc"
    shutil.copytree(folder, where)
    (where / "preprocessor_config.json").write_text(json.dumps({"max_patches": 0}))
    with pytest.raises(ConfigError, match="max_patches"):
        km.ImageToText.from_preset(where)
