"""CLIPSeg (km.ZeroShotImageSegmenter, km.ZeroShotImageClassifier) against Transformers.

A tiny seeded CLIPSegForImageSegmentation (weights of unit variance per fan-in, tests/parity.py)
records, in one reference build: the segmentation logits for text prompts, for prompt images
(``conditional_pixel_values``) and for given ``conditional_embeddings``; and its inner CLIPSegModel's
``logits_per_image``. The two upsamplers are one ``one_case_per_pass`` group (torch runs both,
jax and tensorflow one each). Options off their defaults, in one config: images of 48 pixels where the
config says 32 (the position table is resized bicubically), ``extract_layers`` (0, 1) of three
blocks (not at the end; Transformers 5 refuses negative ones), FiLM at the second decoder step
(``conditional_layer=1``), ``reduce_dim`` 16 with 2 decoder heads, vision GELU and LayerNorm eps
1e-6, and both upsamplers (a stride-8 transposed convolution; or a 3x3 conv and two stride-2
transposed convolutions).
"""

import numpy as np
import pytest

from tests.multimodal.test_dual_encoders_more import run
from tests.parity import _key, assert_close, cached_folder, randomize_weights

SIZE = 48  # the config's image_size is 32: positions resized to a 6x6 grid


def _config(complex_upsampler):
    import transformers as T

    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=12, eos_token_id=98, bos_token_id=2, pad_token_id=0)
    vision = dict(hidden_size=24, intermediate_size=44, num_hidden_layers=3, num_attention_heads=2, image_size=32,
                  patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6)
    return T.CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=20, extract_layers=[0, 1],
                           reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=28,
                           conditional_layer=1, use_complex_transposed_convolution=complex_upsampler)


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 97, size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[:, 0] = 2
    ids[:, -1] = 98
    ids[1, 4], ids[1, 5:], mask[1, 5:] = 98, 0, 0  # a shorter prompt
    pixels = rng.randn(2, SIZE, SIZE, 3).astype("float32")
    prompt_pixels = rng.randn(2, 32, 32, 3).astype("float32")
    embeds = rng.randn(2, 20).astype("float32")
    return {"input_ids": ids, "attention_mask": mask}, pixels, prompt_pixels, embeds


def reference(complex_upsampler):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.CLIPSegForImageSegmentation(_config(complex_upsampler)).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        model = T.CLIPSegForImageSegmentation.from_pretrained(folder).eval()
        text, pixels, prompt_pixels, embeds = _inputs()
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(pixels.transpose(0, 3, 1, 2))
        with torch.no_grad():
            expected = {
                "logits": model(**t, pixel_values=pv).logits.numpy(),
                "image_prompt_logits": model(pixel_values=pv, conditional_pixel_values=torch.tensor(
                    prompt_pixels.transpose(0, 3, 1, 2))).logits.numpy(),
                "embeds_logits": model(pixel_values=pv, conditional_embeddings=torch.tensor(embeds)).logits.numpy(),
                "logits_per_image": model.clip(**t, pixel_values=pv).logits_per_image.numpy(),
            }
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"clipseg-{complex_upsampler}", open(__file__).read(), transformers.__version__),
                           build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours():
    text, pixels, prompt_pixels, embeds = _inputs()
    return {k: v.astype("int32") for k, v in text.items()}, pixels, prompt_pixels, embeds


@pytest.mark.one_case_per_pass("complex_upsampler")
@pytest.mark.parametrize("complex_upsampler", [True, False])
def test_clipseg_parity(complex_upsampler):
    """Segmentation logits for text prompts and for given conditional_embeddings; the backbone's
    embeddings give CLIPSegModel's logits_per_image with the segmenter's logit_scale (read from
    ``clip.logit_scale``); prompt images and km.ZeroShotImageClassifier (the same computations)
    under torch only."""
    import keras

    import keras_models as km
    from keras_models.errors import InputError

    folder, expected = reference(complex_upsampler)
    model = km.ZeroShotImageSegmenter.from_preset(folder)
    assert type(model).__name__ == "CLIPSegZeroShotImageSegmenter"
    text, pixels, prompt_pixels, embeds = _ours()
    assert_close(run(model, {**text, "pixel_values": pixels}), expected["logits"], what="clipseg text-prompt logits")
    assert_close(run(model, {"pixel_values": pixels, "conditional_embeddings": embeds}),
                 expected["embeds_logits"], what="clipseg conditional_embeddings logits")
    dual = run(model.backbone, {**text, "pixel_values": pixels})
    unit = {k: v / np.linalg.norm(v, axis=-1, keepdims=True) for k, v in dual.items()}
    scale = np.exp(keras.ops.convert_to_numpy(model.logit_scale))
    assert_close(unit["image_embeds"] @ unit["text_embeds"].T * scale, expected["logits_per_image"],
                 what="clipseg logits_per_image")
    if keras.backend.backend() == "torch":  # paths of the same computations, cheap in eager torch
        assert_close(model({"pixel_values": pixels, "conditional_pixel_values": prompt_pixels}),
                     expected["image_prompt_logits"], what="clipseg image-prompt logits")
        classifier = km.ZeroShotImageClassifier.from_preset(folder)  # logit_scale read from clip.logit_scale
        assert type(classifier).__name__ == "CLIPSegZeroShotImageClassifier"
        assert_close(classifier({**text, "pixel_values": pixels})["logits_per_image"], expected["logits_per_image"],
                     what="clipseg classifier logits_per_image")
    with pytest.raises(InputError, match="input_ids holds 1 prompts for 2 images"):
        model({**{k: v[:1] for k, v in text.items()}, "pixel_values": pixels})
    with pytest.raises(InputError, match="needs a prompt"):
        model({"pixel_values": pixels})


