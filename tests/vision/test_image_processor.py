"""ImageProcessor against Transformers' (PIL-backend) image processors on real photographs."""

import os

import numpy as np
import pytest

from keras_models.preprocessing.image import ImageProcessor
from keras_models.preprocessing.image_io import ImageInputError

pytest.importorskip("PIL")
skdata = pytest.importorskip("skimage.data")

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "logo.png"]

# (Transformers class, kwargs) -- defaults and odd configs of every size rule.
CONFIGS = [
    ("ViTImageProcessorPil", {}),
    ("ViTImageProcessorPil", dict(size={"height": 97, "width": 131}, resample=3)),
    ("ViTImageProcessorPil", dict(size={"shortest_edge": 100}, resample=1)),
    ("DeiTImageProcessorPil", {}),
    ("BeitImageProcessorPil", dict(size={"height": 160, "width": 160}, do_center_crop=True,
                                   crop_size={"height": 128, "width": 144})),
    ("ConvNextImageProcessorPil", dict(size={"shortest_edge": 224})),
    ("ConvNextImageProcessorPil", dict(size={"shortest_edge": 96}, crop_pct=0.8, resample=2)),
    ("ConvNextImageProcessorPil", {}),
    ("BitImageProcessorPil", {}),
    ("EfficientNetImageProcessorPil", dict(size={"height": 120, "width": 120}, rescale_offset=True)),
    ("PoolFormerImageProcessorPil", {}),
    ("MobileViTImageProcessorPil", {}),
    ("MobileNetV2ImageProcessorPil", dict(crop_size={"height": 300, "width": 300})),
    ("SegformerImageProcessorPil", dict(size={"height": 128, "width": 192})),
]


def _photo(name):
    # the images scikit-image ships in its package folder: skdata.data_dir is pooch's download cache
    # instead whenever pooch is installed (librosa, a dev extra, brings it), and that cache is empty offline
    return os.path.join(os.path.dirname(skdata.__file__), name)


def _hf_and_ours(cls_name, kwargs, tmp_path):
    import transformers

    hf = getattr(transformers, cls_name)(**kwargs)
    hf.save_pretrained(tmp_path)
    return hf, ImageProcessor.from_preset(tmp_path)


@pytest.mark.parametrize("cls_name,kwargs", CONFIGS, ids=[f"{c[:-17]}{i}" for i, (c, _) in enumerate(CONFIGS)])
def test_matches_transformers_on_photos(cls_name, kwargs, tmp_path):
    from PIL import Image

    hf, ours = _hf_and_ours(cls_name, kwargs, tmp_path)
    for name in PHOTOS:
        img = Image.open(_photo(name))
        if hf.to_dict().get("do_convert_rgb") is not True:
            img = img.convert("RGB")  # without convert_rgb Transformers keeps grey / RGBA layouts
        want = hf(images=[img], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        for src in (img, _photo(name) if img.mode == Image.open(_photo(name)).mode else img, np.array(img)):
            got = ours(src)["pixel_values"][0]
            assert got.shape == want.shape, (name, got.shape, want.shape)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{cls_name} {name}")


def test_convert_rgb_grey_and_alpha(tmp_path):
    from PIL import Image

    hf, ours = _hf_and_ours("BitImageProcessorPil", dict(size={"shortest_edge": 64},
                                                         crop_size={"height": 64, "width": 64}), tmp_path)
    for name in ("camera.png", "logo.png"):
        want = hf(images=[Image.open(_photo(name))], return_tensors="np")["pixel_values"][0]
        got = ours(_photo(name))["pixel_values"][0]
        np.testing.assert_allclose(got, want.transpose(1, 2, 0), atol=1e-5, rtol=0)


def test_float_and_channels_first_arrays(tmp_path):
    hf, ours = _hf_and_ours("ViTImageProcessorPil", dict(size={"height": 64, "width": 48}), tmp_path)
    img = skdata.chelsea()
    want = hf(images=[img], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(ours(img.transpose(2, 0, 1))["pixel_values"][0], want, atol=1e-5)
    f = img.astype(np.float32) / 255
    want = hf(images=[f], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(ours(f)["pixel_values"][0], want, atol=1e-5)


def test_batch_and_labels(tmp_path):
    _, ours = _hf_and_ours("DeiTImageProcessorPil", dict(size={"height": 40, "width": 40},
                                                         crop_size={"height": 32, "width": 32}), tmp_path)
    x, y = ours([_photo("chelsea.png"), _photo("coffee.png")], [1, 0])
    assert x["pixel_values"].shape == (2, 32, 32, 3) and x["pixel_values"].dtype == np.float32
    assert list(y) == [1, 0]
    ours.save_pretrained(tmp_path / "again") if (tmp_path / "again").mkdir() is None else None
    again = ImageProcessor.from_preset(tmp_path / "again")
    np.testing.assert_array_equal(again(_photo("rocket.jpg"))["pixel_values"], ours(_photo("rocket.jpg"))["pixel_values"])


def test_bad_inputs(tmp_path):
    ours = ImageProcessor(size={"height": 8, "width": 8})
    with pytest.raises(ImageInputError, match="not found"):
        ours(str(tmp_path / "missing.png"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageInputError, match="junk.png"):
        ours(str(tmp_path / "junk.png"))
    with pytest.raises(ImageInputError, match="unsupported type"):
        ours(3.5)
    with pytest.raises(ImageInputError, match="shape"):
        ours(np.zeros((2, 3, 4, 5, 6), np.uint8))
    with pytest.raises(ImageInputError, match=r"empty image \(shape \(0, 0, 3\)\)"):
        ours([np.zeros((0, 0, 3), np.uint8)])
    with pytest.raises(ImageInputError, match="NaN"):
        ours([np.full((4, 4, 3), np.nan, np.float32)])
    with pytest.raises(ImageInputError, match="dtype"):
        ours([np.full((4, 4, 3), "x")])


def test_processor_config_nested_by_transformers5(tmp_path):
    """Transformers 5's CLIPProcessor.save_pretrained nests the image processor in
    processor_config.json (no preprocessor_config.json): ImageProcessor and the image tasks load it."""
    import json

    import transformers

    ip = transformers.CLIPImageProcessor(size={"shortest_edge": 20}, crop_size={"height": 16, "width": 16})
    vocab = ["<|endoftext|>", "<|startoftext|>", "a</w>", "b</w>", "a", "b", "ab</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b</w>\n")
    tok = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    transformers.CLIPProcessor(ip, tok).save_pretrained(tmp_path / "proc")
    assert not (tmp_path / "proc" / "preprocessor_config.json").exists()
    image = (np.random.RandomState(0).rand(24, 30, 3) * 255).astype("uint8")
    want = ip(image, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    got = ImageProcessor.from_preset(tmp_path / "proc")(image)["pixel_values"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    from keras_models.tasks.image_classifier import ImageClassifier

    assert ImageClassifier.preprocessor_from_preset(tmp_path / "proc", {}) is not None
