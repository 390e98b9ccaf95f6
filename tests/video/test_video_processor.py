"""VideoProcessor against Transformers' VideoMAE (PIL backend) and ViViT image processors on
random uint8 videos; config round trips both ways; input errors. Pure numpy: backend independent."""

import numpy as np
import pytest

from keras_models.errors import InputError
from keras_models.preprocessing.video import VideoProcessor

pytest.importorskip("PIL")

CONFIGS = [
    ("VideoMAEImageProcessorPil", dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 24}, resample=3,
                                       image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])),
    ("VivitImageProcessor", dict(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})),  # offset: [-1, 1]
]


def _videos(seed=0, batch=2, frames=3, height=45, width=61):
    return np.random.RandomState(seed).randint(0, 256, size=(batch, frames, height, width, 3)).astype("uint8")


@pytest.mark.parametrize("cls_name,kwargs", CONFIGS)
def test_matches_transformers(cls_name, kwargs, tmp_path):
    import transformers

    hf = getattr(transformers, cls_name)(**kwargs)
    hf.save_pretrained(tmp_path / "hf")
    ours = VideoProcessor.from_preset(tmp_path / "hf")
    videos = _videos()
    want = hf([list(v) for v in videos], return_tensors="np")["pixel_values"].transpose(0, 1, 3, 4, 2)
    got = ours(videos)["pixel_values"]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    if "Vivit" in cls_name:
        assert got.min() < -0.9 and ours.offset  # rescaled to [-1, 1] before normalising
    # one video as a list of frames / a (frames, H, W, C) array
    np.testing.assert_allclose(ours(list(videos[1]))["pixel_values"], want[1:], atol=1e-5)
    np.testing.assert_allclose(ours(videos[0])["pixel_values"], want[:1], atol=1e-5)
    # our config reloads in Transformers with the same output
    ours.save_pretrained(tmp_path / "ours")
    again = type(hf).from_pretrained(tmp_path / "ours")
    back = again([list(v) for v in videos], return_tensors="np")["pixel_values"].transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(back, want, atol=1e-5)


def test_input_errors():
    p = VideoProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, num_frames=3)
    videos = _videos(frames=3, height=20, width=18)
    assert p(videos)["pixel_values"].shape == (2, 3, 16, 16, 3)
    with pytest.raises(InputError, match="videos: .*shape"):
        p(videos[0, 0])  # one frame is not a video
    with pytest.raises(InputError, match="videos: .*shape"):
        p(videos[None])  # rank 6
    with pytest.raises(InputError, match=r"videos\[0\] has 2 frames .*num_frames=3"):
        p(videos[:, :2])
    with pytest.raises(InputError, match=r"videos\[1\] has 4 frames"):
        p([videos[0], np.concatenate([videos[1], videos[1, :1]])])
    with pytest.raises(InputError, match="videos"):
        p([])