def test_clipseg_save_to_preset_reloads_in_transformers(tmp_path):
    """Our segmenter's export reloads in Transformers with the same logits, and the dual encoder's
    (km.ZeroShotImageClassifier) export as CLIPSegModel with the same logits_per_image (no Keras
    computation: the export's names, layouts and config.json)."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference(True)
    text, pixels, _, _ = _inputs()
    t = {k: torch.tensor(v) for k, v in text.items()}
    pv = torch.tensor(pixels.transpose(0, 3, 1, 2))
    seg = km.ZeroShotImageSegmenter.from_preset(folder)
    seg.save_to_preset(tmp_path / "seg")
    dual = km.models.CLIPSegZeroShotImageClassifier(backbone=seg.backbone)  # one load for both exports
    dual.logit_scale.assign(seg.logit_scale)
    dual.save_to_preset(tmp_path / "dual")
    with torch.no_grad():
        seg = T.CLIPSegForImageSegmentation.from_pretrained(tmp_path / "seg").eval()
        assert_close(seg(**t, pixel_values=pv).logits.numpy(), expected["logits"], what="transformers reload logits")
        dual = T.CLIPSegModel.from_pretrained(tmp_path / "dual").eval()
        assert_close(dual(**t, pixel_values=pv).logits_per_image.numpy(), expected["logits_per_image"],
                     what="transformers reload logits_per_image")


# --- X-CLIP ---------------------------------------------------------------------------------------
# Options off their defaults: 3 frames, 2 MIT layers, prompt_alpha 0.3 (moved per channel by the
# reference weights), GELU prompt MLP, vision GELU and LayerNorm eps 1e-6, end-of-text by the
# config's eos_token_id (98, not the highest id of the shorter text).
XCLIP_KEYS = ("logits_per_video", "logits_per_text", "video_embeds", "text_embeds")


def _xclip_config():
    import transformers as T

    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=12, eos_token_id=98, bos_token_id=2, pad_token_id=0)
    vision = dict(hidden_size=24, intermediate_size=44, num_hidden_layers=2, num_attention_heads=2, image_size=16,
                  patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6, num_frames=3, mit_hidden_size=20,
                  mit_intermediate_size=28, mit_num_hidden_layers=2, mit_num_attention_heads=2)
    return T.XCLIPConfig(text_config=text, vision_config=vision, projection_dim=20, prompt_layers=2, prompt_alpha=0.3,
                         prompt_hidden_act="gelu", prompt_num_attention_heads=2)


def _xclip_inputs():
    rng = np.random.RandomState(1)
    ids = rng.randint(3, 90, size=(3, 6)).astype("int64")
    mask = np.ones_like(ids)
    ids[:, 0], ids[:, -1] = 2, 98
    ids[1, 3], ids[1, 4:], mask[1, 4:] = 98, 0, 0
    ids[2, 2] = 97  # a higher id than 98 would be: pooling follows eos_token_id
    return {"input_ids": ids, "attention_mask": mask}, rng.randn(2, 3, 16, 16, 3).astype("float32")


def xclip_reference():
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(T.XCLIPModel(_xclip_config()).eval())
        model.save_pretrained(tmp / "model")
        model = T.XCLIPModel.from_pretrained(tmp / "model").eval()
        text, pixels = _xclip_inputs()
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in text.items()},
                        pixel_values=torch.tensor(pixels.transpose(0, 1, 4, 2, 3)))
        np.savez(tmp / "expected.npz", **{k: getattr(out, k).numpy() for k in XCLIP_KEYS})

    import transformers

    folder = cached_folder(_key("xclip", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def test_xclip_parity():
    import keras_models as km
    from keras_models.errors import InputError

    folder, expected = xclip_reference()
    model = km.ZeroShotVideoClassifier.from_preset(folder)
    assert type(model).__name__ == "XCLIPZeroShotVideoClassifier"
    text, pixels = _xclip_inputs()
    out = run(model, {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels})
    for k in XCLIP_KEYS:
        assert_close(out[k], expected[k], what=f"xclip {k}")
    with pytest.raises(InputError, match="3 frames"):
        model({**text, "pixel_values": pixels[:, :2]})


def test_xclip_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = xclip_reference()
    km.ZeroShotVideoClassifier.from_preset(folder).save_to_preset(tmp_path / "xclip")
    text, pixels = _xclip_inputs()
    with torch.no_grad():
        out = T.XCLIPModel.from_pretrained(tmp_path / "xclip").eval()(
            **{k: torch.tensor(v) for k, v in text.items()}, pixel_values=torch.tensor(pixels.transpose(0, 1, 4, 2, 3)))
    assert_close(out.logits_per_video.numpy(), expected["logits_per_video"], what="xclip transformers reload")
