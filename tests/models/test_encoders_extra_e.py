"""Efficient-attention text encoders (Nyströmformer, YOSO, Funnel Transformer, CANINE, BigBird): backbone and every head against tiny
random Transformers models, and a Transformers reload of ``save_to_preset``, through the shared
encoder harness (tests/models/test_encoders.py)."""

import numpy as np
import pytest

import keras_models as km
from tests.models.test_encoders import STD, SUFFIX, TINY, check_parity
from tests.parity import assert_close, hf_reference, text_inputs, to_numpy

# name -> (HF class prefix, config class, config kwargs, inputs kwargs, tasks)
SPECS = {
    # landmarks (8 tokens in 4 segments) + a 3-wide value convolution. Transformers 5 cannot mask
    # padding on this path (see keras_models/models/nystromformer), so the batch is unpadded.
    "nystromformer": ("Nystromformer", "NystromformerConfig",
                      dict(TINY, segment_means_seq_len=8, num_landmarks=4, conv_kernel_size=3, layer_norm_eps=1e-6,
                           pad_token_id=0),
                      dict(seq=8, pad_last=0), STD),
    # exact softmax (landmarks == segment length) with padding and a 5-wide convolution
    "nystromformer_full": ("Nystromformer", "NystromformerConfig",
                           dict(TINY, segment_means_seq_len=9, num_landmarks=9, conv_kernel_size=5,
                                hidden_act="relu", pad_token_id=0),
                           dict(), ("Backbone",)),
    # expectation attention (the CPU path) with a 3-wide convolution of the masked values
    "yoso": ("Yoso", "YosoConfig", dict(TINY, hash_code_len=5, conv_window=3, type_vocab_size=2, hidden_act="gelu_new",
                                        pad_token_id=0), dict(), STD),
    # relative_shift attention, max pooling of queries and keys, a repeated block, [CLS] kept apart
    # without truncation, a 1-layer upsampling decoder; [CLS] has token type 2
    "funnel": ("Funnel", "FunnelConfig",
               dict(vocab_size=99, d_model=16, n_head=2, d_head=6, d_inner=20, block_sizes=[1, 1],
                    block_repeats=[1, 2], num_decoder_layers=1, pooling_type="max", pool_q_only=False,
                    truncate_seq=False, hidden_act="relu", layer_norm_eps=1e-6),
               dict(seq=11, cls_type=True), STD + ("Discriminator",)),
    # factorized attention, mean pooling of the queries only, no separate [CLS]
    "funnel_factorized": ("Funnel", "FunnelConfig",
                          dict(vocab_size=99, d_model=16, n_head=4, d_head=4, d_inner=20, block_sizes=[1, 2],
                               num_decoder_layers=1, attention_type="factorized", separate_cls=False),
                          dict(seq=11), ("Backbone",)),
    # hashed code points (4 hashes, 50 buckets), local attention in chunks of 5, downsampling by 3
    # with a remainder, an even upsampling kernel (uneven padding), a padded batch
    "canine": ("Canine", "CanineConfig",
               dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                    max_position_embeddings=64, type_vocab_size=3, downsampling_rate=3, upsampling_kernel_size=4,
                    num_hash_functions=4, num_hash_buckets=50, local_transformer_stride=5, hidden_act="gelu_new"),
               dict(seq=14, pad_last=5, vocab=0x11000), ("Backbone", "TextClassifier", "TokenClassifier",
                                                         "QuestionAnswerer")),
    # block-sparse attention (17 tokens > (5 + 2 * 1) * 2, padded to 9 blocks of 2; Transformers'
    # inference random blocks), rescaled word embeddings, no q/k/v biases; a separator (id 2) ends
    # row 0's question for the QA head
    "big_bird": ("BigBird", "BigBirdConfig",
                 dict(TINY, use_bias=False, rescale_embeddings=True, block_size=2, num_random_blocks=1,
                      sep_token_id=2, layer_norm_eps=1e-6),
                 dict(seq=17, sep_at=3), STD),
}
CASES = [(spec, task) for spec, (*_, tasks) in SPECS.items() for task in tasks]


def _ref(spec, task):
    import transformers

    prefix, config_cls, kwargs, input_kwargs, _ = SPECS[spec]
    input_kwargs = dict(input_kwargs)
    cls_type = input_kwargs.pop("cls_type", False)
    sep_at = input_kwargs.pop("sep_at", None)
    inputs = text_inputs(pad_id=0, **input_kwargs)
    if cls_type:
        inputs["token_type_ids"][:, 0] = 2
    if sep_at is not None:
        inputs["input_ids"][0, sep_at] = 2

    def build():
        cfg = getattr(transformers, config_cls)(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
        return getattr(transformers, prefix + SUFFIX[task])(cfg)

    folder, expected = hf_reference(f"ence-{spec}-{task}", build, inputs)
    return folder, inputs, expected


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("spec,task", CASES)
def test_parity(spec, task):
    folder, inputs, expected = _ref(spec, task)
    if spec == "big_bird" and task == "QuestionAnswerer":  # question tokens are pushed down by 1e6
        out = km.QuestionAnswerer.from_preset(folder)(inputs)
        keep = inputs["attention_mask"].copy()
        keep[0, 1:4] = 0
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=keep, what=f"{spec} {k}")
            assert np.all(to_numpy(out[k])[0, 1:4] < -9e5)
        return
    cls = getattr(km.models, SPECS[spec][0] + "Discriminator") if task == "Discriminator" else None
    check_parity(SPECS[spec][0], spec, task, folder, inputs, expected, cls=cls)


@pytest.mark.parametrize("spec", ["nystromformer", "yoso", "funnel", "canine", "big_bird"])
def test_save_to_preset_reloads_in_transformers(spec, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _ref(spec, "Backbone")
    km.Backbone.from_preset(folder).save_to_preset(tmp_path / "saved")
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert type(model).__name__ == SPECS[spec][0] + "Model"
    missing = [k for k in info["missing_keys"] if "pooler" not in k]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        out = model.eval()(**{k: torch.tensor(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert_close(out, expected["last_hidden_state"], mask=inputs["attention_mask"], what=f"{spec} round trip")
    if spec == "canine":  # a CanineTokenizer folder (no tokenizer.json) loads a task without a preprocessor
        transformers.CanineTokenizer().save_pretrained(tmp_path / "saved")
        assert km.TokenClassifier.from_preset(tmp_path / "saved", num_classes=2).preprocessor is None
