"""Records tests/pipelines/removed_golden/vqa/ (a tiny ViltForQuestionAnswering and a tiny
BlipForQuestionAnswering, each with a BERT WordPiece tokenizer and its image processor; two PNG
images) and vqa.json: the outputs of Transformers' "visual-question-answering" pipeline, which
Transformers 5 removed, recorded once with Transformers 4.57.1:
    PYTHONPATH=/tmp/tf4 python tests/pipelines/removed_golden/record_vqa.py
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("USE_TF", "0")  # Transformers 4 would import TensorFlow (Keras 3 here)
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))
from tests.parity import randomize_weights  # noqa: E402
from tests.pipelines.refs import VOCAB as _VOCAB  # noqa: E402

VOCAB = list(dict.fromkeys(_VOCAB))  # refs.VOCAB lists "##s" twice

ANSWERS = {0: "yes", 1: "no", 2: "cat", 3: "two", 4: "paris", 5: "red"}
BLIP_VOCAB = VOCAB + ["[DEC]", "[ENC]"]
# (image(s), question(s), kwargs); image names are PNGs in vqa/
VILT_CALLS = [("img0", "where is the cat?", {}),
              ("img1", "what city is this", {"top_k": 2}),
              (["img0", "img1"], "is the cat on the mat", {"top_k": 3}),
              ("img0", ["who lives in paris", "what is this"], {"top_k": 1}),
              ([{"image": "img1", "question": "hello world"}, {"image": "img0", "question": "the mat"}],
               None, {"top_k": 10})]
BLIP_CALLS = [("img0", "where is the cat?", {}),
              (["img0", "img1"], "what city is this", {}),
              ([{"image": "img1", "question": "hello world"}], None, {})]
BLIP_NEW_TOKENS = 4


def _perturb(model, scale=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def _tokenizer(folder, words, **kw):
    import transformers as T

    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = T.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=32, **kw)
    (folder / "vocab.txt").unlink()
    tok.save_pretrained(folder)


def main():
    import transformers as T
    from PIL import Image

    root = HERE / "vqa"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    rng = np.random.RandomState(0)
    for i, size in enumerate([(20, 28), (26, 18)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(root / f"img{i}.png")

    torch.manual_seed(0)
    vilt = T.ViltConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=32, image_size=32, patch_size=8,
                        num_labels=len(ANSWERS), id2label=ANSWERS, label2id={v: k for k, v in ANSWERS.items()})
    model = _perturb(T.ViltForQuestionAnswering(vilt))
    model.save_pretrained(root / "vilt", safe_serialization=True)
    _tokenizer(root / "vilt", VOCAB)
    T.ViltImageProcessor(size={"shortest_edge": 16}, size_divisor=8, image_mean=[0.5, 0.4, 0.3],
                         image_std=[0.2, 0.3, 0.4]).save_pretrained(root / "vilt")

    torch.manual_seed(1)
    text = dict(vocab_size=len(BLIP_VOCAB), hidden_size=32, intermediate_size=40, num_hidden_layers=1,
                num_attention_heads=4, max_position_embeddings=32, bos_token_id=len(VOCAB), eos_token_id=2,
                pad_token_id=0, sep_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=4, image_size=16,
                  patch_size=8)
    blip = T.BlipConfig(vision_config=vision, text_config=text, projection_dim=16, image_text_hidden_size=12)
    model = randomize_weights(T.BlipForQuestionAnswering(blip), seed=1).eval()
    model.save_pretrained(root / "blip", safe_serialization=True)
    _tokenizer(root / "blip", BLIP_VOCAB, bos_token="[DEC]", model_input_names=["input_ids", "attention_mask"])
    T.BlipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(root / "blip")

    def path(x):
        if isinstance(x, list):
            return [path(v) for v in x]
        if isinstance(x, dict):
            return dict(x, image=path(x["image"]))
        return str(root / f"{x}.png")

    out = {"transformers": T.__version__, "blip_new_tokens": BLIP_NEW_TOKENS}
    for name, calls, extra in (("vilt", VILT_CALLS, {}), ("blip", BLIP_CALLS, {"max_new_tokens": BLIP_NEW_TOKENS})):
        pipe = T.pipeline("visual-question-answering", model=str(root / name), device="cpu", **extra)
        results = []
        for image, question, kw in calls:
            args = (path(image),) if question is None else (path(image), question)
            results.append(pipe(*args, **kw))
        out[name] = {"calls": calls, "outputs": results}
    (HERE / "vqa.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out)[:3000])


if __name__ == "__main__":
    main()
