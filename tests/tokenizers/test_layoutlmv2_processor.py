"""LayoutLMv2Processor / LayoutXLMProcessor (page image + the user's words and word boxes, no OCR)
against Transformers' processors built with ``LayoutLMv2ImageProcessor(apply_ocr=False)``:
input_ids, bbox, attention_mask, token_type_ids, labels and the pixels (Transformers' ``image``,
channels first; ours ``pixel_values``, channels_last), for a batch of two pages with different word
counts, word labels, truncation + max_length padding, the question + words (QA) form, a single page,
odd special boxes / image sizes, and LayoutXLM from tokenizer.json and from a lone
sentencepiece.bpe.model. Backend-independent (numpy + Pillow + tokenizers)."""

import shutil

import numpy as np
import pytest
import transformers as T
from tok_refs import ref_dir

from keras_models.errors import InputError
from keras_models.models.layout_encoders.layoutlmv2_processor import (LayoutLMv2Processor, LayoutXLMProcessor,
                                                                      layoutlmv2_processor)
from keras_models.presets.config import load_hf_config

# a tiny WordPiece vocabulary (ids < 50: the recorded LayoutLMv2 checkpoints' vocab_size)
WORDPIECE = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "invoice", "total", "date", "due", "amount", "what",
              "is", "the", "to", "##s", "##al", "##ed", "##e"] + list("abcdefghijklmnopqrstuvwxyz") + [".", ","])
# a tiny unigram vocabulary in fairseq's layout (<s> <pad> </s> <unk>, pieces, <mask>)
UNIGRAM_PIECES = (["▁invoice", "▁total", "▁date", "▁due", "▁amount", "▁what", "▁is", "▁the", "▁", "s", "al",
                   "ed"] + list("abcdefghijklmnopqrstuvwxyz") + ["é", "."])

WORDS = [["Invoice", "totals", "dated", "xyz", "due."], ["What", "amount"]]
BOXES = [[[10, 20, 110, 40], [120, 20, 200, 40], [10, 50, 90, 70], [100, 50, 180, 990], [0, 0, 1000, 1000]],
         [[5, 6, 70, 80], [300, 310, 420, 330]]]
LABELS = [[1, 2, 0, 3, 1], [2, 4]]
QUESTIONS = ["what is the total", "due date"]


def unigram_vocab():
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -1.0 - 0.1 * i - (3.0 if len(p) == 1 else 0.0)) for i, p in enumerate(UNIGRAM_PIECES)]
    return vocab + [("<mask>", 0.0)]


def images():
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, (50, 70, 3)).astype("uint8"), rng.randint(0, 256, (31, 29, 3)).astype("uint8")]


def build(folder, kind, odd=False):
    """A folder with Transformers' tokenizer + image processor files; (Transformers' processor, ours)."""
    folder.mkdir()
    boxes = dict(cls_token_box=[1, 2, 3, 4], sep_token_box=[5, 6, 7, 8], pad_token_box=[9, 9, 9, 9],
                 only_label_first_subword=False) if odd else {}
    if kind == "layoutlmv2":
        tok = T.LayoutLMv2Tokenizer(vocab={t: i for i, t in enumerate(WORDPIECE)}, do_lower_case=not odd, **boxes)
    elif kind == "layoutxlm":
        tok = T.LayoutXLMTokenizer(vocab=unigram_vocab(), **boxes)
    else:  # a lone sentencepiece.bpe.model (XLM-R's fairseq numbering), as Transformers converts it
        shutil.copy(ref_dir("xlmr_spm") / "sentencepiece.bpe.model", folder / "sentencepiece.bpe.model")
        (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "LayoutXLMTokenizer"}')
        tok = T.AutoTokenizer.from_pretrained(folder)
        assert type(tok).__name__ == "LayoutXLMTokenizer"
    if kind != "spm":
        tok.save_pretrained(folder)
    image_kw = dict(size={"height": 64, "width": 96}, resample=3) if odd else {}
    image_processor = T.LayoutLMv2ImageProcessor(apply_ocr=False, **image_kw)
    image_processor.save_pretrained(folder)
    cls = T.LayoutLMv2Processor if kind == "layoutlmv2" else T.LayoutXLMProcessor
    ours = layoutlmv2_processor(folder, load_hf_config(folder) if (folder / "config.json").is_file() else {})
    assert type(ours) is (LayoutLMv2Processor if kind == "layoutlmv2" else LayoutXLMProcessor)
    return cls(image_processor=image_processor, tokenizer=tok), ours


def check(want, got, types):
    for key in ("input_ids", "attention_mask", "bbox") + (("token_type_ids",) if types else ()) + (
            ("labels",) if "labels" in want else ()):
        np.testing.assert_array_equal(got[key], np.asarray(want[key]), err_msg=key)
    assert ("token_type_ids" in got) == types
    pixels = np.asarray(want["image"]).transpose(0, 2, 3, 1)
    assert got["pixel_values"].shape == pixels.shape
    np.testing.assert_array_equal(got["pixel_values"], pixels.astype("float32"))


