"""TVP against Transformers 5: TvpForVideoGrounding (logits) and its base model's last hidden state
on a padded text batch, from a tiny config with a 2-stage basic ResNet read at its first stage
(TvpVisionModel sizes its conv by the last stage: equal widths)
(out_features stage1), gelu_new, eps 1e-6, a 7-token text row padded by 3; Transformers reload,
.keras round trip, bad configs."""

import hashlib
import inspect
import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import (assert_backbone_close, assert_close, cached_folder,
                          calibrate_batch_norms, randomize_weights, to_numpy)

RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[12, 12], depths=[1, 2], layer_type="basic",
              out_features=["stage1"])
CONFIG = dict(backbone_config=RESNET, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
              num_attention_heads=2, vocab_size=50, max_position_embeddings=40, max_img_size=32,
              visual_prompt_size=4, num_frames=2, max_grid_row_position_embeddings=5,
              max_grid_col_position_embeddings=6, hidden_act="gelu_new", layer_norm_eps=1e-6, type_vocab_size=3)


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 50, size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, 4:], mask[1, 4:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask,
            "pixel_values": rng.randn(2, 2, 3, 32, 32).astype("float32")}


def _ours(inputs):
    return dict(inputs, pixel_values=inputs["pixel_values"].transpose(0, 1, 3, 4, 2))


def _build():
    import transformers

    return transformers.TvpForVideoGrounding(transformers.TvpConfig(**CONFIG))


def _reference():
    """Transformers 5.25's TvpVisualInputEmbedding only runs batches of one (its column table is
    viewed with the batch size), so the reference runs row by row on the reloaded model."""
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "tvp-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        model = _build().eval()
        randomize_weights(model, 0)
        pixels = torch.tensor(_inputs()["pixel_values"])
        with torch.no_grad():
            prompted = model.model.visual_prompter(pixels.clone())
        calibrate_batch_norms(model.model.vision_model, {"pixel_values": prompted})
        model.save_pretrained(tmp / "model")
        ref = transformers.TvpForVideoGrounding.from_pretrained(tmp / "model").eval()
        rows = []
        with torch.no_grad():
            for i in range(2):
                row = {k: torch.tensor(v[i:i + 1]) for k, v in _inputs().items()}
                out = ref(**row, output_hidden_states=True)
                rows.append((out.logits.numpy(), ref.model(**row).last_hidden_state.numpy()))
        np.savez(tmp / "expected.npz", logits=np.concatenate([r[0] for r in rows]),
                 last_hidden_state=np.concatenate([r[1] for r in rows]))

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


@pytest.fixture(scope="module")
def reference():
    return _reference()


def test_tvp_video_grounding_parity(reference, tmp_path):
    folder, expected = reference
    model = km.VideoGrounder.from_preset(folder)
    assert type(model).__name__ == "TvpVideoGrounder"
    inputs = _ours(_inputs())
    logits = model.predict_on_batch(inputs)
    assert_close(to_numpy(logits), expected["logits"], what="logits")
    assert_backbone_close(model, inputs, expected, hidden=model.backbone.predict_on_batch(inputs))
    with pytest.raises(InputError, match="pixel_values"):  # frames must be max_img_size squared
        model.predict_on_batch(dict(inputs, pixel_values=inputs["pixel_values"][:, :, 2:]))
    model.save(tmp_path / "m.keras")  # .keras round trip, compiled (an eager jax call costs ~15 s)
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert type(restored) is type(model) and restored.backbone.get_config() == model.backbone.get_config()
    np.testing.assert_allclose(to_numpy(restored.predict_on_batch(inputs)), to_numpy(logits), atol=1e-6)


def test_tvp_reloads_in_transformers(reference, tmp_path):
    import torch
    import transformers

    folder, expected = reference
    model = km.VideoGrounder.from_preset(folder)
    model.save_to_preset(tmp_path / "out")
    ref = transformers.TvpForVideoGrounding.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        out = ref(**{k: torch.tensor(v[:1]) for k, v in _inputs().items()})
    assert_close(out.logits.numpy(), expected["logits"][:1], what="reloaded logits")


@pytest.mark.parametrize("key,value", [("visual_prompter_type", "framedownpad"), ("visual_prompter_apply", "mix"),
                                       ("visual_prompt_size", 16), ("num_attention_heads", 3),
                                       ("backbone_config", dict(RESNET, model_type="convnext")),
                                       ("backbone_config", dict(RESNET, out_features=["stem"])),
                                       ("backbone_config", dict(RESNET, out_features=-1))])
def test_tvp_bad_config(reference, tmp_path, key, value):
    import shutil

    folder, _ = reference
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=key):
        km.VideoGrounder.from_preset(bad)


def test_tvp_image_processor(tmp_path):
    """Frames of two aspect ratios through longest-edge resize, a crop that both cuts and pads, a
    bottom/right pad to a non-square size with a non-zero fill, channel flip: equal to
    Transformers' AutoImageProcessor (TvpImageProcessorPil without torchvision)."""
    import transformers

    from keras_models.models.tvp import TvpImageProcessor

    config = dict(size={"longest_edge": 40}, crop_size={"height": 36, "width": 36},
                  pad_size={"height": 40, "width": 44}, constant_values=0.5, image_mean=[0.4, 0.5, 0.6],
                  image_std=[0.2, 0.3, 0.25])
    transformers.TvpImageProcessorPil(**config).save_pretrained(tmp_path)
    rng = np.random.RandomState(0)
    videos = [[(rng.rand(30, 45, 3) * 255).astype("uint8") for _ in range(2)],
              [(rng.rand(50, 20, 3) * 255).astype("uint8") for _ in range(2)]]
    want = transformers.AutoImageProcessor.from_pretrained(tmp_path)(videos, return_tensors="np")["pixel_values"]
    ours = TvpImageProcessor.from_preset(tmp_path)(videos)["pixel_values"]
    np.testing.assert_allclose(ours, want.transpose(0, 1, 3, 4, 2), atol=1e-6)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(dict(config, pad_mode="reflect")))
    with pytest.raises(ConfigError, match="pad_mode"):
        TvpImageProcessor.from_preset(tmp_path)
