"""Pix2Struct (and the DePlot / MatCha checkpoints, is_vqa) against Transformers 5's
Pix2StructForConditionalGeneration and its image processor.

One tiny reference with options that change the numbers: a 32-wide encoder with 3 heads of d_kv 6
(attention 18 wide, unlike the width), ReLU gated MLP, eps 1e-5, 4x4 patches, row / column tables
of 16; a 32-wide decoder with 4 heads, gelu_new, 8 relative buckets up to distance 20, eos 1,
decoder start / pad 0. Built once (weights of unit variance per fan-in, vectors moved off 1 / 0:
tests/parity.py) into one cache folder with: logits and encoder states on a batch of two images of
different aspect ratios (so their padding patches differ) with a right-padded decoder batch;
greedy ``generate`` from the patches, with a decoder prefix from Pix2StructProcessor's text (a
word-level tokenizer; Transformers puts the start token in front) and from raw images through the
image processor; the processor's flattened patches for the
plain and the VQA (question rendered as a header with a given font) settings, and the VQA generate.
The model is loaded once per module; a .keras round trip rides on the logits test.
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
from keras_models.models.pix2struct import Pix2StructProcessor, Pix2StructSpec
from tests.parity import assert_close, cached_folder, randomize_weights, to_numpy

VISION = dict(hidden_size=32, patch_embed_hidden_size=48, d_ff=36, d_kv=6, num_hidden_layers=2, num_attention_heads=3,
              dense_act_fn="relu", layer_norm_eps=1e-5, seq_len=16, dropout_rate=0.0)
TEXT = dict(vocab_size=64, hidden_size=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4, dense_act_fn="gelu_new",
            relative_attention_num_buckets=8, relative_attention_max_distance=20, layer_norm_epsilon=1e-5,
            dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
PROCESSOR = dict(patch_size={"height": 4, "width": 4}, max_patches=12)
NEW_TOKENS = 6
TEXTS = ["w5 w9", "w7 w3"]  # decoder prefixes: ids + </s> from the processor
DECODER = {"decoder_input_ids": np.array([[0, 5, 9, 11, 2], [0, 7, 3, 0, 0]]),
           "decoder_attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
QUESTION = "What is the value of the second bar?"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _images():
    rng = np.random.RandomState(1)
    return [(rng.rand(20, 28, 3) * 255).astype("uint8"), (rng.rand(30, 14, 3) * 255).astype("uint8")]


def _tokenizer():
    """A word-level tokenizer over the 64 ids (T5's specials: pad 0, eos 1 appended, unk 2)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(3, 64)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>")


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
        tokenizer = _tokenizer()
        tokenizer.save_pretrained(tmp / "model")
        texts = T.Pix2StructProcessor(image_processor=processor, tokenizer=tokenizer)(
            images=_images(), text=TEXTS, max_patches=PROCESSOR["max_patches"], return_tensors="pt")
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
            out["prefixed"] = model.generate(**texts, **gen).numpy()
            out["text_ids"] = texts["decoder_input_ids"].numpy()
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


@pytest.fixture(scope="module")
def reference():
    folder, expected = _reference()
    return folder, expected, km.ImageToText.from_preset(folder)


def test_logits_and_encoder_match_transformers(reference, tmp_path):
    """Encoder states and logits (one compiled backbone call), and a .keras round trip."""
    import keras

    folder, expected, model = reference
    assert type(model).__name__ == "Pix2StructImageToText"
    inputs = _inputs(expected)
    assert expected["attention_mask"][0].sum() != expected["attention_mask"][1].sum()  # different padding
    out = model.backbone.predict_on_batch(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder"], mask=inputs["attention_mask"],
                 what="pix2struct encoder")
    logits = model.project(out["last_hidden_state"])
    assert_close(logits, expected["logits"], mask=DECODER["decoder_attention_mask"], what="pix2struct logits")
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.backbone.spec == model.backbone.spec
    assert [w.path for w in restored.weights] == [w.path for w in model.weights]
    for a, b in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)


