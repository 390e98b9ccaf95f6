"""Whisper-base greedy transcription (30 s, 64 new tokens) on jax, interleaved in one process: ours
with the cross-attention K/V filled once by the prefill (A, the default), ours with the shared
adapter's per-step cond (B, as KM_WHISPER_CROSS_KV_ONCE=0), Transformers (T). Process CPU time, best
of ITERS; ids checked equal. Random weights at bench_tasks.py's whisper shape (built in a temp folder
unless a saved folder is given).

    OMP_NUM_THREADS=1 taskset -c 0 python tools/bench/bench_whisper_ab.py [folder]
"""
import os, sys, time
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "/work/main/tools/bench")
from bench_tasks import _waves
import keras_models as km, transformers as T
from keras_models.tasks.seq2seq_generation import Seq2SeqDecoderAdapter
SR = 16000
if len(sys.argv) > 1:
    F = sys.argv[1]
else:
    import tempfile
    from bench_tasks import build_whisper
    torch.manual_seed(0)
    F = tempfile.mkdtemp()
    build_whisper(F, 1.0)
wave = _waves(30, 1)
kw = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, language="en", task="transcribe")
fe = km.AudioFeatureExtractor.from_preset(F)
A, B = km.Seq2SeqLM.from_preset(F), km.Seq2SeqLM.from_preset(F)
B.decoder_adapter = Seq2SeqDecoderAdapter
tfe = T.WhisperFeatureExtractor.from_pretrained(F); tm = T.WhisperForConditionalGeneration.from_pretrained(F).eval()
def ours(m):
    return np.asarray(m.generate(np.asarray(fe(wave, sampling_rate=SR)["input_features"]), **kw))
def theirs():
    feats = tfe(wave, sampling_rate=SR, return_tensors="pt")["input_features"]
    with torch.inference_mode():
        return tm.generate(feats, **kw).numpy()
a, b, t = ours(A), ours(B), theirs()
print("ids A==B", np.array_equal(a, b), "A==transformers", np.array_equal(a, t), a.shape)
fns = {"A": lambda: ours(A), "B": lambda: ours(B), "T": theirs}
best = {k: 1e9 for k in fns}
for i in range(int(os.environ.get("ITERS", 3))):
    for k, f in fns.items():
        s = time.process_time(); f(); best[k] = min(best[k], time.process_time() - s)
print({k: round(v, 3) for k, v in best.items()}, f"A/B {best['B']/best['A']:.3f}  T/A {best['T']/best['A']:.2f}x  T/B {best['T']/best['B']:.2f}x  load {os.getloadavg()}")
