"""VisionEncoderDecoder (km.ImageToText) against Transformers' VisionEncoderDecoderModel.

Four tiny references, each with options that change the numbers:
  * "vit_trocr": ViT encoder (24 wide) -> enc_to_dec_proj -> TrOCR decoder (32 wide) with learned
    positions, scale_embedding, layernorm_embedding, relu, an untied output_projection;
  * "deit_trocr": DeiT encoder (distillation token) -> TrOCR decoder with fixed sinusoidal
    positions over non-pad tokens, no layernorm_embedding, cross_attention_hidden_size = 24 (no
    projection: cross-attention reads the 24-wide states), a tied head;
  * "swin_mbart": Swin encoder (two stages, shifted windows) -> mBART decoder (pre-norm, final
    norm, scale_embedding, tied head);
  * "donut_mbart": DonutSwin encoder (no final norm; image_size given as [height, width]) -> mBART
    decoder (Donut / Nougat's layout), untied lm_head. The same shapes as "swin_mbart", so that
    the second reuses the first's compiled ops.
Logits (on the real decoder tokens of a right-padded batch) and the encoder's last hidden state on
every backend; greedy ``generate`` from pixel_values (and from raw images through the image
processor) equal to Transformers' token for token; our save_to_preset output reloaded by
Transformers.

GIT (GitForCausalLM): a CLIP-like vision tower (24 wide, quick_gelu, eps 1e-6, which the visual
projection's LayerNorm shares) prefixed to a 32-wide BERT-like causal stack (gelu_new, eps 1e-7):
logits over [image tokens; text] on a right-padded batch, and greedy generate, on every backend.
"""

import inspect

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import _key, assert_close, cached_folder, hf_reference

CASES = ("vit_trocr", "deit_trocr", "swin_mbart", "donut_mbart")
IMAGE = {"vit_trocr": (16, 16), "deit_trocr": (16, 16), "swin_mbart": (32, 32), "donut_mbart": (32, 32)}
TROCR = dict(vocab_size=64, d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=40,
             max_position_embeddings=40, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
             dropout=0.0)
MBART = dict(vocab_size=64, d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=40,
             encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=40, max_position_embeddings=40,
             scale_embedding=True, pad_token_id=1, bos_token_id=0, eos_token_id=2, dropout=0.0)


def randomize(model, seed=0):
    """Kernels ~N(0, 1/fan_in), tables ~N(0, 1), vectors moved off their init by 0.2 N(0, 1)."""
    import torch

    g = torch.Generator().manual_seed(seed + 4321)
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


def _configs(case):
    import transformers as T

    if case == "vit_trocr":
        enc = T.ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=36,
                          image_size=16, patch_size=4, layer_norm_eps=1e-6)
        dec = T.TrOCRConfig(**TROCR, scale_embedding=True, activation_function="relu", tie_word_embeddings=False)
    elif case == "deit_trocr":
        enc = T.DeiTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=36,
                           image_size=16, patch_size=4)
        dec = T.TrOCRConfig(**TROCR, use_learned_position_embeddings=False, layernorm_embedding=False,
                            cross_attention_hidden_size=24)
    elif case == "swin_mbart":
        enc = T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4)
        dec = T.MBartConfig(**MBART)
    else:
        enc = T.DonutSwinConfig(image_size=[32, 32], patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                window_size=4)
        dec = T.MBartConfig(**MBART, tie_word_embeddings=False)
    cfg = T.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 2, 1, 2
    return cfg


def _build(case):
    import transformers as T

    return randomize(T.VisionEncoderDecoderModel(_configs(case)))


def _inputs(case):
    rng = np.random.RandomState(0)
    h, w = IMAGE[case]
    dec = rng.randint(3, 64, size=(2, 7)).astype("int64")
    dec[:, 0] = 2
    dec[1, 5:] = 1
    mask = np.ones_like(dec)
    mask[1, 5:] = 0
    return {"pixel_values": rng.randn(2, 3, h, w).astype("float32"), "decoder_input_ids": dec,
            "decoder_attention_mask": mask}


def ours(inputs):
    return dict(inputs, pixel_values=inputs["pixel_values"].transpose(0, 2, 3, 1))


def _reference(case):
    return hf_reference(f"ved-{case}", lambda: _build(case), _inputs(case))


@pytest.mark.parametrize("case", CASES)
def test_logits_match_transformers(case):
    folder, expected = _reference(case)
    model = km.ImageToText.from_preset(folder)
    assert type(model).__name__ == "VisionEncoderDecoderImageToText"
    inputs = ours(_inputs(case))
    mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=mask, what=f"{case} logits")
    states = model.backbone.encode_pixels(inputs["pixel_values"])
    assert_close(states, expected["encoder_last_hidden_state"], what=f"{case} encoder")


NEW_TOKENS = 6


def _generate_reference():
    """Transformers' greedy generate from pixel_values (the vit_trocr model, built once)."""
    import hashlib

    src = inspect.getsource(inspect.getmodule(_generate_reference))
    key = "ved-generate-" + hashlib.sha1(src.encode()).hexdigest()[:10]
    pixels = _inputs("vit_trocr")["pixel_values"]

    def build(tmp):
        import torch

        from transformers import ViTImageProcessor

        torch.manual_seed(0)
        model = _build("vit_trocr").eval()
        model.save_pretrained(tmp / "model")
        # TrOCRProcessor's image half: resize to 16x16, normalise with odd statistics
        processor = ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5, 0.4, 0.3],
                                      image_std=[0.2, 0.3, 0.4])
        processor.save_pretrained(tmp / "model")
        processed = processor(images=list(_images()), return_tensors="pt").pixel_values
        with torch.no_grad():
            out = model.generate(pixel_values=torch.tensor(pixels), do_sample=False, max_new_tokens=NEW_TOKENS)
            from_images = model.generate(pixel_values=processed, do_sample=False, max_new_tokens=NEW_TOKENS)
        np.savez(tmp / "expected.npz", ids=out.numpy(), from_images=from_images.numpy())

    folder = cached_folder(key, build)
    return folder / "model", pixels, dict(np.load(folder / "expected.npz"))