def _vqa_processor():
    from keras_models.models.pix2struct import Pix2StructImageProcessor

    return Pix2StructImageProcessor(**PROCESSOR, is_vqa=True, font_path=str(FONT))


def test_image_processors_match_transformers(reference, tmp_path):
    """The checkpoint's processor (plain) and the VQA one (DePlot / MatCha: the question rendered
    as a header with a user-given font) give Transformers' patches; without a font the error
    names it; an is_vqa checkpoint's config and processor load."""
    folder, expected, model = reference
    out = model.preprocessor.image_processor(_images())  # the checkpoint's max_patches
    np.testing.assert_allclose(out["flattened_patches"], expected["flattened_patches"], atol=2e-5)
    np.testing.assert_array_equal(out["attention_mask"], expected["attention_mask"])
    vqa = tmp_path / "vqa"
    vqa.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        config = json.loads((folder / name).read_text())
        (vqa / name).write_text(json.dumps(dict(config, is_vqa=True)))
    assert Pix2StructSpec.from_hf(json.loads((vqa / "config.json").read_text())).is_vqa
    processor = Pix2StructProcessor.from_preset(vqa)
    with pytest.raises(InputError, match="font"):
        processor(_images(), text=QUESTION)
    # the VQA reference needs a TrueType font on disk (Debian/Ubuntu: fonts-dejavu-core): fail, not skip
    assert "vqa_patches" in expected, f"no TrueType font at {FONT}: the VQA header rendering would go untested"
    out = processor(_images(), text=QUESTION, font_path=str(FONT), max_patches=PROCESSOR["max_patches"])
    np.testing.assert_allclose(out["flattened_patches"], expected["vqa_patches"], atol=2e-5)


@pytest.mark.one_case_per_pass("case")
@pytest.mark.parametrize("case", ["plain", "prefixed"])
def test_greedy_generate_matches_transformers(reference, case):
    """plain: from the patches, from raw images through the checkpoint's image processor and from
    a VQA image (the question rendered on it), one compiled loop; prefixed: with the processor's
    text as the decoder prefix (ids equal to Transformers' processor; the start token put in front,
    as Transformers), and decoded."""
    folder, expected, model = reference
    patches = {k: expected[k] for k in ("flattened_patches", "attention_mask")}
    if case == "prefixed":
        inputs = model.preprocessor(_images(), text=TEXTS, max_patches=PROCESSOR["max_patches"])
        np.testing.assert_array_equal(inputs["decoder_input_ids"], expected["text_ids"])
        out = model.generate(inputs, max_new_tokens=NEW_TOKENS)
        np.testing.assert_array_equal(np.asarray(out), expected["prefixed"])
        assert model.generate(inputs, max_new_tokens=NEW_TOKENS, decode=True)[0].startswith("w5 w9")
        return
    assert len(set(expected["ids"][:, 1:].ravel().tolist())) > 2  # decisive, varied tokens
    np.testing.assert_array_equal(np.asarray(model.generate(patches, max_new_tokens=NEW_TOKENS)), expected["ids"])
    out = model.generate(_images(), max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["ids"])
    assert "vqa_ids" in expected, f"no TrueType font at {FONT}: VQA generation would go untested"
    out = model.generate(_vqa_processor()(_images(), header_text=QUESTION), max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["vqa_ids"])


def test_save_to_preset_reloads_in_transformers(reference, tmp_path):
    import torch
    from transformers import Pix2StructForConditionalGeneration

    folder, expected, model = reference
    model.save_to_preset(tmp_path / "saved")
    hf = Pix2StructForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    inputs = _inputs(expected)
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=DECODER["decoder_attention_mask"], what="reloaded logits")
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(processor(images=_images(), return_tensors="np")["flattened_patches"],
                               expected["flattened_patches"], atol=1e-6)


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