CASES = [("layoutlmv2", False), ("layoutlmv2", True), ("layoutxlm", False), ("layoutxlm", True), ("spm", False)]


@pytest.mark.parametrize("kind,odd", CASES, ids=[f"{k}{'-odd' if o else ''}" for k, o in CASES])
def test_processor_matches_transformers(tmp_path, kind, odd):
    hf, ours = build(tmp_path / "m", kind, odd)
    types = kind == "layoutlmv2"
    ims = images()
    # a batch of two pages with different word counts, padded to the longest, with word labels
    want = hf(ims, WORDS, boxes=BOXES, word_labels=LABELS, padding=True, return_tensors="np")
    check(want, ours(images=ims, words=WORDS, boxes=BOXES, word_labels=LABELS, padding=True), types)
    # truncated and padded to a fixed length
    want = hf(ims, WORDS, boxes=BOXES, truncation=True, max_length=8, padding="max_length", return_tensors="np")
    check(want, ours(images=ims, words=WORDS, boxes=BOXES, truncation=True, max_length=8, padding="max_length"),
          types)
    # question + words (document QA): question tokens get the pad box, the pair the tokenizer's template
    want = hf(ims, QUESTIONS, WORDS, boxes=BOXES, padding=True, return_tensors="np")
    check(want, ours(images=ims, question=QUESTIONS, words=WORDS, boxes=BOXES, padding=True), types)
    want = hf(ims, QUESTIONS, WORDS, boxes=BOXES, padding="max_length", truncation="only_second", max_length=16,
              return_tensors="np")
    check(want, ours(images=ims, question=QUESTIONS, words=WORDS, boxes=BOXES, padding="max_length",
                     truncation="only_second", max_length=16), types)
    # one page, not batched
    want = hf(ims[1], WORDS[0], boxes=BOXES[0], word_labels=LABELS[0], return_tensors="np")
    check(want, ours(images=ims[1], words=WORDS[0], boxes=BOXES[0], word_labels=LABELS[0]), types)


def test_processor_task_form(tmp_path):
    """fit / predict samples ({"image", "words", "boxes"}) -> features, labels with weight 0 where
    Transformers puts -100."""
    hf, ours = build(tmp_path / "m", "layoutxlm")
    ims = images()
    samples = [{"image": im, "words": w, "boxes": b} for im, w, b in zip(ims, WORDS, BOXES)]
    want = hf(ims, WORDS, boxes=BOXES, word_labels=LABELS, padding=True, return_tensors="np")
    features, labels, weights = ours(samples, LABELS)
    check({k: v for k, v in want.items() if k != "labels"}, features, False)
    np.testing.assert_array_equal(weights, (want["labels"] != -100).astype("float32"))
    np.testing.assert_array_equal(labels, np.where(want["labels"] == -100, 0, want["labels"]))
    np.testing.assert_array_equal(ours.features([tuple(s.values()) for s in samples])["bbox"], features["bbox"])
    features, classes = ours(samples, [1, 0])
    assert classes.tolist() == [1, 0]
    with_q = ours([{**s, "question": q} for s, q in zip(samples, QUESTIONS)])
    want = hf(ims, QUESTIONS, WORDS, boxes=BOXES, padding=True, return_tensors="np")
    np.testing.assert_array_equal(with_q["bbox"], want["bbox"])


def test_processor_errors(tmp_path):
    _, ours = build(tmp_path / "m", "layoutlmv2")
    ims = images()
    with pytest.raises(InputError, match="boxes"):
        ours(images=ims, words=WORDS, boxes=[BOXES[0], BOXES[1][:1]])
    with pytest.raises(InputError, match="outside 0..1000"):
        ours(images=ims, words=WORDS, boxes=[BOXES[0], [[0, 0, 5, 1200], [0, 0, 1, 1]]])
    with pytest.raises(InputError, match="image"):
        ours([{"words": WORDS[0], "boxes": BOXES[0]}])
    with pytest.raises(InputError, match="images: 1 images for 2"):
        ours(images=ims[:1], words=WORDS, boxes=BOXES)
    with pytest.raises(InputError, match="labels"):
        ours(images=ims, words=WORDS, boxes=BOXES, word_labels=[LABELS[0], [1]])
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "m", bad)
    config = (bad / "tokenizer_config.json").read_text().replace('"sep_token_box": [', '"sep_token_box": [1, ')
    (bad / "tokenizer_config.json").write_text(config)
    from keras_models.errors import PresetError

    with pytest.raises(PresetError, match="sep_token_box"):
        layoutlmv2_processor(bad, {})
