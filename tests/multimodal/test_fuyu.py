"""Fuyu (km.ImageTextToText) against Transformers' FuyuForCausalLM.

One tiny reference with options that change the numbers: a Persimmon text model without the q/k
LayerNorms, gelu instead of relu2, partial rotary 0.25, untied head; patches of 3x3 pixels with 2
channels (18 values, unlike the text hidden 32). Two rows of 6 image-placeholder tokens each
(image_token_id inside the vocabulary), the second left-padded. Logits and the decoder's last hidden
state are compared on real tokens; greedy ``generate`` must equal Transformers' token for token.
"""

import json

import numpy as np
import pytest

from tests.parity import _key, assert_close, assert_keras_round_trip, cached_folder, randomize_weights

IMAGE, PAD, PATCHES, PATCH_DIM = 98, 0, 6, 18
TEXT = dict(model_type="persimmon", vocab_size=99, hidden_size=32, intermediate_size=20, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
            qk_layernorm=False, hidden_act="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})


def _inputs():
    rng = np.random.RandomState(0)
    rows = [[1, 5] + [IMAGE] * PATCHES + list(rng.randint(3, 90, size=5)),
            [1] + [IMAGE] * PATCHES + list(rng.randint(3, 90, size=3))]
    width = max(len(r) for r in rows)
    ids = np.full((2, width), PAD, "int64")
    mask = np.zeros((2, width), "int64")
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return {"input_ids": ids, "attention_mask": mask}, rng.randn(2, PATCHES, PATCH_DIM).astype("float32")


def reference():
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        cfg = T.FuyuConfig(text_config=TEXT, image_size=12, patch_size=3, num_channels=2, image_token_id=IMAGE)
        model = randomize_weights(T.FuyuForCausalLM(cfg).eval())
        model.save_pretrained(tmp / "model")
        model = T.FuyuForCausalLM.from_pretrained(tmp / "model").eval()
        text, patches = _inputs()
        t = {k: torch.tensor(v) for k, v in text.items()}
        pv = torch.tensor(patches)
        with torch.no_grad():
            out = model(**t, pixel_values=pv, output_hidden_states=True)
            expected = {"logits": out.logits.numpy(), "last_hidden_state": out.hidden_states[-1].numpy(),
                        "generated": model.generate(**t, pixel_values=pv, max_new_tokens=6, do_sample=False,
                                                    pad_token_id=PAD, eos_token_id=2).numpy()}
        np.savez(tmp / "expected.npz", **expected)

    import transformers

    folder = cached_folder(_key("fuyu", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz"))


def _ours():
    text, patches = _inputs()
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": patches}, text["attention_mask"]


def test_logits_hidden_and_greedy_generate_equal_transformers():
    import keras_models as km

    folder, expected = reference()
    model = km.ImageTextToText.from_preset(folder)
    assert type(model).__name__ == "FuyuImageTextToText"
    inputs, mask = _ours()
    hidden = model.backbone.predict_on_batch(inputs)
    assert_close(hidden, expected["last_hidden_state"], mask=mask, what="fuyu hidden state")
    assert_close(model.predict_on_batch(inputs), expected["logits"], mask=mask, what="fuyu logits")
    out = model.generate(inputs, max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=2)
    np.testing.assert_array_equal(out, expected["generated"])


def test_save_to_preset_reloads_in_transformers(tmp_path):
    """The saved folder loads in Transformers with equal logits; .keras round trip; the in-memory
    weight names load."""
    import torch
    import transformers as T

    import keras_models as km

    folder, expected = reference()
    model = km.ImageTextToText.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    text, patches = _inputs()
    hf_model = T.FuyuForCausalLM.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        logits = hf_model(**{k: torch.tensor(v) for k, v in text.items()},
                          pixel_values=torch.tensor(patches)).logits.numpy()
    assert_close(logits, expected["logits"], mask=text["attention_mask"], what="transformers reload")
    inputs, mask = _ours()
    assert_keras_round_trip(model, inputs, tmp_path)
    # Transformers' in-memory names (model.language_model., model.vision_embed_tokens, lm_head) load too
    from safetensors.numpy import load_file, save_file

    renames = (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
               ("vision_embed_tokens.", "model.vision_embed_tokens."))
    tensors = load_file(tmp_path / "saved" / "model.safetensors")
    moved = {next((new + k[len(old):] for old, new in renames if k.startswith(old)), k): v for k, v in tensors.items()}
    assert not set(moved) & set(tensors)
    save_file(moved, tmp_path / "saved" / "model.safetensors", metadata={"format": "pt"})
    again = km.ImageTextToText.from_preset(tmp_path / "saved")
    assert_close(again.predict_on_batch(inputs), expected["logits"], mask=mask, what="in-memory names")


def test_config_and_input_errors():
    import keras_models as km
    from keras_models.errors import ConfigError, InputError
    from keras_models.models.fuyu import FuyuBackbone, FuyuSpec

    folder, _ = reference()
    config = json.loads((folder / "config.json").read_text())
    for key, bad in (("patch_size", 0), ("num_channels", "3"), ("image_token_id", "x")):
        with pytest.raises(ConfigError, match=key):
            FuyuSpec.from_hf(dict(config, **{key: bad}))
    # a flat hub config (no text_config: adept/fuyu-8b's layout) reads its text keys as Transformers does
    import transformers as T

    from keras_models.models.decoder.more import PersimmonSpec

    flat = {k: v for k, v in config.items() if k != "text_config"}
    flat.update({k: v for k, v in TEXT.items() if k not in ("model_type", "rope_parameters")}, rope_theta=500.0)
    want = PersimmonSpec.from_hf(T.FuyuConfig(**flat).text_config.to_dict())
    assert PersimmonSpec.from_hf(FuyuSpec.from_hf(flat).text_config) == want
    assert want.hidden_size == 32 and FuyuSpec.from_hf(flat).text_config["qk_layernorm"] is False
    with pytest.raises(ConfigError, match="text_config"):
        FuyuBackbone(FuyuSpec.from_hf(dict(config, text_config={"model_type": "bert"})))
    with pytest.raises(ConfigError, match="image_token_id=99 is outside"):
        FuyuBackbone(FuyuSpec.from_hf(dict(config, image_token_id=99)))
    model = km.ImageTextToText.from_preset(folder)
    inputs, _ = _ours()
    with pytest.raises(InputError, match="12 image tokens.*2 x 5 patches"):
        model.generate({**inputs, "pixel_values": inputs["pixel_values"][:, :5]}, max_new_tokens=1)
    with pytest.raises(InputError, match="image patches"):
        model.generate({**inputs, "pixel_values": np.zeros((2, 6, 3, 3, 2), "float32")}, max_new_tokens=1)
