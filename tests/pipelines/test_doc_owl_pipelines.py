"""zero-shot-object-detection with OWLv2 (and its numpy image processor) and
document-question-answering with LayoutLMv3-style checkpoints, against Transformers 5's pipelines
and image processors on the same tiny checkpoints.

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.parity import hf_reference
from tests.pipelines.refs import VOCAB, _tokenizer_saver, assert_same, hf_pipeline_outputs

pytestmark = pytest.mark.backend_independent


# --- OWLv2 image processor ----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"size": {"height": 32, "width": 32}},
                                     {"size": {"height": 24, "width": 40}, "image_mean": [0.5, 0.4, 0.3]},
                                     {"size": {"height": 64, "width": 64}, "resample": 0},
                                     {"size": {"height": 30, "width": 30}, "do_pad": False}])
def test_owlv2_image_processor_matches_transformers(options, tmp_path):
    """Pad to a square, Gaussian anti-aliasing + linear zoom (scipy's, mirrored edges), normalise:
    Transformers' pixel_values (channels last) for shrinking, enlarging and non-square sizes."""
    import transformers as T

    from keras_models.preprocessing.image import ImageProcessor

    T.Owlv2ImageProcessor(**options).save_pretrained(tmp_path)
    hf = T.AutoImageProcessor.from_pretrained(tmp_path)
    ours = ImageProcessor.from_preset(tmp_path)
    assert type(ours).__name__ == "Owlv2ImageProcessor"
    rng = np.random.RandomState(3)
    for shape in [(40, 56), (30, 30), (57, 13), (7, 5), (100, 120)]:
        image = rng.randint(0, 255, size=shape + (3,), dtype=np.uint8)
        theirs = hf(images=[image], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        np.testing.assert_allclose(ours([image])["pixel_values"][0], theirs, atol=1e-5, err_msg=str(shape))


# --- zero-shot-object-detection (OWLv2) ----------------------------------------------------------------
def _owlv2():
    import transformers as T

    text = dict(vocab_size=len(VOCAB) + 8, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return T.Owlv2ForObjectDetection(T.Owlv2Config(text_config=text, vision_config=vision, projection_dim=16))


def _owlv2_extras(folder, model):
    import transformers as T
    from PIL import Image

    _tokenizer_saver(16)(folder, model)
    T.Owlv2ImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    rng = np.random.RandomState(0)
    for i, size in enumerate([(40, 56), (50, 30)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(folder / f"img{i}.png")


def owlv2_checkpoint():
    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64"),
              "pixel_values": np.zeros((1, 3, 32, 32), "float32")}
    folder, _ = hf_reference("pipe-owlv2", _owlv2, inputs, extra_save=_owlv2_extras, seed=11)
    return folder


def test_zero_shot_object_detection_owlv2_matches_transformers():
    folder = owlv2_checkpoint()
    imgs = [str(folder / "img0.png"), str(folder / "img1.png")]
    calls = [([imgs[0]], {"candidate_labels": ["cat", "dog"]}),
             ([imgs[1]], {"candidate_labels": "cat,the mat,paris", "threshold": 0.3, "top_k": 5}),
             ([imgs[1]], {"candidate_labels": ["hello world"], "threshold": 0.0, "top_k": 4})]
    expected = hf_pipeline_outputs("zero-shot-object-detection", folder, calls)
    assert any(len(e) > 0 for e in expected[:2])
    pipe = km.pipeline("zero-shot-object-detection", model=folder)
    assert type(pipe.image_processor).__name__ == "Owlv2ImageProcessor"
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"zero-shot-object-detection owlv2 {kwargs}")
    with pytest.raises(PipelineError, match="Owlv2ImageProcessor"):
        from keras_models.preprocessing.image import ImageProcessor

        pipe.model.preprocessor.image_processor = ImageProcessor(image_processor_type="OwlViTImageProcessor")
        type(pipe)(pipe.model)


# --- document-question-answering: LayoutLMv3 (Transformers 5, live) ------------------------------------
DOC_WORDS = ["john", "lives", "in", "paris", "mary", "works", "at", "google", "the", "cat", "sat", "on", "mat",
             "berlin", "city", "hello"]


def _word_boxes(n=len(DOC_WORDS)):
    rng = np.random.RandomState(2)
    out = []
    for i in range(n):
        x0, y0 = rng.randint(0, 900, size=2)
        out.append((DOC_WORDS[i % len(DOC_WORDS)], [int(x0), int(y0), int(x0) + 40, int(y0) + 20]))
    return out


def _layoutlmv3():
    import transformers as T

    cfg = T.LayoutLMv3Config(vocab_size=130, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=20, max_position_embeddings=80, type_vocab_size=1, pad_token_id=1,
                             coordinate_size=4, shape_size=4, max_2d_position_embeddings=1024, rel_pos_bins=8,
                             max_rel_pos=20, rel_2d_pos_bins=16, max_rel_2d_pos=40, input_size=16, patch_size=8)
    return T.LayoutLMv3ForQuestionAnswering(cfg)


def _layoutlmv3_extras(folder, model):
    """A byte-level BPE LayoutLMv3 tokenizer (a custom [SEP] box), an image processor without OCR, a page."""
    import transformers as T
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=130, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  show_progress=False)
    tok.train_from_iterator([" ".join(DOC_WORDS), "where does john live what is the city who works at google"] * 5,
                            trainer)
    tok.model.save(str(folder))
    T.LayoutLMv3Tokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=48,
                          sep_token_box=[7, 7, 9, 9]).save_pretrained(folder)
    T.LayoutLMv3ImageProcessor(apply_ocr=False, size={"height": 16, "width": 16}).save_pretrained(folder)
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "img0.png")