def _images():
    return (np.random.RandomState(1).rand(2, 20, 24, 3) * 255).astype("uint8")


def test_greedy_generate_matches_transformers():
    """From pixel_values, and from raw images through the checkpoint's image processor (the same
    shapes: one compiled decode loop)."""
    folder, pixels, expected = _generate_reference()
    model = km.ImageToText.from_preset(folder)
    out = model.generate(pixels.transpose(0, 2, 3, 1), do_sample=False, max_new_tokens=NEW_TOKENS)
    assert len(set(expected["ids"][:, 1:].ravel().tolist())) > 2  # decisive, varied tokens
    np.testing.assert_array_equal(np.asarray(out), expected["ids"])
    out = model.generate(list(_images()), do_sample=False, max_new_tokens=NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(out), expected["from_images"])


GIT_PROMPT = np.array([[1, 5, 7], [1, 9, 3]])


def _git_reference():
    """A tiny GitForCausalLM: its logits on a right-padded batch and its greedy generate."""
    import hashlib

    src = inspect.getsource(inspect.getmodule(_git_reference))
    key = "git-" + hashlib.sha1(src.encode()).hexdigest()[:10]
    inputs = _git_inputs()

    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        vision = dict(hidden_size=24, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2, image_size=16,
                      patch_size=8, layer_norm_eps=1e-6)
        cfg = T.GitConfig(vision_config=vision, vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=40, max_position_embeddings=40, bos_token_id=1, eos_token_id=2,
                          pad_token_id=0, hidden_act="gelu_new", layer_norm_eps=1e-7)
        model = randomize(T.GitForCausalLM(cfg)).eval()
        model.save_pretrained(tmp / "model")
        with torch.no_grad():
            logits = model(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
            ids = model.generate(pixel_values=torch.tensor(inputs["pixel_values"]), input_ids=torch.tensor(GIT_PROMPT),
                                 do_sample=False, max_new_tokens=NEW_TOKENS).numpy()
        np.savez(tmp / "expected.npz", logits=logits, ids=ids)

    folder = cached_folder(key, build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _git_inputs():
    rng = np.random.RandomState(2)
    return {"pixel_values": rng.randn(2, 3, 16, 16).astype("float32"),
            "input_ids": np.array([[1, 5, 7, 9, 11], [1, 9, 3, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}


def test_git_logits_and_generate_match_transformers():
    folder, expected = _git_reference()
    model = km.ImageToText.from_preset(folder)
    assert type(model).__name__ == "GitImageToText"
    inputs = ours(_git_inputs())
    images = model.backbone.num_image_tokens
    assert images == 5
    real = np.concatenate([np.ones((2, images), "int64"), inputs["attention_mask"]], axis=1)
    assert_close(model(inputs), expected["logits"], mask=real, what="git logits")
    out = model.generate({"input_ids": GIT_PROMPT}, pixel_values=inputs["pixel_values"], do_sample=False,
                         max_new_tokens=NEW_TOKENS)
    assert len(set(expected["ids"][:, 3:].ravel().tolist())) > 2  # decisive, varied tokens
    np.testing.assert_array_equal(np.asarray(out), expected["ids"])


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """VisionEncoderDecoder (DonutSwin + mBART) and GIT exports, reloaded by Transformers."""
    import torch
    from transformers import GitForCausalLM, VisionEncoderDecoderModel

    folder, expected = _git_reference()
    km.ImageToText.from_preset(folder).save_to_preset(tmp_path / "git")
    hf = GitForCausalLM.from_pretrained(tmp_path / "git").eval()
    inputs = _git_inputs()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    real = np.concatenate([np.ones((2, 5), "int64"), inputs["attention_mask"]], axis=1)
    assert_close(logits, expected["logits"], mask=real, what="reloaded git logits")

    # donut_mbart: Transformers 5.25 cannot from_pretrained a TrOCR decoder with sinusoidal positions
    # (its table is made on the meta device), even its own save
    folder, expected = _reference("donut_mbart")
    km.ImageToText.from_preset(folder).save_to_preset(tmp_path / "saved")
    hf = VisionEncoderDecoderModel.from_pretrained(tmp_path / "saved").eval()
    inputs = _inputs("donut_mbart")
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=inputs["decoder_attention_mask"], what="reloaded logits")


def test_bad_configs_name_the_key(tmp_path):
    import json

    folder, _ = _reference("deit_trocr")
    config = json.loads((folder / "config.json").read_text())
    bad = [
        (dict(config, decoder=dict(config["decoder"], model_type="gpt_neo")), "decoder model_type 'gpt_neo'"),
        (dict(config, decoder=dict(config["decoder"], cross_attention_hidden_size=16)), "cross_attention_hidden_size"),
        (dict(config, encoder={"model_type": "donut-swin", "use_absolute_embeddings": True}), "use_absolute_embeddings"),
        ({"model_type": "git", "vision_config": {}, "num_image_with_embedding": 6}, "num_image_with_embedding"),
    ]
    for i, (cfg, message) in enumerate(bad):
        where = tmp_path / str(i)
        where.mkdir()
        (where / "config.json").write_text(json.dumps(cfg))
        (where / "model.safetensors").symlink_to(folder / "model.safetensors")
        with pytest.raises(ConfigError, match=message):
            km.ImageToText.from_preset(where)
