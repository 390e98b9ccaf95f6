"""LLaVA-NeXT (km.ImageTextToText, model_type llava_next) against Transformers'
LlavaNextForConditionalGeneration, LlavaNextImageProcessor(Pil) and LlavaNextProcessor.

Tiny reference: CLIP vision tower of 16x16 pixels (4x4 patches: 16 tokens per tile, the class token
dropped by the "default" strategy), a Llama with GQA, ``image_grid_pinpoints`` of 5 tilings
(1x2, 2x1, 2x2, 1x3, 3x1 tiles). Three images of different sizes and aspect ratios (wide 12x40,
tall 40x14, near-square 20x18) pick different tilings, so their rows get different numbers of image
tokens (unpadding + one newline per row); the text batch is left-padded. Logits and greedy
``generate`` are compared on the processor's own outputs.
"""

import functools
import json

import numpy as np
import pytest

from tests.multimodal.test_llava import PAD, TEXT, VISION, _tokenizer, randomize
from tests.parity import _key, assert_close, cached_folder

IMAGE = 98
PINPOINTS = [[16, 32], [32, 16], [32, 32], [16, 48], [48, 16]]
SIZES = [(12, 40), (40, 14), (20, 18)]
PROMPTS = ["USER: <image>\nwhat is in the image ? ASSISTANT:", "USER: <image>\ndescribe it ASSISTANT:"]
PROMPTS3 = PROMPTS + ["<image> a cat"]


def _images(sizes=SIZES):
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(h, w, 3), dtype=np.uint8)) for h, w in sizes]


def reference():
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        text = T.LlamaConfig(**dict(TEXT, max_position_embeddings=128))  # room for 2-3 tiled images
        cfg = T.LlavaNextConfig(vision_config=T.CLIPVisionConfig(**VISION), text_config=text,
                                image_token_index=IMAGE, image_grid_pinpoints=PINPOINTS, projector_hidden_act="gelu")
        model = randomize(T.LlavaNextForConditionalGeneration(cfg).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        ip = T.LlavaNextImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                                          image_grid_pinpoints=PINPOINTS)
        proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=_tokenizer(folder), patch_size=4,
                                    vision_feature_select_strategy="default", num_additional_image_tokens=1)
        proc.save_pretrained(folder)
        proc = T.AutoProcessor.from_pretrained(folder)  # what a user of the folder gets
        model = type(model).from_pretrained(folder).eval()
        expected = {}
        enc = proc(images=_images(), text=PROMPTS3, padding=True, return_tensors="np")
        expected.update({f"proc3_{k}": np.asarray(v) for k, v in enc.items()})
        enc = proc(images=_images()[:2], text=PROMPTS, padding=True, return_tensors="pt")
        expected.update({f"proc_{k}": v.numpy() for k, v in enc.items()})
        with torch.no_grad():
            expected["logits"] = model(**enc).logits.numpy()
            expected["generated"] = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=PAD,
                                                   eos_token_id=2).numpy()
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key("llava-next", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


@functools.lru_cache(maxsize=1)
def _model():
    """The reference loaded through the public from_preset, once per pass (CI time)."""
    import keras_models as km

    return km.ImageTextToText.from_preset(reference()[0])


def _model_inputs(expected, prefix="proc_"):
    x = {k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)}
    x["pixel_values"] = x["pixel_values"].transpose(0, 1, 3, 4, 2)
    for k in ("input_ids", "attention_mask"):
        x[k] = x[k].astype("int32")
    return x


