"""LLaVA and VipLlava (km.ImageTextToText) against Transformers' *ForConditionalGeneration.

Three tiny references, each with odd options that change the numbers: vision hidden (24) unlike
the text hidden (32), a Llama text model with GQA (4 heads, 2 KV heads), and
  * "llava": CLIP vision, vision_feature_layer -2, select strategy "default" (drop CLS), untied head;
  * "llava_siglip": SigLIP vision, vision_feature_layer [-1, 0, 1] (concatenated), strategy
    "full", tied head, projector without biases, gelu_new projector activation;
  * "vipllava": CLIP vision, layers [-2, 0, 1] through the projector's LayerNorm (eps 1e-3).
The batch has a left-padded row. Logits are compared on real tokens; greedy ``generate`` must
equal Transformers' token for token ("llava" on every backend; the tied head of "llava_siglip" under
torch, whose eager decode loop has its own tied-head path).
"""

import json

import numpy as np
import pytest

from tests.parity import _key, assert_close, cached_folder, to_numpy

IMAGE = 98  # image_token_index (inside the text vocabulary, as in llava-hf checkpoints)
PAD = 0
TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
            rms_norm_eps=1e-5)
VISION = dict(hidden_size=24, intermediate_size=36, num_hidden_layers=3, num_attention_heads=4, image_size=16,
              patch_size=4)
WORDS = ["USER:", "ASSISTANT:", "what", "is", "in", "the", "image", "?", "a", "cat", "dog", "describe", "it"]
TEMPLATE = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
            "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
            "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', "
            "'text') %}{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def randomize(model, seed=0):
    """Kernels ~N(0, 1/fan_in), tables ~N(0, 1), vectors moved off their init by 0.2 N(0, 1)."""
    import torch

    g = torch.Generator().manual_seed(seed + 12345)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g)
                if sum(d > 1 for d in p.shape) <= 1:
                    p.add_(0.2 * noise)
                elif name == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    p.copy_(noise * int(np.prod(p.shape[1:])) ** -0.5)
                else:
                    p.copy_(noise)
    return model


def _build(kind):
    import transformers as T

    if kind == "llava":
        cfg = T.LlavaConfig(vision_config=T.CLIPVisionConfig(**VISION), text_config=T.LlamaConfig(**TEXT),
                            image_token_index=IMAGE, image_seq_length=16, projector_hidden_act="gelu")
        return T.LlavaForConditionalGeneration(cfg)
    if kind == "llava_siglip":
        cfg = T.LlavaConfig(vision_config=T.SiglipVisionConfig(**VISION),
                            text_config=T.LlamaConfig(**TEXT, tie_word_embeddings=True),
                            image_token_index=IMAGE, image_seq_length=16, vision_feature_layer=[-1, 0, 1],
                            vision_feature_select_strategy="full", multimodal_projector_bias=False,
                            projector_hidden_act="gelu_new", tie_word_embeddings=True)
        return T.LlavaForConditionalGeneration(cfg)
    if kind == "vipllava":
        cfg = T.VipLlavaConfig(vision_config=T.CLIPVisionConfig(**VISION), text_config=T.LlamaConfig(**TEXT),
                               image_token_index=IMAGE, vision_feature_layer=[-2, 0, 1], projector_layernorm_eps=1e-3)
        return T.VipLlavaForConditionalGeneration(cfg)
    raise ValueError(kind)


def _inputs(kind):
    """Two rows, one image each (16 image tokens), the second left-padded by 3."""
    rng = np.random.RandomState(0)
    n = 16
    rows = [[1, 3, 4] + [IMAGE] * n + list(rng.randint(3, 90, size=5)),
            [1, 5] + [IMAGE] * n + list(rng.randint(3, 90, size=3))]
    width = max(len(r) for r in rows)
    ids = np.full((2, width), PAD, "int64")
    mask = np.zeros((2, width), "int64")
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    pixels = rng.randn(2, 16, 16, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask}, pixels


def _tokenizer(folder):
    """A whitespace word-level tokenizer with <image> at IMAGE (Transformers' fast tokenizer)."""
    import tokenizers
    import transformers as T

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for w in WORDS:
        vocab[w] = len(vocab)
    for i in range(len(vocab), IMAGE):
        vocab[f"w{i}"] = i
    vocab["<image>"] = IMAGE
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tk.post_processor = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = T.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                    unk_token="<unk>", extra_special_tokens={"image_token": "<image>"},
                                    padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tok


