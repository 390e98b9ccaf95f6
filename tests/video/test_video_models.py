"""VideoMAE, TimeSformer, ViViT: backbone last_hidden_state and classifier logits against tiny
random Transformers models (odd configs), save_to_preset reloaded by Transformers, one fit step
and raw-video predict through the checkpoint's processor, input errors."""

import json

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, InputError
from tests.parity import assert_close, hf_reference

COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20, num_labels=3,
              initializer_range=0.2)  # larger weights: attention far from uniform


def _videomae():
    import transformers

    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2,
                                      hidden_act="gelu_new", layer_norm_eps=1e-6, **COMMON)
    return transformers.VideoMAEForVideoClassification(cfg)


def _videomae_first_token():
    import transformers

    cfg = transformers.VideoMAEConfig(image_size=16, patch_size=4, num_frames=2, tubelet_size=1, num_channels=2,
                                      use_mean_pooling=False, qv_bias=False, **{**COMMON, "num_hidden_layers": 1})
    return transformers.VideoMAEForVideoClassification(cfg)


def _timesformer():
    import transformers

    cfg = transformers.TimesformerConfig(image_size=32, patch_size=8, num_frames=3, qkv_bias=False,
                                         layer_norm_eps=1e-5, **COMMON)
    return transformers.TimesformerForVideoClassification(cfg)


def _timesformer_joint():
    import transformers

    cfg = transformers.TimesformerConfig(image_size=16, patch_size=8, num_frames=2,
                                         attention_type="joint_space_time", hidden_act="gelu_new",
                                         **{**COMMON, "num_hidden_layers": 1})
    return transformers.TimesformerForVideoClassification(cfg)


def _vivit():
    import transformers

    cfg = transformers.VivitConfig(image_size=32, num_frames=4, tubelet_size=[2, 8, 4], **COMMON)  # gelu_fast
    return transformers.VivitForVideoClassification(cfg)


# name -> (builder, (frames, size, channels)); the first config of each family is also saved with
# save_to_preset and reloaded by Transformers
RELOADED = ("videomae", "timesformer", "vivit")
FAMILIES = {
    "videomae": (_videomae, (4, 32, 3)),
    "videomae_first_token": (_videomae_first_token, (2, 16, 2)),
    "timesformer": (_timesformer, (3, 32, 3)),
    "timesformer_joint": (_timesformer_joint, (2, 16, 3)),
    "vivit": (_vivit, (4, 32, 3)),
}


def _video(frames, size, channels, batch=2, seed=0):
    return np.random.RandomState(seed).randn(batch, frames, size, size, channels).astype("float32")


def _to_hf(x):
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))  # (batch, frames, C, H, W)


def _save_extras(x):
    """Record the base model's last_hidden_state next to the reference, and a video processor
    (shortest edge resized to the model's size + 4, center crop to its size)."""

    def save(folder, model):
        import torch
        import transformers

        with torch.no_grad():
            base = getattr(model, model.base_model_prefix)(pixel_values=torch.from_numpy(_to_hf(x)))
        np.save(folder.parent / "hidden.npy", base.last_hidden_state.numpy())
        size = x.shape[2]
        transformers.VideoMAEImageProcessorPil(size={"shortest_edge": size + 4}, resample=3,
                                               crop_size={"height": size, "width": size}).save_pretrained(folder)

    return save


def _reference(name):
    builder, shape = FAMILIES[name]
    x = _video(*shape)
    folder, expected = hf_reference(f"video-{name}", builder, {"pixel_values": _to_hf(x)}, extra_save=_save_extras(x))
    return folder, x, expected["logits"], np.load(folder.parent / "hidden.npy")


def _run(model, x):
    return model.predict_on_batch({"pixel_values": x})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_parity_and_transformers_reload(name, tmp_path):
    import torch
    import transformers

    folder, x, logits, hidden = _reference(name)
    backbone = km.Backbone.from_preset(folder)
    assert_close(_run(backbone, x), hidden, what=f"{name} last_hidden_state")
    model = km.VideoClassifier.from_preset(folder)
    assert model.head_from_checkpoint and type(model).__name__.endswith("VideoClassifier")
    assert_close(_run(model, x), logits, what=f"{name} logits")
    if name not in RELOADED:
        return
    model.save_to_preset(tmp_path / "preset")
    hf = transformers.AutoModelForVideoClassification.from_pretrained(tmp_path / "preset").eval()
    with torch.no_grad():
        got = hf(pixel_values=torch.from_numpy(_to_hf(x))).logits.numpy()
    assert_close(got, logits, what=f"{name} saved preset in Transformers")


