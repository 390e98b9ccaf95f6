"""Vision-language fusion encoders against Transformers 5.

ViLT: ViltModel (backbone: last_hidden_state, pooler_output), ViltForQuestionAnswering
(km.VisualQuestionAnswerer), ViltForImageAndTextRetrieval (km.ImageTextMatcher), ViltForMaskedLM
(km.MaskedLM) and ViltForImagesAndTextClassification (NLVR2, two images), from one tiny config
with options that change the numbers: no qkv bias, gelu_new, eps 1e-7, three text token types and
three modality types, a 4x4 position table (image_size 32) resized to 16x24-pixel inputs (2x3
patches) whose second row has a pixel_mask covering 2x2 patches, and ``max_image_length`` 5 (the
first row's six patches are cut to five, the second's four padded with one masked patch).

Transformers samples the kept patches with ``torch.multinomial`` even in eval; the references are
computed with that sampler returning the first indices, the deterministic choice ours makes
(keras_models/models/vilt/vilt.py).
"""

import contextlib
import hashlib
import inspect

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, cached_folder, randomize_weights, to_numpy

CONFIG = dict(vocab_size=64, type_vocab_size=3, modality_type_vocab_size=3, max_position_embeddings=16,
              hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
              hidden_act="gelu_new", layer_norm_eps=1e-7, image_size=32, patch_size=8, qkv_bias=False,
              max_image_length=5, num_images=2, num_labels=5)
HEADS = {"model": "ViltModel", "vqa": "ViltForQuestionAnswering", "retrieval": "ViltForImageAndTextRetrieval",
         "mlm": "ViltForMaskedLM", "nlvr2": "ViltForImagesAndTextClassification"}


def _inputs(images=1):
    rng = np.random.RandomState(5)
    shape = (2, images, 3, 16, 24) if images > 1 else (2, 3, 16, 24)
    mask = np.ones(shape[:-3] + (16, 24), "int64")
    mask[1, ..., :, 12:] = 0  # the second example: 16x12 real pixels (2x2 patches)
    if images > 1:
        mask[0, 1, 8:, :] = 0  # and the first example's second image: 8x24 (1x3 patches)
    return {"input_ids": np.array([[1, 5, 7, 9, 11, 2], [1, 9, 13, 2, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
            "token_type_ids": np.array([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 0, 0]]),
            "pixel_values": rng.randn(*shape).astype("float32"), "pixel_mask": mask}


def _images():
    rng = np.random.RandomState(6)
    return [(rng.rand(30, 45, 3) * 255).astype("uint8"), (rng.rand(40, 28, 3) * 255).astype("uint8")]


@contextlib.contextmanager
def _first_patches():
    """Transformers' patch sampler pinned to the first indices (our deterministic choice)."""
    import torch

    real = torch.multinomial
    torch.multinomial = lambda weights, n, replacement=False, **_: torch.arange(n)
    try:
        yield
    finally:
        torch.multinomial = real


def _ours(inputs):
    axes = (0, 1, 3, 4, 2) if inputs["pixel_values"].ndim == 5 else (0, 2, 3, 1)
    return dict(inputs, pixel_values=inputs["pixel_values"].transpose(axes))


def _reference():
    src = inspect.getsource(inspect.getmodule(_reference)) + inspect.getsource(randomize_weights)
    key = "vilt-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        out = {}
        for i, (head, arch) in enumerate(HEADS.items()):
            torch.manual_seed(i)
            model = randomize_weights(getattr(T, arch)(T.ViltConfig(**CONFIG)), seed=i).eval()
            model.save_pretrained(tmp / head)
            model = getattr(T, arch).from_pretrained(tmp / head).eval()
            inputs = {k: torch.tensor(v) for k, v in _inputs(2 if head == "nlvr2" else 1).items()}
            with torch.no_grad(), _first_patches():
                o = model(**inputs)
            if head == "vqa":  # the image processor travels with the VQA checkpoint
                processor = T.ViltImageProcessorPil(size={"shortest_edge": 20}, size_divisor=8,
                                                    image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4])
                processor.save_pretrained(tmp / head)
                done = processor(images=_images(), return_tensors="np")
                out["processed"], out["processed_mask"] = done["pixel_values"], done["pixel_mask"]
                done = T.ViltImageProcessorPil()(images=_images()[:1], return_tensors="np")
                out["processed_defaults"], out["processed_defaults_mask"] = done["pixel_values"], done["pixel_mask"]
            if head == "model":
                out["last_hidden_state"], out["pooler_output"] = o.last_hidden_state.numpy(), o.pooler_output.numpy()
            else:
                out[head] = o.logits.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


def test_vilt_backbone_matches_transformers():
    folder, expected = _reference()
    backbone = km.Backbone.from_preset(folder / "model")
    assert type(backbone).__name__ == "ViltBackbone"
    out = backbone.predict_on_batch(_ours(_inputs()))
    mask = to_numpy(out["attention_mask"])
    assert mask.tolist() == [[1] * 12, [1, 1, 1, 1, 0, 0] + [1] * 5 + [0]]
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=mask, what="ViltModel last_hidden_state")
    assert_close(out["pooler_output"], expected["pooler_output"], what="ViltModel pooler_output")


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["vqa", "retrieval", "mlm", "nlvr2"])
def test_vilt_heads_match_transformers(head):
    folder, expected = _reference()
    task = {"vqa": km.VisualQuestionAnswerer, "retrieval": km.ImageTextMatcher, "mlm": km.MaskedLM,
            "nlvr2": km.models.ViltImagesAndTextClassifier}[head]
    model = task.from_preset(folder / head)
    assert model.head_from_checkpoint
    if head == "vqa":
        assert type(model.preprocessor.image_processor).__name__ == "ViltImageProcessor"
    inputs = _ours(_inputs(2 if head == "nlvr2" else 1))
    mask = inputs["attention_mask"] if head == "mlm" else None
    assert_close(model.predict_on_batch(inputs), expected[head], mask=mask, what=f"{HEADS[head]} logits")


