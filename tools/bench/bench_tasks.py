"""Task-level speed, keras-models vs Transformers, side by side in one run (issues 14, 16, 17).

    python tools/bench/bench_tasks.py whisper [--backends jax torch tensorflow] [--iters 3] [--scale 1.0]
    python tools/bench/bench_tasks.py wav2vec2 | features | llava | detr | sam

Workloads (random weights at the released models' shapes; ``--scale`` < 1 shrinks depths for a
quick check of the script itself):

* ``whisper``: Whisper-base shape (d_model 512, 6+6 layers, 8 heads, 80 mels, vocab 51865): log-mel
  features of 30 s of 16 kHz audio, then greedy transcription of ``--new-tokens`` tokens
  (``min_new_tokens`` set on both sides so neither stops early). Times extractor + generate.
* ``wav2vec2``: Wav2Vec2-base shape (conv feature encoder, 12 layers, 768 wide), CTC logits over
  10 s of audio, batch 1.
* ``features``: Whisper log-mel extraction alone (numpy, no model), 8 clips of 30 s: ours
  (``km.AudioFeatureExtractor``) against Transformers' ``WhisperFeatureExtractor``.
* ``llava``: a LLaVA-shaped model of about 1B parameters (CLIP ViT-B/16 tower at 224, 2-layer
  projector, a Llama decoder 2048 wide, 16 layers, GQA 16/4 heads): one image + a 32-token prompt,
  64 new greedy tokens, at ``--batch`` 1 and 4 (the issue's shape).
* ``detr``: DETR-ResNet-50 shape, batch 4 x 800 x 800 (with pixel mask), detection outputs.
* ``sam``: SAM ViT-B image encoder on one 1024 x 1024 image.
* ``musicgen``: MusicGen-small shape (T5-base text encoder, 24-layer 1024-wide decoder over 4
  codebooks of 2048, the 32 kHz EnCodec): 5 s of audio (``--new-tokens`` 256 steps at 50 Hz) for one
  12-token prompt, greedy with classifier-free guidance 3, decoded to a waveform.
* ``vits``: VITS / MMS-TTS shape (Transformers' VitsConfig defaults, noise scales 0 so both sides
  are deterministic): one sentence of 60 tokens to a waveform.

Each measurement runs in a fresh subprocess (one backend per process): load the saved folder, one
warm-up call (compiles under jax / tensorflow), then the best of ``--iters`` timed calls. Ours run
through the public task API (``generate``, ``predict_on_batch``, ``get_image_embeddings``);
Transformers runs eagerly under ``torch.inference_mode()``. Both use ``BENCH_THREADS`` threads
(default: all cores). Prints the CPU model (lscpu), seconds per call, the ratio against
Transformers (> 1: we are faster), and whether the outputs agree (same token ids, or max abs
difference of the float outputs).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

SR = 16000


# --------------------------------------------------------------------------- model builders

def _scaled(n, scale):
    return max(1, int(round(n * scale)))


def build_whisper(folder, scale):
    import transformers as T

    cfg = T.WhisperConfig(vocab_size=51865, d_model=512, encoder_layers=_scaled(6, scale),
                          decoder_layers=_scaled(6, scale), encoder_attention_heads=8, decoder_attention_heads=8,
                          encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80, max_source_positions=1500,
                          max_target_positions=448, decoder_start_token_id=50258, eos_token_id=50257,
                          pad_token_id=50257, bos_token_id=50257, suppress_tokens=None, begin_suppress_tokens=None)
    model = T.WhisperForConditionalGeneration(cfg)
    gen = model.generation_config
    gen.lang_to_id, gen.task_to_id = {"<|en|>": 50259}, {"translate": 50358, "transcribe": 50359}
    gen.no_timestamps_token_id, gen.is_multilingual = 50363, True
    gen._from_model_config = False  # else from_pretrained rebuilds it from config.json, dropping the above
    model.save_pretrained(folder)
    T.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def build_wav2vec2(folder, scale):
    import transformers as T

    cfg = T.Wav2Vec2Config(vocab_size=32, num_hidden_layers=_scaled(12, scale))
    T.Wav2Vec2ForCTC(cfg).save_pretrained(folder)
    T.Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(folder)


def build_llava(folder, scale):
    import transformers as T

    vision = T.CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=_scaled(12, scale),
                                num_attention_heads=12, image_size=224, patch_size=16, projection_dim=512)
    text = T.LlamaConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=_scaled(16, scale), num_attention_heads=16, num_key_value_heads=4,
                         max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg = T.LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000, image_seq_length=196,
                        vision_feature_layer=-2, vision_feature_select_strategy="default")
    T.LlavaForConditionalGeneration(cfg).save_pretrained(folder)


def build_detr(folder, scale):
    import transformers as T

    resnet = T.ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
                            out_features=["stage4"])
    cfg = T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone=None, backbone_config=resnet,
                       encoder_layers=_scaled(6, scale), decoder_layers=_scaled(6, scale), num_labels=91)
    T.DetrForObjectDetection(cfg).save_pretrained(folder)


def build_sam(folder, scale):
    import transformers as T

    vision = T.SamVisionConfig(num_hidden_layers=_scaled(12, scale),
                               global_attn_indexes=[i for i in (2, 5, 8, 11) if i < _scaled(12, scale)] or [0])
    model = T.SamModel(T.SamConfig(vision_config=vision))
    import torch

    with torch.no_grad():  # Transformers' SAM init leaves the neck at ~1e-10 (its embeddings ~1e-19)
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif name.endswith("weight"):
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.1)
    model.save_pretrained(folder)


def build_musicgen(folder, scale):
    import transformers as T

    text = T.T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=_scaled(12, scale), num_heads=12)
    codec = T.EncodecConfig(sampling_rate=32000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4], codebook_size=2048,
                            target_bandwidths=[2.2], num_filters=64, hidden_size=128, num_lstm_layers=2)
    decoder = T.MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=_scaled(24, scale),
                                      num_attention_heads=16, ffn_dim=4096, num_codebooks=4, pad_token_id=2048,
                                      bos_token_id=2048)
    cfg = T.MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=decoder)
    cfg.decoder_start_token_id, cfg.pad_token_id = 2048, 2048
    model = T.MusicgenForConditionalGeneration(cfg)
    model.generation_config.decoder_start_token_id = model.generation_config.pad_token_id = 2048
    model.generation_config._from_model_config = False
    model.save_pretrained(folder)


def build_vits(folder, scale):
    import transformers as T

    cfg = T.VitsConfig(num_hidden_layers=_scaled(6, scale), noise_scale=0.0, noise_scale_duration=0.0)
    T.VitsModel(cfg).save_pretrained(folder)


BUILDERS = {"whisper": build_whisper, "wav2vec2": build_wav2vec2, "features": None, "llava": build_llava,
            "detr": build_detr, "sam": build_sam, "musicgen": build_musicgen, "vits": build_vits}


# --------------------------------------------------------------------------- inputs

def _waves(seconds, n):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    return [(0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.shape)).astype("float32")
            for i in range(n)]


def _llava_inputs(batch):
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.ones((batch, 1), "int64"), np.full((batch, 196), 32000, "int64"),
                          rng.integers(3, 32000, size=(batch, 31))], axis=1)
    pixels = rng.standard_normal((batch, 224, 224, 3)).astype("float32")
    return ids, np.ones_like(ids), pixels


def _detr_inputs():
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((4, 800, 800, 3)).astype("float32")
    mask = np.ones((4, 800, 800), "int64")
    mask[1, 600:], mask[3, :, 500:] = 0, 0
    return pixels, mask


# --------------------------------------------------------------------------- one measurement (child)

def _runner(which, workload, folder, args):
    """A zero-argument function computing the workload once, returning a numpy result."""
    ours = which != "transformers"
    if ours:
        import keras_models as km
    else:
        import torch
        import transformers as T

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS") or os.cpu_count()))
    new = args.new_tokens

    if workload == "whisper":
        wave = _waves(30, 1)
        kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, language="en", task="transcribe")
        if ours:
            fe, model = km.AudioFeatureExtractor.from_preset(folder), km.Seq2SeqLM.from_preset(folder)

            def run():
                feats = np.asarray(fe(wave, sampling_rate=SR)["input_features"])
                return np.asarray(model.generate(feats, **kw))
        else:
            fe = T.WhisperFeatureExtractor.from_pretrained(folder)
            model = T.WhisperForConditionalGeneration.from_pretrained(folder).eval()

            def run():
                feats = fe(wave, sampling_rate=SR, return_tensors="pt")["input_features"]
                with torch.inference_mode():
                    return model.generate(feats, **kw).numpy()
        return run

    if workload == "features":
        waves = _waves(30, 8)
        if ours:
            fe = km.AudioFeatureExtractor.from_preset(folder)
            return lambda: np.asarray(fe(waves, sampling_rate=SR)["input_features"])
        fe = T.WhisperFeatureExtractor.from_pretrained(folder)
        return lambda: fe(waves, sampling_rate=SR, return_tensors="np")["input_features"]

    if workload == "wav2vec2":
        wave = _waves(10, 1)[0][None]
        if ours:
            model = km.SpeechRecognizer.from_preset(folder)
            return lambda: np.asarray(model.predict_on_batch({"input_values": wave}))
        model = T.Wav2Vec2ForCTC.from_pretrained(folder).eval()

        def run():
            with torch.inference_mode():
                return model(torch.tensor(wave)).logits.numpy()
        return run

    if workload == "llava":
        ids, mask, pixels = _llava_inputs(args.batch)
        kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=2)
        if ours:
            model = km.ImageTextToText.from_preset(folder)
            inputs = {"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32"), "pixel_values": pixels}
            return lambda: np.asarray(model.generate(inputs, **kw))
        model = T.LlavaForConditionalGeneration.from_pretrained(folder).eval()
        inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                  "pixel_values": torch.tensor(pixels).permute(0, 3, 1, 2)}

        def run():
            with torch.inference_mode():
                return model.generate(**inputs, **kw).numpy()
        return run

    if workload == "detr":
        pixels, mask = _detr_inputs()
        if ours:
            model = km.ObjectDetector.from_preset(folder)
            return lambda: np.asarray(model.predict_on_batch({"pixel_values": pixels, "pixel_mask": mask})["logits"])
        model = T.DetrForObjectDetection.from_pretrained(folder).eval()

        def run():
            with torch.inference_mode():
                return model(pixel_values=torch.tensor(pixels).permute(0, 3, 1, 2),
                             pixel_mask=torch.tensor(mask)).logits.numpy()
        return run

    if workload == "sam":
        pixels = np.random.default_rng(0).standard_normal((1, 1024, 1024, 3)).astype("float32")
        if ours:
            import keras

            model = km.MaskGenerator.from_preset(folder)
            encode = model.get_image_embeddings
            if keras.backend.backend() == "jax":
                import jax

                encode = jax.jit(lambda x: model.backbone.stateless_call(
                    model.backbone.trainable_variables, model.backbone.non_trainable_variables,
                    {"pixel_values": x})[0])
            return lambda: np.asarray(keras.ops.convert_to_numpy(encode(pixels)))
        model = T.SamModel.from_pretrained(folder).eval()

        def run():
            with torch.inference_mode():  # channels_last, as ours
                return model.get_image_embeddings(torch.tensor(pixels).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        return run
    if workload == "musicgen":
        ids = np.random.default_rng(0).integers(5, 32000, size=(1, 12))
        kw = dict(max_new_tokens=new, do_sample=False, guidance_scale=3.0)
        if ours:
            model = km.TextToAudio.from_preset(folder)
            inputs = {"input_ids": ids.astype("int32"), "attention_mask": np.ones_like(ids, "int32")}
            return lambda: np.squeeze(np.asarray(model.generate(inputs, **kw)))
        model = T.MusicgenForConditionalGeneration.from_pretrained(folder).eval()

        def run():
            with torch.inference_mode():
                return np.squeeze(model.generate(input_ids=torch.tensor(ids), **kw).numpy())
        return run

    if workload == "vits":
        ids = np.random.default_rng(0).integers(1, 38, size=(1, 60))
        if ours:
            import keras

            model = km.Backbone.from_preset(folder)
            return lambda: np.squeeze(keras.ops.convert_to_numpy(
                model.synthesize({"input_ids": ids.astype("int32")})["waveform"]))
        model = T.VitsModel.from_pretrained(folder).eval()

        def run():
            with torch.inference_mode():
                return np.squeeze(model(input_ids=torch.tensor(ids)).waveform.numpy())
        return run
    raise SystemExit(f"unknown workload {workload!r}")


def child(which, workload, folder, args):
    t = time.perf_counter()
    run = _runner(which, workload, folder, args)
    first = run()
    first_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(args.iters):
        t = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t)
    np.save(os.path.join(folder, f"out-{which}.npy"), out)
    print(json.dumps({"seconds": best, "load_and_first_s": first_s, "shape": list(np.shape(first))}))


# --------------------------------------------------------------------------- driver

def _error_text(stderr, limit=6000):
    """A failed child's stderr without progress bars (tqdm redraws with carriage returns, which filled
    the kept tail before): the traceback from its start, else the last ``limit`` characters. A child
    killed by a signal (e.g. the out-of-memory killer: exit -9) may have written no traceback."""
    lines = []
    for line in stderr.splitlines():
        line = line.rsplit("\r", 1)[-1]  # the last redraw of a progress line
        if line.strip() and not re.search(r"\d+%\|", line):
            lines.append(line)
    text = "\n".join(lines)
    start = text.rfind("Traceback (most recent call last)")
    if start >= 0:
        return text[start:][-limit:]
    return text[-limit:] or "(no stderr)"


def measure(which, workload, folder, args):
    env = dict(os.environ)
    if which != "transformers":
        env["KERAS_BACKEND"] = which
    cmd = [sys.executable, __file__, workload, "--child", which, "--folder", folder, "--iters", str(args.iters),
           "--new-tokens", str(args.new_tokens), "--batch", str(args.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{which} failed (exit {out.returncode}):\n{_error_text(out.stderr)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name"))
    except Exception:
        return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=sorted(BUILDERS))
    p.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0, help="depth scale (< 1: quick check of the script)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.workload, args.folder, args)
    with tempfile.TemporaryDirectory() as tmp:
        import torch

        torch.manual_seed(0)
        build = BUILDERS[args.workload]
        if build is None:  # features: only the extractor config
            import transformers

            transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp)
        else:
            build(tmp, args.scale)
        ref = measure("transformers", args.workload, tmp, args)
        expected = np.load(os.path.join(tmp, "out-transformers.npy"))
        rows = [("transformers (torch eager)", ref, "reference")]
        for backend in args.backends:
            r = measure(backend, args.workload, tmp, args)
            got = np.load(os.path.join(tmp, f"out-{backend}.npy"))
            if got.shape != expected.shape:
                agree = f"shape {got.shape} != {expected.shape}"
            elif got.dtype.kind in "iu":
                agree = "same ids" if np.array_equal(got, expected) else f"{np.mean(got != expected):.0%} ids differ"
            else:
                agree = f"max diff {np.max(np.abs(got.astype('float64') - expected)):.1e}"
            rows.append((f"keras_models ({backend})", r, agree))
    threads = os.environ.get("BENCH_THREADS") or os.cpu_count()
    print(f"{args.workload}: batch {args.batch}, scale {args.scale}, {threads} threads, CPU: {_cpu()}")
    print("| implementation | s per call (best of %d) | ratio vs transformers | load + first call s | outputs |"
          % args.iters)
    print("|---|---:|---:|---:|---|")
    for name, r, agree in rows:
        print(f"| {name} | {r['seconds']:.3f} | {ref['seconds'] / r['seconds']:.2f} | {r['load_and_first_s']:.1f} "
              f"| {agree} |")


if __name__ == "__main__":
    main()
