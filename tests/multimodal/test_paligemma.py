"""PaliGemma 1 and 2 (km.ImageTextToText) against Transformers' PaliGemmaForConditionalGeneration.

Two tiny references (SigLIP vision hidden 24 unlike the text hidden 32, 16 image tokens, GQA with
head_dim 8 != hidden / heads):
  * "gemma": PaliGemma 1, a Gemma text model;
  * "gemma2": PaliGemma 2, a Gemma 2 text model with a sliding window (6) shorter than the image
    block, attention and final soft-capping and query_pre_attn_scalar 10.
The batch has a left-padded row and a training suffix (token_type_ids 1) in the other, so the
prefix-LM mask (bidirectional over the image + prompt, causal over the suffix) is what is compared.
Logits on real tokens; greedy ``generate`` token for token (the prompt's prefix block stays
bidirectional in the KV cache); the processor's ids, token types, labels and pixels; the saved
folder reloads in Transformers.
"""

import numpy as np
import pytest

from tests.multimodal.test_llava import randomize
from tests.parity import _key, assert_close, cached_folder, jit_under_jax

IMAGE, PAD, EOS, BOS = 98, 0, 1, 2
VISION = dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=4, vision_use_head=False)
TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=BOS,
            eos_token_id=EOS)
GEMMA2 = dict(sliding_window=6, attn_logit_softcapping=5.0, final_logit_softcapping=3.0, query_pre_attn_scalar=10)
WORDS = ["caption", "en", "what", "is", "in", "the", "image", "?", "a", "cat", "dog", "on", "mat"]
PROMPTS = ["caption en", "what is in the image ?"]
SUFFIXES = ["a cat", "a dog on the mat"]
KINDS = ["gemma", "gemma2"]


def _build(kind):
    import transformers as T

    text = T.GemmaConfig(**TEXT) if kind == "gemma" else T.Gemma2Config(**TEXT, **GEMMA2)
    cfg = T.PaliGemmaConfig(vision_config=T.SiglipVisionConfig(**VISION), text_config=text, image_token_index=IMAGE,
                            projection_dim=32, hidden_size=32, vocab_size=99)
    return T.PaliGemmaForConditionalGeneration(cfg)


def _inputs():
    """Row 0: 16 image tokens, BOS, a 5-token prompt, a 3-token suffix (type 1); row 1: the
    image, BOS and a 3-token prompt, left-padded by 5."""
    rng = np.random.RandomState(0)
    rows = [[IMAGE] * 16 + [BOS] + list(rng.randint(3, 90, size=5)) + list(rng.randint(3, 90, size=3)),
            [IMAGE] * 16 + [BOS] + list(rng.randint(3, 90, size=3))]
    types = [[0] * 22 + [1] * 3, [0] * 20]
    width = max(len(r) for r in rows)
    ids, mask, tt = (np.zeros((2, width), "int64") for _ in range(3))
    for i, (r, t) in enumerate(zip(rows, types)):
        ids[i, width - len(r):], mask[i, width - len(r):], tt[i, width - len(r):] = r, 1, t
    pixels = rng.randn(2, 16, 16, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}, pixels


def _processor():
    """A whitespace word-level tokenizer (<image> at IMAGE) and a 16x16 SigLIP image processor."""
    import tokenizers
    import transformers as T

    vocab = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS, "<unk>": 3}
    for w in WORDS:
        vocab[w] = len(vocab)
    for i in range(len(vocab), IMAGE):
        vocab[f"w{i}"] = i
    vocab["<image>"] = IMAGE
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok = T.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                    unk_token="<unk>", extra_special_tokens={"image_token": "<image>"},
                                    padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image = T.SiglipImageProcessor(size={"height": 16, "width": 16})
    image.image_seq_length = 16
    return T.PaliGemmaProcessor(image_processor=image, tokenizer=tok)


def _images():
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(20 + 6 * i, 18, 3), dtype=np.uint8)) for i in range(2)]


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize(_build(kind).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        _processor().save_pretrained(folder)
        proc = T.AutoProcessor.from_pretrained(folder)
        model = T.PaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
        text, pixels = _inputs()
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(pixels.transpose(0, 3, 1, 2))
        prompt = {k: v[:, :-3] for k, v in t.items()}  # row 0 without its suffix: a left-padded prompt batch
        prompt["attention_mask"][1, :3] = 0
        with torch.no_grad():
            expected = {"logits": model(**t, pixel_values=pv).logits.numpy(),
                        "generated": model.generate(**prompt, pixel_values=pv, max_new_tokens=5, do_sample=False,
                                                    pad_token_id=PAD, eos_token_id=EOS).numpy()}
        enc = proc(images=_images(), text=PROMPTS, suffix=SUFFIXES, padding=True, return_tensors="np")
        expected.update({f"proc_{k}": np.asarray(v) for k, v in enc.items()})
        enc = proc(images=_images()[:1], text=["<image>" + PROMPTS[1]], padding=True, return_tensors="np")
        expected.update({f"proc1_{k}": np.asarray(v) for k, v in enc.items()})
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"paligemma-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours(text, pixels):
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}