@pytest.mark.backend_independent  # numpy + Pillow
def test_processor_equals_llava_next_processor():
    """Tiling, padding of the tile batch, image_sizes and per-image placeholder expansion equal
    Transformers' on 3 sizes/aspect ratios (and the rows' token counts differ)."""
    from keras_models.errors import InputError
    from keras_models.models.llava import LlavaNextImageTextToText
    from keras_models.preprocessing.llava_next import LlavaNextProcessor

    folder, expected = reference()
    proc = LlavaNextImageTextToText.preprocessor_from_preset(folder, json.loads((folder / "config.json").read_text()))
    assert isinstance(proc, LlavaNextProcessor)
    out = proc(text=PROMPTS3, images=_images())
    for k in ("input_ids", "attention_mask", "image_sizes"):
        np.testing.assert_array_equal(out[k], expected[f"proc3_{k}"], err_msg=k)
    assert out["pixel_values"].shape == expected["proc3_pixel_values"].transpose(0, 1, 3, 4, 2).shape
    np.testing.assert_allclose(out["pixel_values"], expected["proc3_pixel_values"].transpose(0, 1, 3, 4, 2),
                               atol=1e-5)
    counts = [proc.tokens_for_size(h, w) for h, w in SIZES]
    assert len(set(counts)) == 3, counts
    assert (out["input_ids"] == IMAGE).sum(axis=1).tolist() == counts
    with pytest.raises(InputError, match="placeholder.*images has 2"):
        proc(text=PROMPTS3, images=_images()[:2])
    # the processor survives a save/reload with its tiling settings
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc.save_pretrained(tmp)
        again = LlavaNextProcessor.from_preset(tmp, json.loads((folder / "config.json").read_text()))
        np.testing.assert_array_equal(again(text=PROMPTS3, images=_images())["input_ids"], out["input_ids"])


def test_logits_and_greedy_generate_equal_transformers():
    """Two images of different sizes in one left-padded batch: rows with different numbers of
    image tokens; logits on real tokens and greedy tokens equal Transformers'."""
    from keras_models.models.llava import LlavaNextImageTextToText

    _, expected = reference()
    model = _model()
    assert isinstance(model, LlavaNextImageTextToText)
    x = _model_inputs(expected)
    counts = (x["input_ids"] == IMAGE).sum(axis=1)
    assert counts[0] != counts[1], counts
    assert_close(model(x), expected["logits"], mask=x["attention_mask"], what="llava_next logits")
    out = model.generate(x, max_new_tokens=5, do_sample=False, pad_token_id=PAD, eos_token_id=2)
    np.testing.assert_array_equal(out, expected["generated"])


def test_compiled_predict_packs_from_the_host_index():
    """predict / predict_on_batch compile the model under JAX and TensorFlow, where image_sizes is
    traced: the task adds image_feature_index on the host and the graph packs from it (torch runs
    the same path eagerly). Logits equal Transformers'; the two rows pack different counts."""
    _, expected = reference()
    model = _model()
    x = _model_inputs(expected)
    index = model.backbone.feature_index(x["image_sizes"], x["pixel_values"].shape[1])
    counts = (index != -1).sum(axis=1)
    assert counts.tolist() == (x["input_ids"] == IMAGE).sum(axis=1).tolist() and counts[0] != counts[1]
    assert_close(model.predict(x, batch_size=2, verbose=0), expected["logits"], mask=x["attention_mask"],
                 what="llava_next compiled predict")
    assert_close(model.predict_on_batch(x), expected["logits"], mask=x["attention_mask"],
                 what="llava_next predict_on_batch")


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """The saved folder (image_newline, pinpoints, the tiling processor) loads in Transformers with
    equal logits; errors name image_sizes / pixel_values / image_grid_pinpoints."""
    import torch
    import transformers as T

    from keras_models.errors import ConfigError, InputError
    from keras_models.models.llava import LlavaNextSpec

    folder, expected = reference()
    model = _model()
    model.save_to_preset(tmp_path / "saved")
    hf_model = T.LlavaNextForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    x = _model_inputs(expected)
    enc = {k[5:]: torch.tensor(v) for k, v in expected.items() if k.startswith("proc_")}
    with torch.no_grad():
        logits = hf_model(**enc).logits.numpy()
    assert_close(logits, expected["logits"], mask=x["attention_mask"], what="transformers reload")
    hf_proc = T.AutoProcessor.from_pretrained(tmp_path / "saved")
    enc3 = hf_proc(images=_images(), text=PROMPTS3, padding=True, return_tensors="np")
    np.testing.assert_array_equal(enc3["input_ids"], expected["proc3_input_ids"])

    with pytest.raises(InputError, match="image_sizes"):
        model({k: v for k, v in x.items() if k != "image_sizes"})
    with pytest.raises(InputError, match="pixel_values must be"):
        model.generate({**x, "pixel_values": x["pixel_values"][:, 0]}, max_new_tokens=1)
    with pytest.raises(InputError, match="image tokens"):
        model.generate({**x, "image_sizes": np.asarray([[40, 14], [40, 14]])}, max_new_tokens=1)
    with pytest.raises(InputError, match=r"image_sizes\[0\] = \[20, 18\] is tiled into 5 tiles"):
        model.generate({**x, "image_sizes": np.asarray([[20, 18], [40, 14]])}, max_new_tokens=1)
    config = json.loads((folder / "config.json").read_text())
    assert LlavaNextSpec.from_hf(config).image_grid_pinpoints == tuple(map(tuple, PINPOINTS))
    for bad in ([[16, 20]], [[16]], "big"):
        with pytest.raises(ConfigError, match="image_grid_pinpoints"):
            LlavaNextSpec.from_hf(dict(config, image_grid_pinpoints=bad))


