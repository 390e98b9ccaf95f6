"""What the hand-written file readers buy, against the packages that could replace them.

1. safetensors: our streaming reader (keras_models.presets.safetensors_io.CheckpointReader) against
   the `safetensors` package (safetensors.numpy.load_file, and safe_open + get_tensor), loading
   every tensor of a ~512 MB float32 checkpoint into numpy arrays kept alive, as a model load does.
   Each reader runs in a fresh process; reported: wall time and peak RSS above the process's
   baseline, as a multiple of the weights' size.
2. SentencePiece .model files: our protobuf-free parser
   (keras_models.tokenizers.sentencepiece_model) against protobuf's generated ModelProto
   (sentencepiece.sentencepiece_model_pb2), and load_model (which uses protobuf's parser when the
   sentencepiece package is installed), on a trained 16k-piece model: parse time (median of 20)
   and equality of the pieces, scores and types.

Usage: python tools/bench/bench_readers.py [--mb 512]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOADERS = {  # name -> (imports, not timed; the load, timed)
    "keras_models CheckpointReader": (
        "from keras_models.presets.safetensors_io import CheckpointReader",
        "r = CheckpointReader(folder)\nout = {k: r.get(k) for k in r.keys()}\n"),
    "safetensors.numpy.load_file": (
        "from safetensors.numpy import load_file", "out = load_file(str(folder / 'model.safetensors'))\n"),
    "safetensors safe_open + get_tensor": (
        "from safetensors import safe_open",
        "with safe_open(str(folder / 'model.safetensors'), framework='np') as f:\n"
        "    out = {k: f.get_tensor(k) for k in f.keys()}\n"),
}

CHILD = """
import resource, sys, time
from pathlib import Path
import numpy as np
folder = Path(sys.argv[1])
{setup}
def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) / 1024
base = rss_mb()
t = time.perf_counter()
{code}
elapsed = time.perf_counter() - t
total = sum(v.nbytes for v in out.values()) / 2**20
print(elapsed, rss_mb() - base, total)
"""


def bench_safetensors(mb):
    import numpy as np

    from keras_models.presets.safetensors_io import save_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        n = max(1, mb // 16)
        save_file({f"layer_{i}.weight": rng.standard_normal((2048, 2048), dtype=np.float32) for i in range(n)},
                  folder / "model.safetensors")
        for name, (setup, code) in LOADERS.items():
            runs = []
            for _ in range(5):
                out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup, code=code), str(folder)],
                                     capture_output=True,
                                     text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
                runs.append([float(x) for x in out.stdout.split()])
            runs.sort()
            elapsed, peak, total = runs[2]  # the median run
            rows.append({"reader": name, "seconds": round(elapsed, 3), "peak_over_weights": round(peak / total, 2),
                         "weights_mb": round(total)})
    return rows


def bench_sentencepiece():
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    from keras_models.tokenizers.sentencepiece_model import load_model

    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np

        rng = np.random.default_rng(0)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(60000)]
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(" ".join(words[j:j + 12]) for j in range(0, len(words), 12)))
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(Path(tmp) / "m"), vocab_size=16000,
                                       model_type="unigram", minloglevel=2)
        data = (Path(tmp) / "m.model").read_bytes()
        path = Path(tmp) / "m.model"

        def timed(fn):
            times = []
            for _ in range(20):
                t = time.perf_counter()
                result = fn()
                times.append(time.perf_counter() - t)
            return sorted(times)[10], result

        from keras_models.tokenizers.sentencepiece_model import parse_model

        wire_t, wire = timed(lambda: parse_model(data, use_protobuf=False))
        ours_t, ours = timed(lambda: load_model(path))  # protobuf's parser when sentencepiece is installed

        def protobuf():
            m = sentencepiece_model_pb2.ModelProto()
            m.ParseFromString(data)
            return m

        pb_t, pb = timed(protobuf)
        same = ([(p.piece, round(p.score, 5), p.type) for p in ours.pieces]
                == [(p.piece, round(p.score, 5), p.type) for p in pb.pieces])
        import google.protobuf

        return [{"parser": "keras_models wire-format reader (no protobuf)", "ms": round(wire_t * 1e3, 2),
                 "pieces": len(wire.pieces), "equal_to_protobuf": same and wire == ours},
                {"parser": "keras_models load_model (protobuf's parser + conversion)", "ms": round(ours_t * 1e3, 2),
                 "pieces": len(ours.pieces)},
                {"parser": f"protobuf {google.protobuf.__version__} ModelProto "
                           f"({google.protobuf.internal.api_implementation.Type()})",
                 "ms": round(pb_t * 1e3, 2), "pieces": len(pb.pieces)}]


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    print(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(), "safetensors": bench_safetensors(args.mb),
                      "sentencepiece": bench_sentencepiece()}, indent=1))