@pytest.mark.one_case_per_pass("kind")
@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_greedy_generate_equal_transformers(kind):
    import keras

    import keras_models as km

    folder, expected = reference(kind)
    model = km.ImageTextToText.from_preset(folder)
    assert type(model).__name__ == "PaliGemmaImageTextToText" and model.lm_head is None  # tied head
    text, pixels = _inputs()
    inputs = _ours(text, pixels)
    mask = text["attention_mask"]
    # jax: both calls in one compile, not op by op (CI time)
    logits, causal = jit_under_jax(lambda x: (model(x), model({k: v for k, v in x.items() if k != "token_type_ids"})))(
        inputs)
    assert_close(keras.ops.convert_to_numpy(logits), expected["logits"], mask=mask, what=f"{kind} logits")
    # the prefix-LM mask matters: without token_type_ids (all causal) the prefix logits change
    causal = keras.ops.convert_to_numpy(causal)
    assert np.abs((causal - expected["logits"])[0, :20]).max() > 1e-2
    prompt = {k: v[:, :-3].copy() for k, v in inputs.items() if k != "pixel_values"}
    prompt["attention_mask"][1, :3] = 0
    out = model.generate({**prompt, "pixel_values": pixels}, max_new_tokens=5, do_sample=False, pad_token_id=PAD,
                         eos_token_id=EOS)
    np.testing.assert_array_equal(out, expected["generated"])


@pytest.mark.backend_independent
def test_processor_equals_paligemma_processor():
    """<image> * image_seq_length + BOS + prompt + "\\n", the suffix + EOS as token type 1, labels,
    SigLIP pixels, left padding; prompts with their own placeholder; errors naming the input."""
    import keras_models as km
    from keras_models.errors import InputError

    folder, expected = reference("gemma")
    proc = km.ImageTextToText.from_preset(folder).preprocessor
    assert type(proc).__name__ == "PaliGemmaProcessor" and proc.image_seq_length == 16
    out = proc(text=PROMPTS, images=_images(), suffix=SUFFIXES)
    for k in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        np.testing.assert_array_equal(out[k], expected[f"proc_{k}"], err_msg=k)
    np.testing.assert_allclose(out["pixel_values"], expected["proc_pixel_values"].transpose(0, 2, 3, 1), atol=1e-5)
    one = proc(text=["<image>" + PROMPTS[1]], images=_images()[:1])
    for k in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        np.testing.assert_array_equal(one[k], expected[f"proc1_{k}"], err_msg=k)
    with pytest.raises(InputError, match="images are required"):
        proc(text=PROMPTS)
    with pytest.raises(InputError, match="images has 1 entries for 2 prompts"):
        proc(text=PROMPTS, images=_images()[:1])
    with pytest.raises(InputError, match="suffix has 1 entries"):
        proc(text=PROMPTS, images=_images(), suffix=SUFFIXES[:1])


def test_paligemma_save_to_preset_reloads_in_transformers(tmp_path):
    """The saved folder (PaliGemma 2) loads in Transformers with equal logits, and here again,
    processor included; the original checkpoints' names (vision_tower.vision_model.) load too."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference("gemma2")
    model = km.ImageTextToText.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    text, pixels = _inputs()
    mask = text["attention_mask"]
    hf_model = T.PaliGemmaForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                          pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))).logits.numpy()
    assert_close(logits, expected["logits"], mask=mask, what="transformers reload")
    hf_proc = T.AutoProcessor.from_pretrained(tmp_path / "saved")
    enc = hf_proc(images=_images(), text=PROMPTS, suffix=SUFFIXES, padding=True, return_tensors="np")
    np.testing.assert_array_equal(enc["input_ids"], expected["proc_input_ids"])
    from safetensors.numpy import load_file, save_file

    tensors = load_file(tmp_path / "saved" / "model.safetensors")
    moved = {("vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.") else k): v
             for k, v in tensors.items()}
    save_file(moved, tmp_path / "saved" / "model.safetensors", metadata={"format": "pt"})
    again = km.ImageTextToText.from_preset(tmp_path / "saved")
    assert again.backbone.spec == model.backbone.spec
    assert_close(again(_ours(text, pixels)), expected["logits"], mask=mask, what="reload")
    assert again.preprocessor.image_seq_length == 16


@pytest.mark.backend_independent
def test_config_errors(tmp_path):
    import json

    from keras_models.errors import ConfigError
    from keras_models.models.paligemma import PaliGemmaSpec

    folder, _ = reference("gemma")
    config = json.loads((folder / "config.json").read_text())
    spec = PaliGemmaSpec.from_hf(config)
    assert spec.image_token_index == IMAGE and spec.text_config["model_type"] == "gemma"
    with pytest.raises(ConfigError, match="projection_dim"):
        PaliGemmaSpec.from_hf(dict(config, projection_dim=16))


@pytest.mark.backend_independent
def test_training_batch_loss_equals_transformers_loss():
    """training_batch: the processor's suffix labels shifted to next-token targets; the loss
    (prefix and padding ignored) equals Transformers' loss with the processor's labels."""
    import keras
    import torch
    import transformers as T

    import keras_models as km

    folder, _ = reference("gemma")
    model = km.ImageTextToText.from_preset(folder)
    x, y = model.preprocessor.training_batch(_images(), PROMPTS, SUFFIXES)
    assert ((y != -100).sum(axis=1)).tolist() == [3, 6]  # the suffix words and EOS
    hf_model = T.PaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
    labels = np.where(x["token_type_ids"] == 0, -100, x["input_ids"])
    with torch.no_grad():
        hf_loss = float(hf_model(**{k: torch.tensor(x[k]).long() for k in ("input_ids", "attention_mask",
                                                                           "token_type_ids")},
                                 pixel_values=torch.tensor(x["pixel_values"].transpose(0, 3, 1, 2)),
                                 labels=torch.tensor(labels).long()).loss)
    ours = float(keras.ops.convert_to_numpy(model.default_loss()(y, model(x))))
    assert abs(ours - hf_loss) < 1e-4, (ours, hf_loss)
