"""image-text-to-text (tiny LLaVA with a chat template) and text-to-audio / text-to-speech against
Transformers' pipelines on the same tiny checkpoints.

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.parity import cached_folder
from tests.pipelines.refs import assert_same, hf_pipeline_outputs

pytestmark = pytest.mark.backend_independent


# --- image-text-to-text (LLaVA) ------------------------------------------------------------------------
def _llava():
    from tests.multimodal.test_llava import reference

    folder, _, _ = reference("llava")  # the LLaVA parity test's reference (built once for both)

    def build(tmp):
        from PIL import Image

        rng = np.random.RandomState(5)
        for i, size in enumerate([(20, 18), (26, 30)]):
            Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(tmp / f"img{i}.png")

    images = cached_folder("pipe-itt-images-v1", build)
    return folder, [str(images / f"img{i}.png") for i in range(2)]


def test_image_text_to_text_matches_transformers():
    folder, imgs = _llava()
    chat = [{"role": "user", "content": [{"type": "image", "image": imgs[0]},
                                         {"type": "text", "text": "what is in the image ?"}]}]
    multi = [{"role": "user", "content": [{"type": "image", "image": imgs[1]},
                                          {"type": "text", "text": "describe it"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]},
             {"role": "user", "content": [{"type": "text", "text": "what is in the image ?"}]}]
    # ends with the assistant's message: continued, not a new message
    prefill = multi[:1] + [{"role": "assistant", "content": [{"type": "text", "text": "w50 w51"}]}]
    # (the tiny model's next tokens hardly depend on anything but the prompt's last words)
    prompts = ["USER: <image>\nwhat is in the image ? ASSISTANT:", "USER: <image>\nw50 w51 w70"]
    calls = [([], {"text": chat, "max_new_tokens": 4}),
             ([multi], {"max_new_tokens": 5, "return_full_text": False}),
             ([], {"text": prefill, "max_new_tokens": 3}),
             ([], {"text": [chat, multi], "max_new_tokens": 3}),
             ([], {"images": imgs[1], "text": prompts[0], "max_new_tokens": 4}),
             ([], {"images": imgs, "text": prompts, "generate_kwargs": {"max_new_tokens": 4}}),
             ([], {"images": imgs[0], "text": prompts[1], "max_new_tokens": 3, "return_full_text": False})]
    expected = hf_pipeline_outputs("image-text-to-text", str(folder), calls)
    pipe = km.pipeline("image-text-to-text", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"image-text-to-text {kwargs}")
    with pytest.raises(PipelineError, match="images= cannot be given with a chat"):
        pipe(images=imgs[0], text=chat)
    with pytest.raises(PipelineError, match="max_new_tokens"):
        pipe(text=chat, max_new_tokens=2, generate_kwargs={"max_new_tokens": 3})
    with pytest.raises(PipelineError, match="text= is needed"):
        pipe(images=imgs[0])
    with pytest.raises(PipelineError, match="unknown argument.*'top_n'"):
        pipe(text=chat, top_n=2)
    bad = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what"}]}]
    with pytest.raises(PipelineError, match=r"messages\[0\] has an image entry"):
        pipe(text=bad)


# --- text-to-audio / text-to-speech (VITS, noise scales 0: deterministic) ---------------------------------
def _vits():
    from tests.audio.test_vits import CASES, COMMON

    def build(tmp):
        import json

        import torch
        import transformers

        from tests.parity import randomize_weights

        torch.manual_seed(0)
        cfg = {**COMMON, **CASES["stochastic"], "sampling_rate": 8000}
        model = transformers.VitsModel(transformers.VitsConfig(**cfg)).eval()
        randomize_weights(model)
        with torch.no_grad():
            model.duration_predictor.flows[0].translate.fill_(-1.0)  # a few frames per token
        model.save_pretrained(tmp)
        vocab = {c: i for i, c in enumerate(list("_abcdefghij klmn'-") + ["A", "z"])}
        assert len(vocab) == COMMON["vocab_size"]
        (tmp / "vocab.json").write_text(json.dumps(vocab))
        transformers.VitsTokenizer(str(tmp / "vocab.json"), phonemize=False).save_pretrained(tmp)

    return cached_folder("pipe-tta-vits-v1", build)


def test_text_to_audio_vits_matches_transformers():
    folder = _vits()
    calls = [(["a big cat"], {}),
             ([["hello kid", "ab"]], {"forward_params": {"speaking_rate": 0.8}})]
    expected = hf_pipeline_outputs("text-to-audio", str(folder), calls)
    pipe = km.pipeline("text-to-speech", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        ours = pipe(*args, **kwargs)
        for o, t in zip(ours if isinstance(ours, list) else [ours], theirs if isinstance(theirs, list) else [theirs]):
            assert np.asarray(t["audio"]).std() > 1e-3, "degenerate reference"
            assert o["audio"].shape == np.asarray(t["audio"]).shape
        assert_same(ours, theirs, path=f"text-to-audio {kwargs}")
    assert expected[0]["sampling_rate"] == 8000
    with pytest.raises(PipelineError, match="generate_kwargs"):
        pipe("abc", generate_kwargs={"max_new_tokens": 3})
    with pytest.raises(PipelineError, match="inputs must be a str"):
        pipe(3)
    with pytest.raises(PipelineError, match="vocoder"):
        km.pipeline("text-to-audio", model=folder, vocoder=object())


def _musicgen():
    from tests.audio.test_musicgen import _reference

    reference, _ = _reference("mono")  # the MusicGen parity test's tiny checkpoint, with a T5 tokenizer added

    def build(tmp):
        import shutil

        import transformers

        pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + [f"\u2581{w}" for w in ("pop", "rock", "drums", "song")] + list(
            "abcdefghijklmnopqrstuvwxyz")
        transformers.T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0).save_pretrained(tmp)
        for f in reference.iterdir():
            if not (tmp / f.name).exists():
                shutil.copy(f, tmp / f.name)

    return cached_folder(f"pipe-tta-musicgen-{reference.parent.name}", build)


def test_text_to_audio_musicgen_matches_transformers():
    folder = _musicgen()
    calls = [(["pop song"], {"generate_kwargs": {"do_sample": False, "max_new_tokens": 4}}),
             ([["rock drums", "a"]], {"forward_params": {"guidance_scale": 3.0},
                                      "generate_kwargs": {"do_sample": False, "max_new_tokens": 3}})]
    expected = hf_pipeline_outputs("text-to-audio", str(folder), calls)
    pipe = km.pipeline("text-to-audio", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"text-to-audio {kwargs}")
    assert expected[0]["sampling_rate"] == 1000 and np.asarray(expected[0]["audio"]).std() > 1e-3
