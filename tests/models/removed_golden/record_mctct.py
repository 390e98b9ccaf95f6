"""Records tests/models/removed_golden/mctct/ and mctct.npz (M-CTC-T, removed from Transformers 5)
with Transformers 4.57.1, as record.py does for the other removed rows:
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_mctct.py

MCTCTForCTC with odd options: two input channels of 6 features, a 5-wide stride-2 subsampling
convolution, four heads of 4, a distance table of max_position_embeddings 6
(shorter than the 12 subsampled frames, so far-apart frames get no relative term), gelu, eps 1e-6;
a batch whose second row is padded (attention_mask 0 after 15 of 23 frames)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from record import HERE, save  # noqa: E402


def main():
    from transformers import MCTCTConfig, MCTCTForCTC

    config = MCTCTConfig(vocab_size=20, hidden_size=16, num_hidden_layers=2, intermediate_size=20,
                         num_attention_heads=4, attention_head_dim=4, max_position_embeddings=6,
                         layer_norm_eps=1e-6, hidden_act="gelu", conv_kernel=[5], conv_stride=[2],
                         input_feat_per_channel=6, input_channels=2, pad_token_id=1, initializer_range=0.3)
    model = save(MCTCTForCTC, config, HERE / "mctct" / "SpeechRecognizer")
    rng = np.random.RandomState(0)
    feats = rng.randn(2, 23, 12).astype("float32")
    mask = np.ones((2, 23), "int64")
    mask[1, 15:] = 0
    feats[1, 15:] = 0.0
    with torch.no_grad():
        out = model(input_features=torch.tensor(feats), attention_mask=torch.tensor(mask), output_hidden_states=True)
        frames = model._get_feature_vector_attention_mask(out.logits.shape[1], torch.tensor(mask)).numpy()
    np.savez(HERE / "mctct.npz", in_input_features=feats, in_attention_mask=mask, frame_mask=frames,
             SpeechRecognizer__logits=out.logits.numpy(), SpeechRecognizer__hidden=out.hidden_states[-1].numpy())


if __name__ == "__main__":
    main()