def layoutlmv3_checkpoint():
    inputs = {"input_ids": np.array([[0, 40, 41, 2]]), "attention_mask": np.ones((1, 4), "int64"),
              "bbox": np.array([[[0, 0, 0, 0], [10, 20, 30, 40], [50, 60, 70, 80], [0] * 4]])}
    folder, _ = hf_reference("pipe-layoutlmv3-qa", _layoutlmv3, inputs, extra_save=_layoutlmv3_extras, seed=13)
    return folder


def test_document_qa_layoutlmv3_matches_transformers():
    """The tokenizer places the boxes (question tokens: pad_token_box; </s>: sep_token_box). Transformers
    5.25's pipeline hands the page image to LayoutLMv3 as ``image=``, which the model ignores (it reads
    ``pixel_values``): its answers are the text-only ones, with or without an image, and so are ours."""
    folder = layoutlmv3_checkpoint()
    boxes = _word_boxes()
    page = str(folder / "img0.png")
    calls = [([None, "where does john live"], {"word_boxes": boxes}),
             ([page, "what is the city"], {"word_boxes": boxes, "top_k": 3, "max_answer_len": 2}),
             ([None, "who works at google?"], {"word_boxes": boxes, "top_k": 2, "handle_impossible_answer": True}),
             ([None, "where"], {"word_boxes": _word_boxes(40), "top_k": 3, "max_seq_len": 24, "doc_stride": 8}),
             ([[{"image": None, "question": "who", "word_boxes": boxes},
                {"image": page, "question": "what city", "word_boxes": boxes[3:]}]], {"top_k": 2})]
    expected = hf_pipeline_outputs("document-question-answering", folder, calls)
    pipe = km.pipeline("document-question-answering", model=folder)
    assert type(pipe.model).__name__ == "LayoutLMv3QuestionAnswerer"
    assert pipe.special_boxes["sep"] == [7, 7, 9, 9]
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"document-qa v3 {args[1:]} {kwargs}")
    args, kwargs = calls[3]
    assert_same(pipe(*args, batch_size=3, **kwargs), expected[3])  # windows batched together
    with pytest.raises(PipelineError, match="pytesseract"):
        pipe(page, "where does john live")


# --- document-question-answering: LayoutLMv2 (recorded: Transformers' LayoutLMv2 needs detectron2) -----
def test_document_qa_layoutlmv2_matches_transformers_recording():
    """Words, boxes and the page image (BGR, 0-255, the model's ResNet-FPN) against Transformers 5.25's
    pipeline, recorded with tests/pipelines/layoutlmv2_docqa_golden/record.py."""
    import json
    from pathlib import Path

    here = Path(__file__).parent / "layoutlmv2_docqa_golden"
    recorded = json.loads((here / "out.json").read_text())
    pipe = km.pipeline("document-question-answering", model=here / "model")
    assert type(pipe.model).__name__ == "LayoutLMv2QuestionAnswerer"
    assert pipe.special_boxes["sep"] == [990, 991, 992, 993]
    for (image, question, kwargs), theirs in zip(recorded["calls"], recorded["outputs"]):  # windows batched
        assert_same(pipe(str(here / f"{image}.png"), question, batch_size=8, **kwargs), theirs,
                    path=f"document-qa v2 {question}")
    with pytest.raises(PipelineError, match="image="):
        pipe(None, "where", word_boxes=recorded["calls"][0][2]["word_boxes"])


# --- document-question-answering: Pix2Struct DocVQA is refused ------------------------------------------
def test_document_qa_refuses_pix2struct():
    """Transformers' document-question-answering pipeline has no Pix2Struct path (it loads the model
    with a warning, then its image processor fails: the question never arrives as header_text), so
    there is nothing to match: ours refuses at construction and says how to call the model."""
    from tests.multimodal.test_pix2struct import PROCESSOR, TEXT, VISION, _tokenizer
    from tests.parity import _key, cached_folder

    def build(tmp):
        import transformers as T
        from transformers.models.pix2struct.image_processing_pil_pix2struct import Pix2StructImageProcessorPil

        cfg = T.Pix2StructConfig(text_config=TEXT, vision_config=VISION, is_vqa=True)
        T.Pix2StructForConditionalGeneration(cfg).save_pretrained(tmp / "model")
        Pix2StructImageProcessorPil(**PROCESSOR, is_vqa=True).save_pretrained(tmp / "model")
        _tokenizer().save_pretrained(tmp / "model")

    folder = cached_folder(_key("pipe-pix2struct-docvqa", repr(TEXT), repr(VISION), repr(PROCESSOR)), build)
    with pytest.raises(PipelineError, match="header_text"):
        km.pipeline("document-question-answering", model=folder / "model")
