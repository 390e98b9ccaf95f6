"""Records tests/multimodal/tvlt_golden/ (the references of tests/multimodal/test_tvlt.py).

TVLT was removed from Transformers 5, so its outputs were recorded once with Transformers 4.57.1
(models/deprecated/tvlt):
    pip install --no-deps --target /tmp/tf4 transformers==4.57.1 huggingface_hub==0.36.0 tokenizers==0.22.1
    PYTHONPATH=/tmp/tf4 python tests/multimodal/tvlt_golden/record.py

``tvlt/``: a tiny seeded TvltForAudioVisualClassification checkpoint (config.json, model.safetensors,
preprocessor_config.json) with odd options: non-square image patches, 3 of 4 frames, 2 audio
channels, no qkv bias, mean pooling (no final norm), gelu_new, regression loss type.
``tvlt_base/``: a TvltModel with the defaults' final norm and qkv bias, a different hidden_act.
``tvlt.npz``: inputs (channels_last as our models take them: pixel_values (batch, frames, H, W, C),
audio_values (batch, time, freq, channels)) with padded masks, and the reference
``last_hidden_state`` / ``logits``, plus the processors' outputs (the image processor on uint8
frames of two videos of different lengths, the feature extractor on two waveforms of different
lengths; Transformers' channels-first layouts) and their inputs. Every float parameter is
re-drawn ~N(0, 1/fan_in) (tables N(0, 1), norms off 1 / 0) so attention is not uniform; outputs
are computed after reloading the saved files.
"""

import shutil
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
# tests/multimodal/test_tvlt.py builds our processor from the same settings
IMAGE_PROCESSOR_KWARGS = dict(size={"shortest_edge": 12}, crop_size={"height": 8, "width": 8}, patch_size=[4, 4],
                              num_frames=4, resample=3)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            parent = name.split(".")[-2] if "." in name else ""
            if name.endswith("bias") or "norm" in parent:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
            elif p.ndim >= 2 and not name.split(".")[-1].startswith(("type_embed", "temporal", "pos_embed",
                                                                         "freq_embed", "cls_embedding")):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=g))


def save(cls, config, name, seed):
    torch.manual_seed(seed)
    model = cls(config).eval()
    randomize(model, seed + 1)
    folder = HERE / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


def main():
    from transformers.models.deprecated.tvlt import (TvltConfig, TvltFeatureExtractor, TvltForAudioVisualClassification,
                                                     TvltImageProcessor, TvltModel, TvltProcessor)

    rng = np.random.RandomState(0)
    out = {}
    # --- classifier: odd options ---
    cfg = TvltConfig(image_size=8, image_patch_size=[4, 2], num_frames=4, num_image_channels=3,
                     spectrogram_length=16, frequency_length=8, audio_patch_size=[2, 4], num_audio_channels=2,
                     hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                     hidden_act="gelu_new", layer_norm_eps=1e-5, qkv_bias=False, use_mean_pooling=True,
                     num_labels=3, loss_type="regression")
    model = save(TvltForAudioVisualClassification, cfg, "tvlt", 0)
    # 3 frames (of 4), 12 time steps (of 16): frame 3 of item 1 and its last 4 time steps are padding
    px = rng.randn(2, 3, 8, 8, 3).astype("float32")
    au = rng.randn(2, 12, 8, 2).astype("float32")
    ppf = (8 // 4) * (8 // 2)  # patches per frame
    pixel_mask = np.ones((2, 3 * ppf), "float32")
    pixel_mask[1, 2 * ppf:] = 0
    audio_mask = np.ones((2, (12 // 2) * (8 // 4)), "float32")
    audio_mask[1, -4 * 2:] = 0
    with torch.no_grad():
        res = model(pixel_values=torch.from_numpy(px.transpose(0, 1, 4, 2, 3).copy()),
                    audio_values=torch.from_numpy(au.transpose(0, 3, 1, 2).copy()),
                    pixel_mask=torch.from_numpy(pixel_mask), audio_mask=torch.from_numpy(audio_mask),
                    output_hidden_states=True)
        base = model.tvlt(pixel_values=torch.from_numpy(px.transpose(0, 1, 4, 2, 3).copy()),
                          audio_values=torch.from_numpy(au.transpose(0, 3, 1, 2).copy()),
                          pixel_mask=torch.from_numpy(pixel_mask), audio_mask=torch.from_numpy(audio_mask))
    out.update(cls_pixel_values=px, cls_audio_values=au, cls_pixel_mask=pixel_mask, cls_audio_mask=audio_mask,
               cls_logits=res.logits.numpy(), cls_hidden=base.last_hidden_state.numpy())

    # --- base model: defaults' final norm, qkv bias, no masks ---
    cfg2 = TvltConfig(image_size=8, image_patch_size=[4, 4], num_frames=2, spectrogram_length=8,
                      frequency_length=8, audio_patch_size=[4, 4], hidden_size=16, num_hidden_layers=1,
                      num_attention_heads=4, intermediate_size=20, hidden_act="relu")
    base_model = save(TvltModel, cfg2, "tvlt_base", 10)
    px2 = rng.randn(2, 2, 8, 8, 3).astype("float32")
    au2 = rng.randn(2, 8, 8, 1).astype("float32")
    with torch.no_grad():
        r2 = base_model(pixel_values=torch.from_numpy(px2.transpose(0, 1, 4, 2, 3).copy()),
                        audio_values=torch.from_numpy(au2.transpose(0, 3, 1, 2).copy()))
    out.update(base_pixel_values=px2, base_audio_values=au2, base_hidden=r2.last_hidden_state.numpy())

    # --- processors ---
    # the image processor from keyword arguments (TvltProcessor.save_pretrained writes only the
    # feature extractor's settings to preprocessor_config.json: both parts read that one file)
    ip = TvltImageProcessor(**IMAGE_PROCESSOR_KWARGS)
    frames = rng.randint(0, 256, (2, 3, 10, 14, 3)).astype("uint8")
    ipo = ip([list(frames[0]), list(frames[1])], return_tensors="np")
    fe = TvltFeatureExtractor(spectrogram_length=16, feature_size=8, patch_size=[2, 4], sampling_rate=16000,
                              n_fft=256)  # hop = 16000 // 86 = 186 samples
    TvltProcessor(ip, fe).save_pretrained(HERE / "tvlt")
    fe = TvltFeatureExtractor.from_pretrained(HERE / "tvlt")  # as a user loads it
    waves = [rng.randn(1500).astype("float32") * 0.3, rng.randn(4500).astype("float32") * 0.1]
    feo = fe(waves, sampling_rate=16000, return_tensors="np")
    out.update(proc_frames=frames, proc_pixel_values=ipo["pixel_values"], proc_pixel_mask=ipo["pixel_mask"],
               proc_wave0=waves[0], proc_wave1=waves[1], proc_audio_values=feo["audio_values"],
               proc_audio_mask=feo["audio_mask"])
    np.savez(HERE / "tvlt.npz", **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
