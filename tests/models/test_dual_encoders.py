"""Dual encoders (CLIP, SigLIP, Chinese-CLIP, VisionTextDualEncoder) against Transformers.

Each tiny reference (towers of different widths and depths, a projection width unlike either
tower's) is built once per run with a WordPiece tokenizer and an image processor, and records
the model's outputs, both towers' last hidden states and Transformers' zero-shot pipeline output.
"""

import json

import numpy as np
import pytest

from tests.parity import _key, assert_close, cached_folder, to_numpy

try:
    from tests.parity import randomize_weights
except ImportError:  # an older parity helper: the same rule, kept here
    def randomize_weights(model, seed=0):
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

TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=16)
VISION = dict(hidden_size=40, intermediate_size=44, num_hidden_layers=3, num_attention_heads=4, image_size=32,
              patch_size=8)
WORDS = ["a", "photo", "of", "cat", "dog", "car", "this", "is", "the", "red", "blue"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"w{i}" for i in range(99 - 5 - len(WORDS))]
SEP = 3


def _build(kind):
    import transformers as T

    if kind == "clip":
        return T.CLIPModel(T.CLIPConfig(text_config=dict(TEXT, eos_token_id=SEP, pad_token_id=0),
                                        vision_config=VISION, projection_dim=24))
    if kind == "clip_legacy_eos":  # eos_token_id 2: the highest id marks the pooled token
        return T.CLIPModel(T.CLIPConfig(text_config=dict(TEXT, eos_token_id=2, hidden_act="gelu"),
                                        vision_config=dict(VISION, num_hidden_layers=1), projection_dim=40))
    if kind == "siglip":  # text head width = vision width (unlike the text width); 64 positions
        return T.SiglipModel(T.SiglipConfig(text_config=dict(TEXT, max_position_embeddings=64, projection_size=40),
                                            vision_config=VISION))
    if kind == "chinese_clip":
        return T.ChineseCLIPModel(T.ChineseCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24))
    if kind == "vtde":
        cfg = T.VisionTextDualEncoderConfig.from_vision_text_configs(T.ViTConfig(**VISION), T.BertConfig(**TEXT),
                                                                     projection_dim=24)
        return T.VisionTextDualEncoderModel(cfg)
    if kind == "vtde_clip_vision":  # any registered tower: CLIP's vision tower + BERT
        cfg = T.VisionTextDualEncoderConfig.from_vision_text_configs(
            T.CLIPVisionConfig(**VISION), T.BertConfig(**TEXT), projection_dim=16)
        return T.VisionTextDualEncoderModel(cfg)
    raise ValueError(kind)


def _inputs(kind):
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 99, size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    if kind != "siglip":  # SigLIP pools the last position: its texts are padded to a fixed length
        ids[:, 0] = 2
        ids[:, -1] = SEP
        ids[1, 4], ids[1, 5:], mask[1, 5:] = SEP, 0, 0
    pixels = rng.randn(3, 32, 32, 3).astype("float32")
    return {"input_ids": ids, "attention_mask": mask}, pixels


def _images():
    from PIL import Image

    rng = np.random.RandomState(1)
    return [Image.fromarray(rng.randint(0, 255, size=(40 + 8 * i, 36, 3), dtype=np.uint8)) for i in range(2)]


LABELS = ["cat", "dog", "red car"]


def reference(kind):
    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        model = randomize_weights(_build(kind).eval())
        folder = tmp / "model"
        model.save_pretrained(folder)
        (tmp / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
        tok = T.BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"))
        tok.save_pretrained(folder)
        proc = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        if kind == "siglip":
            proc = T.SiglipImageProcessor(size={"height": 32, "width": 32})
        proc.save_pretrained(folder)
        model = type(model).from_pretrained(folder).eval()  # buffers rebuilt as a user's load does
        text, pixels = _inputs(kind)
        with torch.no_grad():
            out = model(**{k: torch.tensor(v) for k, v in text.items()},
                        pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)), output_hidden_states=False)
        expected = {k: getattr(out, k).numpy() for k in ("logits_per_image", "logits_per_text", "text_embeds",
                                                         "image_embeds")}
        expected["text_hidden"] = out.text_model_output.last_hidden_state.numpy()
        expected["vision_hidden"] = out.vision_model_output.last_hidden_state.numpy()
        np.savez(tmp / "expected.npz", **expected)
        pipe = T.pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=proc)
        with torch.no_grad():
            result = [pipe(im, candidate_labels=LABELS) for im in _images()]
        (tmp / "pipeline.json").write_text(json.dumps(result))

    import transformers

    folder = cached_folder(_key(f"dual-{kind}", open(__file__).read(), transformers.__version__), build)
    return folder / "model", dict(np.load(folder / "expected.npz")), json.loads((folder / "pipeline.json").read_text())


KINDS = ["clip", "clip_legacy_eos", "siglip", "chinese_clip", "vtde", "vtde_clip_vision"]


