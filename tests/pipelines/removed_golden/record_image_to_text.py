"""Records tests/pipelines/removed_golden/image_to_text/ (a tiny VisionEncoderDecoder: ViT encoder ->
TrOCR decoder, a byte-level BPE tokenizer, a ViT image processor, two PNG images) and
image_to_text.json: the outputs of Transformers' "image-to-text" pipeline, which Transformers 5
removed, recorded once with Transformers 4.57.1:
    PYTHONPATH=/tmp/tf4 python tests/pipelines/removed_golden/record_image_to_text.py
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
from tests.pipelines.refs import _lm_tokenizer  # noqa: E402

CALLS = [("img0", {"max_new_tokens": 4}), (["img0", "img1"], {"max_new_tokens": 5}),
         ("img1", {"generate_kwargs": {"max_new_tokens": 3}})]


def main():
    import transformers as T
    from PIL import Image

    folder = HERE / "image_to_text"
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(0)
    encoder = T.ViTConfig(image_size=16, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32)
    decoder = T.TrOCRConfig(vocab_size=300, d_model=32, decoder_layers=1, decoder_attention_heads=2,
                            decoder_ffn_dim=40, max_position_embeddings=40, pad_token_id=1, bos_token_id=0,
                            eos_token_id=1, decoder_start_token_id=0, dropout=0.0)
    config = T.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 0, 1, 1
    model = T.VisionEncoderDecoderModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save_pretrained(folder / "model", safe_serialization=True)
    _lm_tokenizer(folder / "model", model)
    T.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder / "model")
    rng = np.random.RandomState(0)
    for i, size in enumerate([(20, 24), (16, 30)]):
        Image.fromarray(rng.randint(0, 255, size=size + (3,), dtype=np.uint8)).save(folder / f"img{i}.png")
    pipe = T.pipeline("image-to-text", model=str(folder / "model"), device="cpu")

    def path(x):
        return [path(v) for v in x] if isinstance(x, list) else str(folder / f"{x}.png")

    results = [pipe(path(arg), **kw) for arg, kw in CALLS]
    (HERE / "image_to_text.json").write_text(json.dumps({"calls": CALLS, "outputs": results,
                                                         "transformers": T.__version__}, indent=1))
    print(results)


if __name__ == "__main__":
    main()