def _processor(tok, kind):
    import transformers as T

    proc = T.CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    strategy = "full" if kind == "llava_siglip" else "default"
    return T.LlavaProcessor(image_processor=proc, tokenizer=tok, patch_size=4, chat_template=TEMPLATE,
                            vision_feature_select_strategy=strategy,
                            num_additional_image_tokens=0 if kind == "llava_siglip" else 1)


def _images():
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(20 + 6 * i, 18, 3), dtype=np.uint8)) for i in range(2)]


PROMPTS = ["USER: <image>\nwhat is in the image ? ASSISTANT:", "USER: <image>\ndescribe it ASSISTANT:"]
CHAT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the image ?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]},
        {"role": "user", "content": [{"type": "text", "text": "describe it"}]}]


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize(_build(kind).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        tok = _tokenizer(folder)
        proc = _processor(tok, kind)
        proc.save_pretrained(folder)
        proc = T.AutoProcessor.from_pretrained(folder)  # what a user of the folder gets
        model = type(model).from_pretrained(folder).eval()  # buffers rebuilt as a user's load does
        text, pixels = _inputs(kind)
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(pixels.transpose(0, 3, 1, 2))
        with torch.no_grad():
            expected = {"logits": model(**t, pixel_values=pv).logits.numpy()}
            expected["generated"] = model.generate(**t, pixel_values=pv, max_new_tokens=6, do_sample=False,
                                                   pad_token_id=PAD, eos_token_id=2).numpy()
        enc = proc(images=_images(), text=PROMPTS, padding=True, return_tensors="np")
        expected.update({f"proc_{k}": np.asarray(v) for k, v in enc.items()})
        rendered = proc.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
        (tmp / "chat.json").write_text(json.dumps(rendered))
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key(f"llava-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz")), json.loads((folder / "chat.json").read_text())


KINDS = ["llava", "llava_siglip", "vipllava"]


@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_greedy_generate_equal_transformers(kind):
    import keras

    import keras_models as km

    folder, expected, _ = reference(kind)
    model = km.ImageTextToText.from_preset(folder)
    text, pixels = _inputs(kind)
    inputs = {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}
    assert_close(model(inputs), expected["logits"], mask=text["attention_mask"], what=f"{kind} logits")
    if kind == "llava_siglip":  # tied head: no lm_head variable, the token table is the head
        assert model.lm_head is None
    if kind == "vipllava":  # its projector only changes the features; the decode path is llava's
        return
    if kind == "llava_siglip" and keras.backend.backend() != "torch":
        return  # the tied head's decode differs only in torch's eager loop (CI time: one compile per pass)
    out = model.generate(inputs, max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=2)
    np.testing.assert_array_equal(out, expected["generated"])


