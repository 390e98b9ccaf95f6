"""FuyuProcessor (keras_models/models/fuyu/processor.py) against Transformers' FuyuProcessor.

A tiny Fuyu-like tokenizer (Unigram with the ``▁`` prepended to each text, ``|SPEAKER|``,
``|NEWLINE|`` and ``<0x04>`` pieces, ``<unk>`` at id 0) and an image processor with size 12 x 18
and 3 x 3 patches; a tiny FuyuForCausalLM (3 channels: 27 values a patch) in the same folder.
Three images: one larger than ``size`` (resized), a very small one (2 x 5: one row of two patches,
mostly padding) and a wide one (resized to 9 x 18), in one left-padded batch of three prompts.
``input_ids``, ``attention_mask`` and ``image_patches`` must equal Transformers' exactly, also with
another image processor configuration (bicubic, edge padding, per-channel mean/std, no resize of a
small image); ``model.generate(processor(...))`` must equal Transformers' greedy ``generate`` on
the same inputs and ``post_process_image_text_to_text`` its decoding.

Transformers 5.25 picks its Pillow image processor (``FuyuImageProcessorPil``) where torchvision
is missing (as here), and its FuyuProcessor then hands ``patchify_image`` a torch tensor that the
numpy code cannot transpose; the reference converts that one argument to numpy (and the result
back), nothing else.
"""

import json

import numpy as np
import pytest

from tests.parity import _key, cached_folder, randomize_weights

PAD, SPEAKER, NEWLINE, BOA = 0, 3, 4, 9
SPECIAL = ["<unk>", "|ENDOFTEXT|", "<s>", "|SPEAKER|", "|NEWLINE|", "<0x00>", "<0x01>", "<0x02>", "<0x03>", "<0x04>"]
WORDS = ["▁", "▁a", "▁cat", "▁dog", "▁what", "▁is", "▁this", "?", "▁Describe", "▁the", "▁image", "s", "e", "t",
         "a", "c", "d", "o", "g", "h", "i", "w", "r", "b", "D", "m", "n", ".", ",", "1", "2", "3", "4", "5", "0"]
TEXTS = ["Describe the image", "what is this?", "a cat"]
ODD = dict(resample=3, padding_mode="edge", image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.25],
           size={"height": 9, "width": 12}, patch_size={"height": 3, "width": 2})


def _images():
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, (40, 30, 3), dtype="uint8"), rng.randint(0, 256, (2, 5, 3), dtype="uint8"),
            rng.randint(0, 256, (50, 100, 3), dtype="uint8")]


def _hf_processor(folder):
    import torch
    import transformers as T

    proc = T.AutoProcessor.from_pretrained(folder)
    ip = proc.image_processor
    if not getattr(ip, "_km_numpy_patchify", False):  # see the module docstring
        numpy_patchify = type(ip).patchify_image

        def patchify(image, patch_size=None):
            image = image.numpy() if hasattr(image, "numpy") else image
            out = np.asarray(numpy_patchify(ip, image, patch_size))
            return torch.from_numpy(np.ascontiguousarray(out.reshape(-1, *out.shape[-2:])))

        ip.patchify_image, ip._km_numpy_patchify = patchify, True
    return proc