def test_fit_raw_videos_and_input_errors():
    folder, x, logits, _ = _reference("timesformer_joint")  # the smallest model: the cheapest compile
    model = km.VideoClassifier.from_preset(folder)
    assert model.preprocessor is not None and model.preprocessor.num_frames == 2
    rng = np.random.RandomState(1)
    raw = rng.randint(0, 256, size=(2, 2, 24, 21, 3)).astype("uint8")
    pixels = model.preprocessor(raw)["pixel_values"]
    assert pixels.shape == (2, 2, 16, 16, 3)
    assert_close(model.predict(raw, verbose=0), _run(model, pixels), atol=1e-5, what="raw uint8 videos")
    as_lists = [list(v) for v in raw]  # each video a list of frames
    assert_close(model.predict(as_lists, verbose=0), _run(model, pixels), atol=1e-5, what="lists of frames")

    with pytest.raises(InputError, match="pixel_values.*num_frames"):
        model.predict(x[:, :1], verbose=0)
    with pytest.raises(InputError, match="pixel_values.*rank 5"):
        model.predict(x[0], verbose=0)
    with pytest.raises(InputError, match=r"videos\[1\].*num_frames=2"):
        model.predict([raw[0], raw[1, :1]], verbose=0)

    before = [np.array(w) for w in model.trainable_weights]
    hist = model.fit(raw, np.array([0, 2]), batch_size=2, epochs=1, verbose=0)  # default loss, raw videos
    assert np.isfinite(hist.history["loss"][0])
    changed = [not np.allclose(a, keras.ops.convert_to_numpy(b)) for a, b in zip(before, model.trainable_weights)]
    assert sum(changed) > len(changed) // 2


def test_config_errors(tmp_path):
    folder, *_ = _reference("timesformer")
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "attention_type": "space_only"}))
    with pytest.raises(ConfigError, match="attention_type"):
        km.VideoClassifier.from_preset(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "tubelet_size": [2, 8, 8], "model_type": "vivit"}))
    with pytest.raises(ConfigError, match="tubelet_size"):
        km.Backbone.from_preset(tmp_path)


def test_video_classification_pipeline():
    """km.pipeline vs Transformers' VideoClassificationPipeline steps after decoding (frame indices
    linspace(0, num_frames * rate - 1), the checkpoint's processor, softmax, top_k); Transformers'
    pipeline itself needs PyAV to decode files, so its steps are run here on the frames."""
    import torch
    import transformers

    folder, *_ = _reference("timesformer_joint")
    pipe = km.pipeline(model=folder)  # task inferred from TimesformerForVideoClassification
    hf = transformers.AutoModelForVideoClassification.from_pretrained(folder).eval()
    processor = transformers.VideoMAEImageProcessorPil.from_pretrained(folder)

    def expected(video, num_frames=2, rate=1, top_k=5):
        idx = np.linspace(0, num_frames * rate - 1, num=num_frames, dtype=np.int64)
        with torch.no_grad():
            logits = hf(**processor([video[i] for i in idx], return_tensors="pt")).logits[0]
        scores, ids = logits.softmax(-1).topk(min(top_k, 3))
        return [{"score": s, "label": hf.config.id2label[i]} for s, i in zip(scores.tolist(), ids.tolist())]

    def check(got, want):
        assert [r["label"] for r in got] == [r["label"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)

    videos = np.random.RandomState(3).randint(0, 256, size=(2, 5, 24, 21, 3)).astype("uint8")
    check(pipe(videos[0], frame_sampling_rate=2, top_k=2), expected(videos[0], rate=2, top_k=2))
    for got, video in zip(pipe([v[:2] for v in videos]), videos):
        check(got, expected(video[:2]))
    with pytest.raises(km.pipelines.PipelineError, match="too short"):
        pipe(videos[0, :1])
