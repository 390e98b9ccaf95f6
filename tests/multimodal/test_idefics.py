"""IDEFICS (km.ImageTextToText) against Transformers' IdeficsForVisionText2Text.

Two tiny references with options that change the numbers: vision width (24) unlike the text
width (32), two images per row (the second row left-padded and seeing only its first image, its
first tokens seeing none: their cross-attention output is gated off), decoupled embeddings and
head (``additional_vocab_size`` 3, the prompts using those ids), alphas moved off their init, and
  * "plain": no resampler, a cross-attention layer before every decoder layer, float alphas;
  * "resampler": the perceiver resampler (2 blocks, q/k LayerNorms, head_dim unlike the width),
    cross-attention before every 2nd layer (of 2) with q/k RMSNorms, vector alphas, gelu MLPs.
Logits are compared on real tokens; greedy ``generate`` must equal Transformers' token for token.
"""

import json

import numpy as np
import pytest

from tests.parity import _key, assert_close, assert_keras_round_trip, cached_folder, jit_under_jax, randomize_weights

PAD = 0
VOCAB, EXTRA = 99, 3
VISION = dict(embed_dim=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=4, hidden_act="gelu")


def _config(kind):
    import transformers as T

    common = dict(vocab_size=VOCAB, additional_vocab_size=EXTRA, hidden_size=32, intermediate_size=40,
                  num_attention_heads=4, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1,
                  eos_token_id=2, rms_norm_eps=1e-5, alpha_initializer="ones", vision_config=VISION)
    if kind == "plain":
        return T.IdeficsConfig(**common, num_hidden_layers=2, cross_layer_interval=1, alpha_type="float")
    if kind == "resampler":
        return T.IdeficsConfig(**common, num_hidden_layers=2, cross_layer_interval=2, alpha_type="vector",
                               qk_layer_norms=True, hidden_act="gelu", use_resampler=True,
                               perceiver_config=dict(resampler_n_latents=5, resampler_depth=2, resampler_n_heads=2,
                                                     resampler_head_dim=8, qk_layer_norms_perceiver=True))
    raise ValueError(kind)


def _inputs():
    """Two rows with two images each; row 1 left-padded by 3 and seeing only its first image."""
    rng = np.random.RandomState(0)
    width = 10
    ids = rng.randint(3, VOCAB + EXTRA, size=(2, width)).astype("int64")
    ids[:, 0] = 1
    ids[0, 4] = ids[1, 6] = VOCAB  # an additional-vocabulary id (IDEFICS' <image>)
    ids[1, :3] = PAD
    ids[1, 3] = 1
    mask = np.ones((2, width), "int64")
    mask[1, :3] = 0
    image_mask = np.zeros((2, width, 2), "int64")
    image_mask[0, 2:, 0] = 1
    image_mask[0, 6:, 1] = 1
    image_mask[1, 5:, 0] = 1
    pixels = rng.randn(2, 2, 16, 16, 3).astype("float32")
    pixels[1, 1] = 0
    return {"input_ids": ids, "attention_mask": mask, "image_attention_mask": image_mask}, pixels


WORDS = ["User:", "Assistant:", "Describe", "this", "image.", "a", "cat", "dog", "two", "and"]
FAKE, IMG, EOU = VOCAB, VOCAB + 1, VOCAB + 2  # the additional vocabulary, as in IDEFICS checkpoints


def _tokenizer():
    """A word-level tokenizer (left padding) with IDEFICS' special tokens at the additional ids."""
    import tokenizers
    import transformers as T

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in WORDS:
        vocab[w] = len(vocab)
    for i in range(len(vocab), VOCAB):
        vocab[f"w{i}"] = i
    vocab.update({"<fake_token_around_image>": FAKE, "<image>": IMG, "<end_of_utterance>": EOU})
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok = T.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<unk>",
                                    unk_token="<unk>", padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]})
    return tok


def _images():
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(20 + 6 * i, 18, 3), dtype=np.uint8)) for i in range(3)]


