"""ImageClassifier end to end: predict on file paths / PIL images through the checkpoint's
preprocessor (against Transformers' processor + model), fit on a labelled image folder,
save_to_preset round trip."""

import os

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.preprocessing.image import image_folder
from tests.parity import assert_close, hf_reference

skdata = pytest.importorskip("skimage.data")
# the images scikit-image ships in its package folder (skdata.data_dir is pooch's download cache
# whenever pooch is installed, and that cache is empty offline)
PHOTOS = [os.path.join(os.path.dirname(skdata.__file__), n) for n in ("astronaut.png", "coffee.png", "rocket.jpg")]


def _vit_with_processor():
    import transformers

    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=37, image_size=32, patch_size=8, num_labels=3)
    return transformers.ViTForImageClassification(cfg)


def _processor():
    import transformers

    return transformers.ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=3,
                                              image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.25])


def _reference():
    from PIL import Image

    pixel_values = _processor()(images=[Image.open(p) for p in PHOTOS], return_tensors="np")["pixel_values"]
    return hf_reference("vit-predict-photos", _vit_with_processor, {"pixel_values": pixel_values},
                        extra_save=lambda folder, model: _processor().save_pretrained(folder))


def test_predict_on_paths_and_pil():
    from PIL import Image

    folder, expected = _reference()
    model = km.ImageClassifier.from_preset(folder)
    assert model.preprocessor is not None
    assert_close(model.predict(PHOTOS, batch_size=3, verbose=0), expected["logits"], what="paths")
    pil_images = [Image.open(p) for p in PHOTOS]
    assert_close(model.predict(pil_images, verbose=0), expected["logits"], what="PIL")


def _make_folder(root):
    """Two classes that differ in colour: crops of a photo tinted red or blue."""
    from PIL import Image

    rng = np.random.RandomState(0)
    base = skdata.chelsea()
    for label, channel in (("blue", 2), ("red", 0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            y, x = rng.randint(0, 200), rng.randint(0, 300)
            crop = base[y:y + 80, x:x + 80].astype(np.float32) * 0.5
            crop[..., channel] += 120
            Image.fromarray(crop.clip(0, 255).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def test_fit_on_image_folder_reduces_loss(tmp_path):
    folder, _ = _reference()
    paths, labels, classes = image_folder(_make_folder(tmp_path / "images"))
    assert classes == ["blue", "red"] and len(paths) == 12
    keras.utils.set_random_seed(0)
    model = km.ImageClassifier.from_preset(folder, num_classes=2)
    assert not model.head_from_checkpoint
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(paths, labels, batch_size=4, epochs=4, verbose=0)
    losses = hist.history["loss"]
    assert losses[-1] < losses[0], losses
    assert model.predict(paths[:2], verbose=0).shape == (2, 2)


def test_save_to_preset_round_trip(tmp_path):
    folder, expected = _reference()
    model = km.ImageClassifier.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    again = km.ImageClassifier.from_preset(tmp_path / "saved")
    assert again.head_from_checkpoint
    assert_close(again.predict(PHOTOS, verbose=0), expected["logits"], what="reloaded")
    import transformers

    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path / "saved")
    assert hf.config.num_labels == 3


def test_augmentation_layers_and_fit_with_augmentation(tmp_path):
    from keras_models.preprocessing.image_augment import RandomResizedCrop, image_augmentation

    x = np.random.RandomState(0).rand(3, 40, 36, 3).astype("float32")
    crop = RandomResizedCrop(32, 32, scale=(0.3, 0.6), seed=1)
    out = keras.ops.convert_to_numpy(crop(x, training=True))
    assert out.shape == (3, 32, 32, 3) and np.isfinite(out).all()
    assert not np.allclose(out, keras.ops.convert_to_numpy(crop(x, training=False)))
    assert keras.ops.convert_to_numpy(crop(x[:, :32, :32], training=False)).tolist() == x[:, :32, :32].tolist()
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, 8, scale=(0.5, 2.0))

    folder, expected = _reference()
    model = km.ImageClassifier.from_preset(folder, augmentation=image_augmentation(32, 32, scale=(0.5, 1.0), seed=0))
    # inference ignores the augmentation
    assert_close(model(model.preprocessor(PHOTOS)), expected["logits"], what="augmented model, inference")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(PHOTOS, [0, 1, 2], batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
