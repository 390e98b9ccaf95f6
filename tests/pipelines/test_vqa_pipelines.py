"""visual-question-answering (ViLT classifier, BLIP generative answers) and
document-question-answering (LayoutLM with user word boxes, Donut) against Transformers'
pipelines on the same tiny checkpoints. visual-question-answering was removed from Transformers 5:
its outputs were recorded once with Transformers 4.57.1
(tests/pipelines/removed_golden/record_vqa.py); document-question-answering is compared with
Transformers 5 live.

Pipeline post-processing is backend-independent, so these tests are marked
``backend_independent`` and run in the torch pass only (each model's numerics are covered by its
own parity tests on every backend).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from keras_models.pipelines import PipelineError
from tests.pipelines.refs import assert_same

pytestmark = pytest.mark.backend_independent
GOLDEN = Path(__file__).parent / "removed_golden"


def _vqa_case(name):
    recorded = json.loads((GOLDEN / "vqa.json").read_text())
    folder = GOLDEN / "vqa"

    def path(x):
        if isinstance(x, list):
            return [path(v) for v in x]
        if isinstance(x, dict):
            return dict(x, image=path(x["image"]))
        return str(folder / f"{x}.png")

    return folder, recorded, path


def test_vqa_vilt_matches_transformers_4():
    folder, recorded, path = _vqa_case("vilt")
    pipe = km.pipeline("visual-question-answering", model=folder / "vilt")
    assert type(pipe.model).__name__ == "ViltQuestionAnswerer"
    rec = recorded["vilt"]
    for (image, question, kwargs), theirs in zip(rec["calls"], rec["outputs"]):
        args = (path(image),) if question is None else (path(image), question)
        assert_same(pipe(*args, **kwargs), theirs, path=f"vqa vilt {question} {kwargs}")
    # batched (images of two sizes padded together with their pixel_mask), image= / question= keywords
    image, question, kwargs = rec["calls"][2]
    assert_same(pipe(image=path(image), question=question, batch_size=2, **kwargs), rec["outputs"][2])
    from PIL import Image

    assert_same(pipe(Image.open(path("img0")), "where is the cat?"), rec["outputs"][0])
    with pytest.raises(PipelineError, match="question"):
        pipe(path("img0"))
    with pytest.raises(PipelineError, match="top_k"):
        pipe(path("img0"), "the cat", top_k=0)
    with pytest.raises(PipelineError, match="'question'"):
        pipe([{"image": path("img0"), "question": ""}])


def test_vqa_blip_generates_as_transformers_4():
    folder, recorded, path = _vqa_case("blip")
    pipe = km.pipeline("vqa", model=folder / "blip", max_new_tokens=recorded["blip_new_tokens"])
    assert type(pipe.model).__name__ == "BlipQuestionAnswering"
    rec = recorded["blip"]
    assert len({json.dumps(o) for o in rec["outputs"]}) > 1  # the answers differ between inputs
    for (image, question, kwargs), theirs in zip(rec["calls"], rec["outputs"]):
        args = (path(image),) if question is None else (path(image), question)
        assert_same(pipe(*args, **kwargs), theirs, path=f"vqa blip {question} {kwargs}")
    with pytest.raises(PipelineError, match="max_new_tokens"):
        pipe(path("img0"), "the cat", max_new_tokens=2, generate_kwargs={"max_new_tokens": 3})


# --- document-question-answering (Transformers 5, live) -----------------------------------------------
DOC_WORDS = ["john", "lives", "in", "paris", "mary", "works", "at", "google", "the", "cat", "sat", "on", "mat",
             "berlin", "city", "hello"]


def _word_boxes(n=len(DOC_WORDS)):
    rng = np.random.RandomState(2)
    out = []
    for i in range(n):
        x0, y0 = rng.randint(0, 900, size=2)
        out.append((DOC_WORDS[i % len(DOC_WORDS)], [int(x0), int(y0), int(x0) + 40, int(y0) + 20]))
    return out


def _layoutlm():
    import transformers as T
    from tests.pipelines.refs import VOCAB

    cfg = T.LayoutLMConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=64, max_2d_position_embeddings=1024)
    return T.LayoutLMForQuestionAnswering(cfg)


def layoutlm_checkpoint():
    from tests.parity import hf_reference
    from tests.pipelines.refs import _tokenizer_saver

    inputs = {"input_ids": np.array([[2, 40, 41, 3]]), "attention_mask": np.ones((1, 4), "int64"),
              "bbox": np.array([[[0, 0, 0, 0], [10, 20, 30, 40], [50, 60, 70, 80], [1000] * 4]])}
    folder, _ = hf_reference("pipe-layoutlm-qa", _layoutlm, inputs, extra_save=_tokenizer_saver(32), seed=13)
    return folder


def test_document_qa_layoutlm_matches_transformers():
    from tests.pipelines.refs import hf_pipeline_outputs

    folder = layoutlm_checkpoint()
    boxes = _word_boxes()
    calls = [([None, "where does john live"], {"word_boxes": boxes}),
             ([None, "what is the city"], {"word_boxes": boxes, "top_k": 3, "max_answer_len": 2}),
             ([None, "who works at google?"], {"word_boxes": boxes, "top_k": 2, "handle_impossible_answer": True}),
             ([None, "the cat"], {"word_boxes": boxes[:5], "top_k": 4}),
             # a document longer than max_seq_len: windows overlapping by doc_stride
             ([None, "where"], {"word_boxes": _word_boxes(40), "top_k": 3, "max_seq_len": 24, "doc_stride": 8}),
             ([[{"image": None, "question": "who", "word_boxes": boxes},
                {"image": None, "question": "what city", "word_boxes": boxes[3:]}]], {"top_k": 2})]
    expected = hf_pipeline_outputs("document-question-answering", folder, calls)
    pipe = km.pipeline("document-question-answering", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"document-qa {args[1:]} {kwargs}")
    args, kwargs = calls[4]
    assert_same(pipe(*args, batch_size=3, **kwargs), expected[4])  # windows batched together
    with pytest.raises(PipelineError, match="pytesseract"):
        pipe(str(GOLDEN / "vqa" / "img0.png"), "where does john live")
    with pytest.raises(PipelineError, match="word_boxes"):
        pipe(None, "where", word_boxes=[("john", [1, 2, 3])])
    with pytest.raises(PipelineError, match="top_k"):
        pipe(None, "where", word_boxes=boxes, top_k=0)
    with pytest.raises(PipelineError, match="model_type"):
        type(pipe)(pipe.model, hf_config={"model_type": "bros"})


# --- document-question-answering with Donut (generative) --------------------------------------------
DONUT_TAGS = ["<s_docvqa>", "<s_question>", "</s_question>", "<s_answer>", "</s_answer>"]
DONUT_CALLS = [("img0", "where does john live", {}), ("img1", "what is the city", {}),
               ("img0", "who works at google?", {"top_k": 2}), ("img1", "hello", {})]
DONUT_NEW_TOKENS = 6


def _donut_tokenizer():
    import transformers as T
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tests.pipelines.refs import LM_TEXT

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"] + DONUT_TAGS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(LM_TEXT + [c for c, _, _ in DONUT_CALLS], trainer)
    return T.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
                                     unk_token="<unk>", additional_special_tokens=DONUT_TAGS, model_max_length=40)


def donut_checkpoint():
    """A tiny Donut (DonutSwin -> mBART decoder), its image processor and tokenizer, two images,
    and Transformers 5's document-question-answering outputs on DONUT_CALLS. The head's
    ``</s_answer>`` row is a scaled copy of the row of a token greedy decoding picks early, so the
    answers close within DONUT_NEW_TOKENS."""
    import hashlib
    import inspect

    from tests.multimodal.test_image_to_text import MBART, randomize
    from tests.parity import _versions, cached_folder

    src = inspect.getsource(_donut_tokenizer) + inspect.getsource(donut_checkpoint) + repr(DONUT_CALLS)
    key = "pipe-donut-docqa-" + hashlib.sha1((src + repr(_versions())).encode()).hexdigest()[:10]

    def build(tmp):
        import torch
        import transformers as T
        from PIL import Image

        torch.manual_seed(0)
        tok = _donut_tokenizer()
        enc = T.DonutSwinConfig(image_size=[32, 32], patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                window_size=4)
        dec = T.MBartConfig(**dict(MBART, vocab_size=len(tok)), tie_word_embeddings=False)
        cfg = T.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 0, 1, 2
        model = randomize(T.VisionEncoderDecoderModel(cfg)).eval()
        processor = T.DonutImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3])
        rng = np.random.RandomState(1)
        images = [Image.fromarray(rng.randint(0, 255, size=s + (3,), dtype=np.uint8)) for s in [(40, 26), (20, 36)]]
        prompt = tok(f"<s_docvqa><s_question>{DONUT_CALLS[0][1]}</s_question><s_answer>", add_special_tokens=False,
                     return_tensors="pt").input_ids
        with torch.no_grad():
            pixels = processor(images=images[:1], return_tensors="pt").pixel_values
            ids = model.generate(pixel_values=pixels, decoder_input_ids=prompt, max_new_tokens=DONUT_NEW_TOKENS,
                                 do_sample=False)
            head = model.decoder.lm_head.weight
            head[tok.convert_tokens_to_ids("</s_answer>")] = head[int(ids[0, prompt.shape[1] + 2])] * 1.5
        model.save_pretrained(tmp / "model")
        tok.save_pretrained(tmp / "model")
        processor.save_pretrained(tmp / "model")
        for i, im in enumerate(images):
            im.save(tmp / f"img{i}.png")
        pipe = T.pipeline("document-question-answering", model=str(tmp / "model"), device="cpu",
                          max_new_tokens=DONUT_NEW_TOKENS)
        out = [pipe(str(tmp / f"{name}.png"), question, **kw) for name, question, kw in DONUT_CALLS]
        (tmp / "out.json").write_text(json.dumps(out))

    folder = cached_folder(key, build)
    return folder, json.loads((folder / "out.json").read_text())


def test_document_qa_donut_matches_transformers():
    folder, expected = donut_checkpoint()
    assert any(e[0]["answer"] for e in expected) and len({e[0]["answer"] for e in expected}) > 1, expected
    pipe = km.pipeline("document-question-answering", model=folder / "model", max_new_tokens=DONUT_NEW_TOKENS)
    assert type(pipe.model).__name__ == "VisionEncoderDecoderImageToText"
    assert type(pipe.image_processor).__name__ == "DonutImageProcessor"
    for (name, question, kwargs), theirs in zip(DONUT_CALLS, expected):
        assert_same(pipe(str(folder / f"{name}.png"), question, **kwargs), theirs, path=f"donut {question}")
    items = [{"image": str(folder / f"{n}.png"), "question": q} for n, q, _ in DONUT_CALLS[:2]]
    assert_same(pipe(items, batch_size=2), expected[:2])
    with pytest.raises(PipelineError, match="image="):
        pipe(None, "where", word_boxes=_word_boxes())


@pytest.mark.parametrize("options", [{}, {"do_align_long_axis": True, "image_std": [0.2, 0.3, 0.4]},
                                     {"size": [20, 30], "do_pad": False, "resample": 3}])
def test_donut_image_processor_matches_transformers(options, tmp_path):
    """km's DonutImageProcessor (picked from preprocessor_config.json): align the long axis, resize
    the short side, thumbnail, pad centred -- Transformers' pixel_values, channels_last."""
    import transformers as T

    from keras_models.preprocessing.image import ImageProcessor

    T.DonutImageProcessorPil(**{"size": {"height": 32, "width": 24}, **options}).save_pretrained(tmp_path)
    hf = T.DonutImageProcessorPil.from_pretrained(tmp_path)
    ours = ImageProcessor.from_preset(tmp_path)
    assert type(ours).__name__ == "DonutImageProcessor"
    rng = np.random.RandomState(3)
    for shape in [(30, 44), (50, 20), (32, 24), (12, 10)]:
        image = rng.randint(0, 255, size=shape + (3,), dtype=np.uint8)
        theirs = hf(images=[image], return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
        np.testing.assert_allclose(ours([image])["pixel_values"][0], theirs, atol=1e-5, err_msg=str(shape))