def test_processor_equals_llava_processor():
    """Placeholder expansion (CLS dropped for "default"), CLIP image processing, left padding,
    the processor's chat template with image entries, and errors naming the input at fault."""
    import keras_models as km
    from keras_models.errors import InputError

    folder, expected, chat = reference("llava")
    model = km.ImageTextToText.from_preset(folder)  # (random init of unloaded variables is slower under jax)
    proc = model.preprocessor
    out = proc(text=PROMPTS, images=_images())
    for k in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(out[k], expected[f"proc_{k}"], err_msg=k)
    np.testing.assert_allclose(out["pixel_values"], expected["proc_pixel_values"].transpose(0, 2, 3, 1), atol=1e-5)
    assert (out["input_ids"] == IMAGE).sum(axis=1).tolist() == [16, 16]
    assert proc.apply_chat_template(CHAT, add_generation_prompt=True) == chat
    with pytest.raises(InputError, match="placeholder.*images has 1"):
        proc(text=PROMPTS, images=_images()[:1])
    with pytest.raises(InputError, match=r"images\[0\] has shape"):
        proc(text=PROMPTS[:1], images=[np.zeros((2, 16, 16, 3), "uint8")])
    with pytest.raises(InputError, match="input_ids hold 16 image tokens.*pixel_values has 2"):
        model.generate({"input_ids": out["input_ids"][:1], "attention_mask": out["attention_mask"][:1],
                        "pixel_values": out["pixel_values"]}, max_new_tokens=1)


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """Tied head, SigLIP tower, feature-layer list: the saved folder loads in Transformers with
    equal logits, and here again (processor included)."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected, _ = reference("llava_siglip")
    model = km.ImageTextToText.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    text, pixels = _inputs("llava_siglip")
    hf_model = T.LlavaForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                          pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))).logits.numpy()
    mask = text["attention_mask"]
    assert_close(logits, expected["logits"], mask=mask, what="transformers reload")
    again = km.ImageTextToText.from_preset(tmp_path / "saved")
    assert again.backbone.spec == model.backbone.spec
    inputs = {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}
    assert_close(again(inputs), expected["logits"], mask=mask, what="reload")
    assert again.preprocessor.tokens_per_image(16, 16) == 16  # SigLIP: no class token, strategy "full"
    # the layout Transformers 4.52-4.57 saved (its in-memory names, towers with vision_model.) loads too
    from safetensors.numpy import load_file, save_file

    renames = (("vision_tower.", "model.vision_tower.vision_model."), ("language_model.model.", "model.language_model."),
               ("multi_modal_projector.", "model.multi_modal_projector."))
    tensors = load_file(tmp_path / "saved" / "model.safetensors")
    moved = {next((new + k[len(old):] for old, new in renames if k.startswith(old)), k): v for k, v in tensors.items()}
    assert set(moved) != set(tensors)
    save_file(moved, tmp_path / "saved" / "model.safetensors", metadata={"format": "pt"})
    legacy = km.ImageTextToText.from_preset(tmp_path / "saved")
    assert_close(legacy(inputs), expected["logits"], mask=mask, what="4.5x layout")


def test_config_keys_and_errors(tmp_path):
    """image_token_id (the other spelling), vision_feature_layers (VipLlava's), bad values named."""
    from keras_models.errors import ConfigError
    from keras_models.models.llava import LlavaSpec, VipLlavaSpec

    folder, _, _ = reference("llava")
    config = json.loads((folder / "config.json").read_text())
    alt = dict(config, image_token_id=7)
    alt.pop("image_token_index")
    assert LlavaSpec.from_hf(alt).image_token_index == 7
    vip = dict(config, model_type="vipllava", vision_feature_layers=[-1, 2])
    vip.pop("vision_feature_layer")
    assert VipLlavaSpec.from_hf(vip).vision_feature_layer == (-1, 2)
    for key, bad in (("vision_feature_select_strategy", "cls"), ("vision_feature_layer", "last")):
        with pytest.raises(ConfigError, match=key):
            LlavaSpec.from_hf(dict(config, **{key: bad}))


def test_fit_on_image_prompt_response_learns_only_the_response():
    """training_batch masks prompt and image tokens (-100): the first loss equals Transformers'
    loss with those labels, and a few fit steps lower it (one compile)."""
    import keras
    import torch
    import transformers as T

    import keras_models as km

    folder, _, _ = reference("llava")
    model = km.ImageTextToText.from_preset(folder)
    x, y = model.preprocessor.training_batch(_images(), PROMPTS, ["a cat", "a dog describe it"])
    resp = [len(model.preprocessor.tokenizer(r, add_special_tokens=False)["input_ids"][0]) + 1
            for r in ("a cat", "a dog describe it")]
    assert ((y != -100).sum(axis=1)).tolist() == resp  # the response and its eos, nothing else
    assert not (y[x["input_ids"] == IMAGE] != -100).any()
    hf_labels = np.where(np.pad(y, ((0, 0), (1, 0)), constant_values=-100)[:, :-1] != -100, x["input_ids"], -100)
    hf_model = T.LlavaForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        hf_loss = float(hf_model(input_ids=torch.tensor(x["input_ids"]).long(),
                                 attention_mask=torch.tensor(x["attention_mask"]).long(),
                                 pixel_values=torch.tensor(x["pixel_values"].transpose(0, 3, 1, 2)),
                                 labels=torch.tensor(hf_labels).long()).loss)
    ours = float(keras.ops.convert_to_numpy(model.default_loss()(y, model(x))))
    assert abs(ours - hf_loss) < 1e-4, (ours, hf_loss)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=model.default_loss())
    losses = model.fit(x, y, epochs=4, batch_size=2, verbose=0).history["loss"]
    assert losses[-1] < losses[0] - 0.1, losses