@pytest.mark.backend_independent  # numpy index vs Transformers' torch packing, no Keras model
@pytest.mark.parametrize("tile,grid,extra", [(16, 4, 1), (12, 3, 0)])
def test_packing_equals_pack_image_features(tile, grid, extra):
    """The host-side gather (pack_index) equals Transformers' pack_image_features on random
    features for many sizes and aspect ratios (unpad rounding, 1x3 / 3x1 / 2x2 tilings), and the
    processor's token count equals the packed length (a class token with "default", and a tower
    without one with "full": ``extra`` 0)."""
    import functools as ft
    import types

    import torch
    import transformers as T

    from keras_models.preprocessing.llava_next import num_image_features, pack_index

    pins = [[p[0] * tile // 16, p[1] * tile // 16] for p in PINPOINTS]
    ns = types.SimpleNamespace(config=types.SimpleNamespace(
        vision_config=types.SimpleNamespace(image_size=tile, patch_size=tile // grid), image_grid_pinpoints=pins))
    sizes = [(12, 40), (40, 14), (20, 18), (7, 50), (50, 7), (33, 31), (5, 5), (100, 37)]
    t, d = grid * grid, 3
    tiles_given = 5
    rng = np.random.RandomState(0)
    tile_index, feature_index, counts = pack_index(np.asarray(sizes), tiles_given, pins, tile, grid, t)
    feats = rng.randn(len(tile_index), t, d).astype("float32")
    newline = rng.randn(d).astype("float32")
    ours = np.concatenate([feats.reshape(-1, d), newline[None]])[feature_index]
    per_image = np.split(torch.tensor(feats), np.cumsum([int(n) for n in np.bincount(
        np.asarray(tile_index) // tiles_given, minlength=len(sizes))])[:-1])
    packed, lens = T.LlavaNextModel.pack_image_features(ns, per_image, torch.tensor(sizes), "default",
                                                        image_newline=torch.tensor(newline))
    np.testing.assert_array_equal(ours, torch.cat(packed).numpy())
    assert counts == lens.tolist()
    proc = types.SimpleNamespace(image_processor=types.SimpleNamespace(image_grid_pinpoints=pins),
                                 patch_size=tile // grid, num_additional_image_tokens=extra)
    proc._get_unpadded_features = ft.partial(T.LlavaNextProcessor._get_unpadded_features, proc)
    for (h, w), n in zip(sizes, counts):
        theirs = T.LlavaNextProcessor._get_number_of_features(proc, h, w, tile, tile) - extra
        assert num_image_features((h, w), pins, tile, grid, t) == n == theirs, (h, w)