def _ours(model, kind):
    text, pixels = _inputs(kind)
    return {**{k: v.astype("int32") for k, v in text.items()}, "pixel_values": pixels}


@pytest.mark.parametrize("kind", KINDS)
def test_parity_outputs_and_tower_hidden_states(kind):
    import keras_models as km

    folder, expected, _ = reference(kind)
    model = km.ZeroShotImageClassifier.from_preset(folder)
    inputs = _ours(model, kind)
    out = to_numpy(model(inputs))
    for k in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert_close(out[k], expected[k], what=f"{kind} {k}")
    bb = model.backbone
    # padded positions' states are not defined the same way (Transformers 5 masks padded queries
    # in some towers): compared on real tokens
    assert_close(bb.text_model({k: v for k, v in inputs.items() if k != "pixel_values"}), expected["text_hidden"],
                 mask=inputs["attention_mask"], what=f"{kind} text tower")
    assert_close(bb.vision_model({"pixel_values": inputs["pixel_values"]}), expected["vision_hidden"],
                 what=f"{kind} vision tower")
    # get_text_features / get_image_features: the projected features before normalisation
    t = to_numpy(model.encode_text(inputs))
    np.testing.assert_allclose(t / np.linalg.norm(t, axis=-1, keepdims=True), expected["text_embeds"], atol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "siglip"])  # softmax and sigmoid scoring
def test_pipeline_equals_transformers(kind):
    import keras_models as km

    folder, _, expected = reference(kind)
    pipe = km.pipeline("zero-shot-image-classification", model=str(folder))
    got = [pipe(im, candidate_labels=LABELS) for im in _images()]
    for g, e in zip(got, expected):
        assert sorted(r["label"] for r in g) == sorted(LABELS)
        scores = [r["score"] for r in g]
        assert scores == sorted(scores, reverse=True)  # best first (near-ties may swap places)
        by_label = {r["label"]: r["score"] for r in e}
        np.testing.assert_allclose(scores, [by_label[r["label"]] for r in g], atol=1e-5)


@pytest.mark.parametrize("kind", ["siglip", "vtde"])  # fixed and registry-resolved towers
def test_save_to_preset_reloads_in_transformers_and_here(kind, tmp_path):
    import torch
    import transformers as T

    import keras_models as km

    folder, expected, _ = reference(kind)
    model = km.ZeroShotImageClassifier.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert isinstance(saved["text_config"], dict) and isinstance(saved["vision_config"], dict)
    hf_cls = {"siglip": T.SiglipModel, "vtde": T.VisionTextDualEncoderModel}[kind]
    hf_model = hf_cls.from_pretrained(tmp_path / "saved").eval()
    text, pixels = _inputs(kind)
    with torch.no_grad():
        out = hf_model(**{k: torch.tensor(v) for k, v in text.items()}, pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)))
    assert_close(out.logits_per_image.numpy(), expected["logits_per_image"], what="transformers reload")
    again = km.ZeroShotImageClassifier.from_preset(tmp_path / "saved")
    assert type(again) is type(model)
    assert again.backbone.spec == model.backbone.spec
    assert_close(again(_ours(again, kind))["logits_per_image"], expected["logits_per_image"], what="reload")
    assert again.preprocessor is not None and again.preprocessor.tokenizer is not None


def test_backbone_from_preset_and_keras_round_trip(tmp_path):
    import keras

    import keras_models as km

    folder, expected, _ = reference("clip")
    bb = km.Backbone.from_preset(folder)
    assert type(bb).__name__ == "CLIPBackbone"
    inputs = _ours(bb, "clip")
    feats = to_numpy(bb(inputs))
    assert feats["text_embeds"].shape == (2, 24) and feats["image_embeds"].shape == (3, 24)
    bb.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert restored.spec == bb.spec
    np.testing.assert_allclose(to_numpy(restored(inputs))["image_embeds"], feats["image_embeds"], atol=1e-6)


def test_spec_errors_name_the_key_and_file(tmp_path):
    import keras_models as km
    from keras_models.errors import ConfigError

    folder, _, _ = reference("clip")
    config = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("model.safetensors",):
        (bad / name).symlink_to(folder / name)
    cases = [
        (lambda c: c.pop("vision_config"), "vision_config"),
        (lambda c: c["text_config"].update(hidden_size="32"), "hidden_size"),
        (lambda c: c["vision_config"].update(num_attention_heads=0), "num_attention_heads"),
        (lambda c: c["vision_config"].update(num_attention_heads=7), "num_attention_heads"),
        (lambda c: c["text_config"].update(model_type="no_such_tower"), "no_such_tower"),
    ]
    for mutate, key in cases:
        c = json.loads(json.dumps(config))
        mutate(c)
        (bad / "config.json").write_text(json.dumps(c))
        with pytest.raises(ConfigError, match=key) as info:
            km.ZeroShotImageClassifier.from_preset(bad)
        assert "config.json" in str(info.value)
