"""Records tests/pipelines/layoutlmv2_docqa_golden/ (the LayoutLMv2 reference of
tests/pipelines/test_doc_owl_pipelines.py): a tiny LayoutLMv2ForQuestionAnswering with its
LayoutLMv2 tokenizer (WordPiece, tests/pipelines/refs.py's vocabulary, a custom sep_token_box) and
image processor (OCR off), two page images, and Transformers 5.25's document-question-answering
pipeline calls and outputs (out.json: each call's image name, question and keyword arguments,
word_boxes included).

Transformers' LayoutLMv2 needs detectron2 for its visual backbone; it runs with the same
pure-Python detectron2 and torchvision stand-in as tests/models/layoutlmv2_golden/record.py (read
its docstring for the set-up), from the repository root:

    PYTHONPATH=/tmp/d2site:tests/models/layoutlmv2_golden/d2shim:. \\
        python tests/pipelines/layoutlmv2_docqa_golden/record.py
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from tests.models.layoutlmv2_golden.record import TEXT, _randomize, d2_args  # (imports the shim)
from tests.pipelines.refs import VOCAB

HERE = Path(__file__).parent
WORDS = ["john", "lives", "in", "paris", "mary", "works", "at", "google", "the", "cat", "sat", "on", "mat",
         "berlin", "city", "hello"]


def word_boxes(n=len(WORDS), seed=2):
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        x0, y0 = rng.randint(0, 900, size=2)
        out.append([WORDS[i % len(WORDS)], [int(x0), int(y0), int(x0) + 40, int(y0) + 20]])
    return out


# (image, question, keyword arguments); word_boxes "all", "head" (5) or "long" (40 words)
CALLS = [("img0", "where does john live", {}),
         ("img1", "what is the city", {"top_k": 3, "max_answer_len": 2}),
         ("img0", "who works at google?", {"top_k": 2, "handle_impossible_answer": True}),
         ("img1", "where", {"words": "long", "top_k": 3, "max_seq_len": 24, "doc_stride": 8})]


def boxes_for(kwargs):
    return word_boxes(40) if kwargs.get("words") == "long" else word_boxes()


def main():
    import transformers as T
    from PIL import Image

    folder = HERE / "model"
    if folder.exists():
        shutil.rmtree(folder)
    config = T.LayoutLMv2Config(**dict(TEXT, vocab_size=len(VOCAB)), image_feature_pool_shape=[3, 3, 8],
                                detectron2_config_args=d2_args())
    torch.manual_seed(0)
    model = _randomize(T.LayoutLMv2ForQuestionAnswering(config).eval())
    model.save_pretrained(folder, safe_serialization=True)
    tok = T.LayoutLMv2Tokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, model_max_length=48,
                                sep_token_box=[990, 991, 992, 993])
    tok.save_pretrained(folder)
    # the Pillow image processor: the torchvision stand-in would refuse the default one's resize
    images = T.LayoutLMv2ImageProcessorPil(apply_ocr=False, size={"height": 64, "width": 64})
    images.save_pretrained(folder)
    rng = np.random.RandomState(1)
    for i, size in enumerate([(70, 50), (40, 64)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(HERE / f"img{i}.png")
    pipe = T.pipeline("document-question-answering", model=str(folder), image_processor=images, device="cpu")
    calls, out = [], []
    for image, question, kwargs in CALLS:
        kw = dict({k: v for k, v in kwargs.items() if k != "words"}, word_boxes=boxes_for(kwargs))
        calls.append([image, question, kw])
        out.append(pipe(str(HERE / f"{image}.png"), question, **kw))
    (HERE / "out.json").write_text(json.dumps({"versions": {"transformers": T.__version__}, "calls": calls,
                                               "outputs": out}) + "\n")
    print(json.dumps(out)[:600])


if __name__ == "__main__":
    main()