def test_vilt_image_processor_matches_transformers():
    """ViltImageProcessor (shortest edge, size_divisor, padding and pixel_mask) from the checkpoint's
    preprocessor_config.json and with the class defaults."""
    from keras_models.models.vilt import ViltImageProcessor

    folder, expected = _reference()
    processor = ViltImageProcessor.from_preset(folder / "vqa")
    out = processor(_images())
    assert out["pixel_values"].shape == expected["processed"].transpose(0, 2, 3, 1).shape
    np.testing.assert_allclose(out["pixel_values"], expected["processed"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(out["pixel_mask"], expected["processed_mask"])
    out = ViltImageProcessor()(_images()[:1])
    np.testing.assert_allclose(out["pixel_values"], expected["processed_defaults"].transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_array_equal(out["pixel_mask"], expected["processed_defaults_mask"])


def test_vilt_reloads_in_transformers(tmp_path):
    """Our save_to_preset of the VQA and MLM (tied) models, reloaded by Transformers."""
    import torch
    import transformers as T

    folder, expected = _reference()
    inputs = {k: torch.tensor(v) for k, v in _inputs().items()}
    for head in ("vqa", "mlm"):
        task = km.VisualQuestionAnswerer if head == "vqa" else km.MaskedLM
        task.from_preset(folder / head).save_to_preset(tmp_path / head)
        hf = getattr(T, HEADS[head]).from_pretrained(tmp_path / head).eval()
        with torch.no_grad(), _first_patches():
            logits = hf(**inputs).logits.numpy()
        mask = _inputs()["attention_mask"] if head == "mlm" else None
        assert_close(logits, expected[head], mask=mask, what=f"reloaded {HEADS[head]}")


# --- VisualBERT ----------------------------------------------------------------------------------
# Odd options: gelu_new, eps 1e-7, three token types (visual ones set to 2 and 0), 12-wide region
# features, a masked text tail and a masked region.
VB_CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
                 hidden_act="gelu_new", layer_norm_eps=1e-7, max_position_embeddings=16, type_vocab_size=3,
                 visual_embedding_dim=12, num_labels=5)
VB_HEADS = {"model": "VisualBertModel", "vqa": "VisualBertForQuestionAnswering",
            "reasoning": "VisualBertForVisualReasoning"}


def _vb_inputs():
    rng = np.random.RandomState(7)
    return {"input_ids": np.array([[1, 5, 7, 9, 11, 2], [1, 9, 13, 2, 0, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
            "token_type_ids": np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]]),
            "visual_embeds": rng.randn(2, 3, 12).astype("float32"),
            "visual_attention_mask": np.array([[1, 1, 1], [1, 1, 0]]),
            "visual_token_type_ids": np.array([[2, 2, 1], [0, 2, 1]])}


def _vb_reference():
    src = inspect.getsource(inspect.getmodule(_vb_reference)) + inspect.getsource(randomize_weights)
    key = "visual_bert-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T

        out = {}
        inputs = {k: torch.tensor(v) for k, v in _vb_inputs().items()}
        for i, (head, arch) in enumerate(VB_HEADS.items()):
            torch.manual_seed(i)
            model = randomize_weights(getattr(T, arch)(T.VisualBertConfig(**VB_CONFIG)), seed=i).eval()
            model.save_pretrained(tmp / head)
            model = getattr(T, arch).from_pretrained(tmp / head).eval()
            with torch.no_grad():
                o = model(**inputs)
            out[head] = o.last_hidden_state.numpy() if head == "model" else o.logits.numpy()
        np.savez(tmp / "expected.npz", **out)

    folder = cached_folder(key, build)
    return folder, dict(np.load(folder / "expected.npz"))


@pytest.mark.one_case_per_pass("head")
@pytest.mark.parametrize("head", ["model", "vqa", "reasoning"])
def test_visual_bert_matches_transformers(head):
    folder, expected = _vb_reference()
    inputs = _vb_inputs()
    if head == "model":
        model = km.Backbone.from_preset(folder / head)
        assert type(model).__name__ == "VisualBertBackbone"
        mask = np.concatenate([inputs["attention_mask"], inputs["visual_attention_mask"]], axis=1)
    else:
        task = km.VisualQuestionAnswerer if head == "vqa" else km.models.VisualBertVisualReasoner
        model, mask = task.from_preset(folder / head), None
        assert model.head_from_checkpoint
    assert_close(model.predict_on_batch(inputs), expected[head], mask=mask, what=VB_HEADS[head])


def test_visual_bert_reloads_in_transformers(tmp_path):
    import torch
    import transformers as T

    folder, expected = _vb_reference()
    km.VisualQuestionAnswerer.from_preset(folder / "vqa").save_to_preset(tmp_path / "vqa")
    hf = T.VisualBertForQuestionAnswering.from_pretrained(tmp_path / "vqa").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in _vb_inputs().items()}).logits.numpy()
    assert_close(logits, expected["vqa"], what="reloaded VisualBertForQuestionAnswering")