def _prompts():
    a, b, c = _images()
    return [["User:", a, b, "Describe this image.", "Assistant: two cats </s>", "User:", c, "and this"],
            ["User:", c, "Describe this image. Assistant:"]]


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.IdeficsForVisionText2Text(_config(kind)).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        model = T.IdeficsForVisionText2Text.from_pretrained(folder).eval()
        text, pixels = _inputs()
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(pixels.transpose(0, 1, 4, 2, 3))
        with torch.no_grad():
            out = model(**t, pixel_values=pv)
            expected = {"logits": out.logits.numpy(),
                        "last_hidden_state": model.model(**t, pixel_values=pv).last_hidden_state.numpy()}
            expected["generated"] = model.generate(**t, pixel_values=pv, max_new_tokens=5, do_sample=False,
                                                   pad_token_id=PAD, eos_token_id=2).numpy()
        if kind == "plain":
            proc = T.IdeficsProcessor(image_processor=T.IdeficsImageProcessor(image_size=16), tokenizer=_tokenizer())
            proc.save_pretrained(folder)
            proc = T.AutoProcessor.from_pretrained(folder)  # what a user of the folder gets
            enc = proc(text=_prompts(), return_tensors="pt")
            expected.update({f"proc_{k}": v.numpy() for k, v in enc.items()})
            with torch.no_grad():
                expected["proc_logits"] = model(**enc).logits.numpy()
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"idefics-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours(text, pixels):
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", ["plain", "resampler"])
def test_logits_and_greedy_generate_equal_transformers(kind):
    import keras_models as km

    folder, expected = reference(kind)
    model = km.ImageTextToText.from_preset(folder)
    text, pixels = _inputs()
    inputs = _ours(text, pixels)
    bb = model.backbone
    both = jit_under_jax(lambda x: (model(x), bb(x)))
    logits, hidden = both(inputs)
    mask = text["attention_mask"]
    assert_close(logits, expected["logits"], mask=mask, what=f"{kind} logits")
    assert_close(hidden, expected["last_hidden_state"], mask=mask, what=f"{kind} last hidden state")
    out = model.generate(inputs, max_new_tokens=5, do_sample=False, pad_token_id=PAD, eos_token_id=2)
    np.testing.assert_array_equal(out, expected["generated"])


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """The resampler model's export loads in Transformers with equal logits; a ``.keras`` round trip
    keeps every switch and the outputs."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference("resampler")
    model = km.ImageTextToText.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    text, pixels = _inputs()
    hf_model = T.IdeficsForVisionText2Text.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                          pixel_values=torch.tensor(pixels.transpose(0, 1, 4, 2, 3))).logits.numpy()
    assert_close(logits, expected["logits"], mask=text["attention_mask"], what="transformers reload")
    assert_keras_round_trip(model, _ours(text, pixels), tmp_path, atol=1e-5)


def test_processor_equals_idefics_processor():
    """Interleaved prompts (two images in a row, an eos then more text, a row with one image),
    left padding, the image processor, image_attention_mask; the logits on its output too (torch
    pass: the processor is numpy, the model's numerics are checked above on every backend)."""
    import keras

    import keras_models as km
    from keras_models.errors import InputError
    from keras_models.models.idefics import IdeficsProcessor

    folder, expected = reference("plain")
    proc = IdeficsProcessor.from_preset(folder)
    out = proc(text=_prompts())
    for k in ("input_ids", "attention_mask", "image_attention_mask"):
        np.testing.assert_array_equal(out[k], expected[f"proc_{k}"], err_msg=k)
    np.testing.assert_allclose(out["pixel_values"], expected["proc_pixel_values"].transpose(0, 1, 3, 4, 2), atol=1e-5)
    assert (out["input_ids"] == EOU).sum() == 0  # as Transformers 5: only when asked
    asked = proc(text=_prompts(), add_end_of_utterance_token=True)["input_ids"]
    assert (asked == EOU).sum(axis=1).tolist() == [2, 0]  # between two texts in a row
    with pytest.raises(InputError, match="image entries"):
        proc(text=["a", "b"], images=_images()[:1])
    if keras.backend.backend() == "torch":
        model = km.ImageTextToText.from_preset(folder)
        assert isinstance(model.preprocessor, IdeficsProcessor)
        assert_close(model(out), expected["proc_logits"], mask=out["attention_mask"], what="processor logits")


def test_config_errors():
    """Values Transformers' IDEFICS cannot run, or that we do not implement, fail naming the key."""
    from keras_models.errors import ConfigError
    from keras_models.models.idefics import IdeficsSpec

    folder, _ = reference("plain")
    config = json.loads((folder / "config.json").read_text())
    assert IdeficsSpec.from_hf(config).vision.hidden_size == 24
    bad = {"alpha_type": "matrix", "cross_layer_interval": 3, "additional_vocab_size": -1, "num_attention_heads": 5,
           "rope_parameters": "x"}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=key):
            IdeficsSpec.from_hf(dict(config, **{key: value}))
    with pytest.raises(ConfigError, match="embed_dim"):
        IdeficsSpec.from_hf(dict(config, vision_config=dict(config["vision_config"], embed_dim=0)))
    with pytest.raises(ConfigError, match="resampler_depth"):
        IdeficsSpec.from_hf(dict(config, perceiver_config={"resampler_depth": "2"}))