def reference():
    def build(tmp):
        import tokenizers
        import torch
        import transformers as T
        from tokenizers import normalizers

        folder = tmp / "model"
        vocab = [(t, 0.0) for t in SPECIAL] + [(w, -float(i + 1)) for i, w in enumerate(WORDS)]
        tk = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=0, byte_fallback=False))
        tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tk.decoder = tokenizers.decoders.Sequence([tokenizers.decoders.Replace("▁", " "),
                                                   tokenizers.decoders.Strip(" ", 1, 0)])
        tk.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIAL[:3]])
        tok = T.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="|ENDOFTEXT|",
                                        unk_token="<unk>")
        image_processor = T.FuyuImageProcessorPil(size={"height": 12, "width": 18}, patch_size={"height": 3, "width": 3})
        T.FuyuProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)
        torch.manual_seed(0)
        text = dict(model_type="persimmon", vocab_size=48, hidden_size=32, intermediate_size=24, num_hidden_layers=1,
                    num_attention_heads=4, max_position_embeddings=128, pad_token_id=PAD, bos_token_id=2,
                    eos_token_id=1)
        cfg = T.FuyuConfig(text_config=text, image_size=18, patch_size=3, num_channels=3, image_token_id=SPEAKER)
        randomize_weights(T.FuyuForCausalLM(cfg).eval()).save_pretrained(folder)
        model = T.FuyuForCausalLM.from_pretrained(folder).eval()

        proc = _hf_processor(folder)
        images = _images()
        out = proc(text=TEXTS, images=images)
        one = proc(text="a dog", images=images[1], return_legacy_image_output=False)
        T.FuyuProcessor(image_processor=T.FuyuImageProcessorPil(**ODD), tokenizer=tok).save_pretrained(tmp / "odd")
        odd = _hf_processor(tmp / "odd")(text=TEXTS[::-1], images=[images[0], images[1][:, :4], images[2]])
        with torch.no_grad():
            gen = model.generate(**out, max_new_tokens=4, do_sample=False, pad_token_id=PAD, eos_token_id=1)
        expected = {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"],
                    "image_patches": out["image_patches"], "one_input_ids": one["input_ids"],
                    "one_pixel_values": one["pixel_values"], "odd_input_ids": odd["input_ids"],
                    "odd_attention_mask": odd["attention_mask"], "odd_image_patches": odd["image_patches"],
                    "generated": gen}
        expected = {k: v.numpy() for k, v in expected.items()}
        np.savez(tmp / "expected.npz", **expected)
        (tmp / "decoded.json").write_text(json.dumps(proc.post_process_image_text_to_text(gen)))

    import transformers

    folder = cached_folder(_key("fuyu-processor", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz")), json.loads((folder / "decoded.json").read_text())


@pytest.mark.backend_independent
def test_processor_equals_transformers():
    from keras_models.models.fuyu.processor import FuyuImageProcessor, FuyuProcessor

    folder, expected, _ = reference()
    processor = FuyuProcessor.from_preset(folder)
    images = _images()
    out = processor(text=TEXTS, images=images)
    assert sorted(out) == ["attention_mask", "image_patches", "input_ids"]
    np.testing.assert_array_equal(out["input_ids"], expected["input_ids"])
    np.testing.assert_array_equal(out["attention_mask"], expected["attention_mask"])
    np.testing.assert_array_equal(out["image_patches"], expected["image_patches"])
    # 4 rows of 3 + 1 row of 2 + 3 rows of 6 patches; each patch row ends with |NEWLINE|
    assert out["image_patches"].shape == (12 + 2 + 18, 27)
    assert (out["input_ids"] == SPEAKER).sum() == 32 and (out["input_ids"] == NEWLINE).sum() == 4 + 1 + 3
    one = processor(text="a dog", images=images[1], return_legacy_image_output=False)
    np.testing.assert_array_equal(one["input_ids"], expected["one_input_ids"])
    np.testing.assert_array_equal(one["pixel_values"], expected["one_pixel_values"])
    # another image processor configuration, set in processor_config.json
    config = json.loads((folder / "processor_config.json").read_text())
    odd = FuyuProcessor(processor.tokenizer, FuyuImageProcessor.from_config({**config["image_processor"], **ODD}))
    out = odd(text=TEXTS[::-1], images=[images[0], images[1][:, :4], images[2]])
    for key in ("input_ids", "attention_mask", "image_patches"):
        np.testing.assert_array_equal(out[key], expected[f"odd_{key}"], err_msg=key)


@pytest.mark.backend_independent
def test_processor_save_reloads_in_transformers_and_errors(tmp_path):
    from keras_models.errors import ConfigError, InputError
    from keras_models.models.fuyu.processor import FuyuImageProcessor, FuyuProcessor

    folder, expected, _ = reference()
    processor = FuyuProcessor.from_preset(folder)
    processor.save_pretrained(tmp_path)
    again = FuyuProcessor.from_preset(tmp_path)
    np.testing.assert_array_equal(again(text=TEXTS, images=_images())["image_patches"], expected["image_patches"])
    hf = _hf_processor(tmp_path)(text=TEXTS, images=_images())
    np.testing.assert_array_equal(hf["input_ids"].numpy(), expected["input_ids"])
    np.testing.assert_array_equal(hf["image_patches"].numpy(), expected["image_patches"])
    with pytest.raises(InputError, match="one image per prompt"):
        processor(text=TEXTS, images=_images()[:2])
    with pytest.raises(InputError, match="images need text"):
        processor(images=_images()[0])
    with pytest.raises(InputError, match=r"text\[0\] holds the image token"):
        processor(text=["|SPEAKER| hi"], images=_images()[:1])
    with pytest.raises(InputError, match="no <0x04>"):
        processor.post_process_image_text_to_text(np.array([[5, 6]]))
    for key, bad in (("patch_size", {"height": 0, "width": 3}), ("size", "big"), ("padding_mode", "wrap"),
                     ("image_mean", "x"), ("resample", 9)):
        with pytest.raises(ConfigError, match=key):
            FuyuImageProcessor(**{key: bad})
    with pytest.raises(InputError, match="patches"):  # no padding: 2 x 5 does not divide into 3 x 3 patches
        FuyuProcessor(processor.tokenizer, FuyuImageProcessor(do_pad=False, size=12, patch_size=3))(
            text="a", images=_images()[1])


@pytest.mark.backend_independent  # CI time (a 19 s jax compile): each backend's Fuyu generate is test_fuyu.py's
def test_generate_from_processor_equals_transformers():
    import keras_models as km

    folder, expected, decoded = reference()
    model = km.ImageTextToText.from_preset(folder)
    processor = model.preprocessor
    assert type(processor).__name__ == "FuyuProcessor"
    inputs = processor(text=TEXTS, images=_images())
    out = model.generate(inputs, max_new_tokens=4, do_sample=False, pad_token_id=PAD, eos_token_id=1)
    np.testing.assert_array_equal(out, expected["generated"])
    logits = np.asarray(model.predict_on_batch(inputs))  # the forward pass takes image_patches too
    np.testing.assert_array_equal(logits[:, -1].argmax(-1), out[:, inputs["input_ids"].shape[1]])
    assert processor.post_process_image_text_to_text(out) == decoded
