"""LayoutXLM: a LayoutLMv2-architecture checkpoint (model_type ``layoutlmv2``; the recorded tiny
LayoutLMv2 token-classification checkpoint of tests/models/layoutlmv2_golden) with LayoutXLM's
XLM-R tokenizer and LayoutLMv2's image processor. ``km.TokenClassifier.from_preset`` attaches the
LayoutXLMProcessor; page image + words + boxes -> ids / bbox / pixels equal to Transformers'
LayoutXLMProcessor (apply_ocr=False) -> the model, whose outputs equal its outputs on Transformers'
processor outputs. (The recorded LayoutLMv2 outputs cannot be reproduced through a processor: their
random ids have no </s> and non-zero boxes on <s>; the model's numerics are checked against them in
test_layoutlmv2.py.)"""

import shutil
from pathlib import Path

import numpy as np
import pytest
import transformers as T

import keras_models as km
from tests.parity import assert_close, jit_under_jax, to_numpy

GOLDEN = Path(__file__).parent / "layoutlmv2_golden"
PIECES = (["▁invoice", "▁total", "▁date", "▁due", "▁amount", "▁", "s", "al", "ed"]
          + list("abcdefghijklmnopqrstuvwxyz") + ["."])  # 4 + 36 + <mask>: ids < 50 (the model's vocab_size)
WORDS = [["Invoice", "totals", "dated", "due."], ["amount"]]
BOXES = [[[10, 20, 110, 40], [120, 20, 200, 40], [10, 50, 90, 70], [0, 0, 1000, 1000]], [[5, 6, 70, 80]]]


def layoutxlm_folder(tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "layoutxlm"
    folder.mkdir()
    shutil.copy(GOLDEN / "base_token" / "config.json", folder / "config.json")
    tensors = {f"layoutlmv2.{k}": v for k, v in load_file(GOLDEN / "base" / "model.safetensors").items()}
    tensors.update(load_file(GOLDEN / "base_token" / "head.safetensors"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -1.0 - 0.1 * i - (3.0 if len(p) == 1 else 0.0)) for i, p in enumerate(PIECES)] + [("<mask>", 0.0)]
    tokenizer = T.LayoutXLMTokenizer(vocab=vocab)
    tokenizer.save_pretrained(folder)
    image_processor = T.LayoutLMv2ImageProcessor(apply_ocr=False, size={"height": 64, "width": 64})
    image_processor.save_pretrained(folder)
    return folder, T.LayoutXLMProcessor(image_processor=image_processor, tokenizer=tokenizer)


def test_layoutxlm_processor_to_model(tmp_path):
    folder, hf = layoutxlm_folder(tmp_path)
    model = km.TokenClassifier.from_preset(folder)
    assert type(model).__name__ == "LayoutLMv2TokenClassifier" and model.head_from_checkpoint
    assert type(model.preprocessor).__name__ == "LayoutXLMProcessor"
    rng = np.random.RandomState(0)
    pages = [rng.randint(0, 256, (80, 60, 3)).astype("uint8"), rng.randint(0, 256, (64, 64, 3)).astype("uint8")]
    x = model.preprocessor(images=pages, words=WORDS, boxes=BOXES, padding=True)
    want = hf(pages, WORDS, boxes=BOXES, padding=True, return_tensors="np")
    assert sorted(x) == ["attention_mask", "bbox", "input_ids", "pixel_values"]
    for key in ("input_ids", "attention_mask", "bbox"):
        np.testing.assert_array_equal(x[key], want[key], err_msg=key)
    assert x["input_ids"].max() < 50 and (x["input_ids"] == 3).sum() < x["attention_mask"].sum() // 2
    np.testing.assert_array_equal(x["pixel_values"], want["image"].transpose(0, 2, 3, 1).astype("float32"))
    theirs = {"input_ids": want["input_ids"], "attention_mask": want["attention_mask"], "bbox": want["bbox"],
              "pixel_values": want["image"].transpose(0, 2, 3, 1).astype("float32")}
    run = jit_under_jax(lambda inputs: model(inputs))
    out = to_numpy(run(x))
    assert out.shape == (2, x["input_ids"].shape[1], 4) and np.isfinite(out).all()
    assert_close(out, to_numpy(run(theirs)), atol=0, mask=x["attention_mask"], what="layoutxlm processor -> model")


@pytest.mark.backend_independent  # host-side routing of raw samples (the model's numerics: the test above)
def test_layoutxlm_predict_and_fit_on_raw_pages(tmp_path):
    """``predict`` / ``fit`` take a list of page samples ``{"image", "words", "boxes"}`` and run them
    through the attached processor: the same logits as calling the model on the processor's output."""
    folder, _ = layoutxlm_folder(tmp_path)
    model = km.TokenClassifier.from_preset(folder)
    rng = np.random.RandomState(0)
    pages = [rng.randint(0, 256, (80, 60, 3)).astype("uint8"), rng.randint(0, 256, (64, 64, 3)).astype("uint8")]
    samples = [{"image": p, "words": w, "boxes": b} for p, w, b in zip(pages, WORDS, BOXES)]
    x = model.preprocessor(images=pages, words=WORDS, boxes=BOXES, padding=True)
    got = model.predict(samples, batch_size=2, verbose=0)
    assert_close(got, to_numpy(model(x)), atol=1e-5, mask=x["attention_mask"], what="layoutxlm predict(raw pages)")
    labels = [[i % 4 for i in range(len(w))] for w in WORDS]
    history = model.fit(samples, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
