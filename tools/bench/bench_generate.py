"""Greedy decode throughput: keras_models ``generate`` vs Transformers ``generate``, in one run.

    KERAS_BACKEND=jax python tools/bench/bench_generate.py [--shapes gpt2,llama] [--batch 1,8]
        [--new-tokens 64] [--prompt 16] [--reps 3]

For each shape (GPT-2 small 124M; a ~110M Llama; ``qwen3_moe``: a Qwen3-MoE-shaped ~1B model, 64
experts, top 8), random weights are saved once with
Transformers, loaded with ``km.CausalLM.from_preset``, and both libraries decode the same
left-padded random prompts greedily for exactly ``--new-tokens`` tokens (no eos). Reported:
new tokens per second (batch * new tokens / seconds, best of ``--reps`` interleaved runs, each
started after ``--pause`` idle seconds, after one warm-up call that includes compilation), the ratio ours / Transformers, our first-call (compile) time, and
whether the generated ids agree. Transformers runs in eager PyTorch under ``torch.no_grad``
with its default (dynamic) cache, on the same machine and the same number of threads
(``--threads``, default: every CPU this process may run on; ``--threads 1`` for one core); the
process is pinned to that many CPUs, so every library gets the same cores.

``--dtype bfloat16`` (issue 21): Transformers loads the saved checkpoint with ``dtype=torch.bfloat16``
and ours with ``from_preset(dtype="bfloat16")``; both libraries' fp32 models decode in the same
interleaved rounds, and the row adds our fp32 and Transformers' fp32 tok/s, our bf16 / our fp32,
our bf16 / Transformers' fp32, and whether our bf16 ids equal Transformers' bf16 ids (bf16 rounding
may flip a near-tie, so a mismatch reports the share of equal ids).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = {
    "gpt2": dict(cls="GPT2LMHeadModel", cfg="GPT2Config", kwargs=dict(
        vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024, eos_token_id=None,
        bos_token_id=None, pad_token_id=0)),
    "llama": dict(cls="LlamaForCausalLM", cfg="LlamaConfig", kwargs=dict(
        vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=None, bos_token_id=None, pad_token_id=0)),
    # The issue-21 overhead proxy: a 2-layer Llama of hidden 64, where per-step Python dominates.
    "tiny": dict(cls="LlamaForCausalLM", cfg="LlamaConfig", kwargs=dict(
        vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512,
        tie_word_embeddings=False, eos_token_id=None, bos_token_id=None, pad_token_id=0)),
    # Qwen3-MoE-shaped, ~1.0B parameters in all, ~0.24B active per token: 64 experts, top 8.
    "qwen3_moe": dict(cls="Qwen3MoeForCausalLM", cfg="Qwen3MoeConfig", kwargs=dict(
        vocab_size=32000, hidden_size=1024, num_hidden_layers=12, num_attention_heads=16,
        num_key_value_heads=4, head_dim=64, intermediate_size=2816, moe_intermediate_size=384,
        num_experts=64, num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1,
        max_position_embeddings=2048, tie_word_embeddings=False, eos_token_id=None, bos_token_id=None,
        pad_token_id=0)),
}


def build(shape, folder):
    import torch
    import transformers

    spec = SHAPES[shape]
    path = Path(folder) / shape
    torch.manual_seed(0)
    model = getattr(transformers, spec["cls"])(getattr(transformers, spec["cfg"])(**spec["kwargs"])).eval()
    if not (path / "config.json").exists():
        model.save_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    return model, path, n_params


def prompts(batch, length, vocab, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab, size=(batch, length)).astype("int32")
    mask = np.ones_like(ids)
    for i in range(1, batch):  # ragged prompts, left-padded
        cut = rng.randint(0, length // 2)
        ids[i, :cut] = 0
        mask[i, :cut] = 0
    return {"input_ids": ids, "attention_mask": mask}


def best_time(fn, reps, pause=0.0):
    times = []
    out = None
    for _ in range(reps):
        time.sleep(pause)  # let the other library's worker threads go idle first
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="gpt2,llama")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for both libraries (default 0: all CPUs this process may use)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="idle seconds before each timed run, so that neither library starts while the "
                        "other's thread pool still spins (OpenMP workers busy-wait after a parallel region)")
    p.add_argument("--dtype", default="float32", help="bfloat16: both libraries in it, fp32 timed alongside")
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "km_bench_generate"))
    args = p.parse_args(argv)
    if args.threads <= 0:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.threads:  # before jax / tensorflow / torch start their thread pools
        # Pin the process to --threads CPUs: XLA's CPU runtime runs independent ops in parallel
        # whatever its Eigen flag says, so without pinning JAX would use more cores than torch.
        if hasattr(os, "sched_setaffinity"):
            cpus = sorted(os.sched_getaffinity(0))[: args.threads]
            os.sched_setaffinity(0, cpus)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                   + ("true" if args.threads > 1 else "false")).strip()
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(args.threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

    import keras
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import keras_models as km

    backend = keras.backend.backend()
    rows = []
    for shape in args.shapes.split(","):
        hf, path, n_params = build(shape, args.folder)
        try:
            ours = km.CausalLM.from_preset(path)
        except Exception as e:  # noqa: BLE001 - a family not implemented yet is reported, not fatal
            rows.append(f"| {shape} | - | n/a: {type(e).__name__}: {str(e)[:80]} | | | | |")
            continue
        low = None
        if args.dtype != "float32":  # (hf, ours) in the low dtype; the fp32 pair is timed alongside
            import transformers

            hf_low = getattr(transformers, SHAPES[shape]["cls"]).from_pretrained(
                path, dtype=getattr(torch, args.dtype)).eval()
            low = (hf_low, km.CausalLM.from_preset(path, dtype=args.dtype))
        vocab = SHAPES[shape]["kwargs"]["vocab_size"]
        for batch in (int(b) for b in args.batch.split(",")):
            inputs = prompts(batch, args.prompt, vocab)
            n = args.new_tokens
            tin = {k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}

            def run_hf():
                with torch.no_grad():
                    return hf.generate(**tin, max_new_tokens=n, do_sample=False).numpy()

            def run_ours():
                return ours.generate(inputs, max_new_tokens=n, do_sample=False)

            if low is not None:
                def run_hf_low():
                    with torch.no_grad():
                        return low[0].generate(**tin, max_new_tokens=n, do_sample=False).numpy()

                def run_ours_low():
                    return low[1].generate(inputs, max_new_tokens=n, do_sample=False)

                fns = {"hf": run_hf, "ours": run_ours, "hf_low": run_hf_low, "ours_low": run_ours_low}
                t0 = time.perf_counter()
                run_ours_low()
                first = time.perf_counter() - t0
                for f in fns.values():
                    f()
                best, res = {k: float("inf") for k in fns}, {}
                for _ in range(args.reps):
                    for k, f in fns.items():
                        t, res[k] = best_time(f, 1, args.pause)
                        best[k] = min(best[k], t)
                tps = {k: batch * n / t for k, t in best.items()}
                a, r = res["ours_low"], res["hf_low"]
                same = a.shape == r.shape and bool((a == r).all())
                agree = float((a[:, -n:] == r[:, -n:]).mean()) if a.shape == r.shape else 0.0
                same32 = bool((res["ours"] == res["hf"]).all())
                rows.append(f"| {shape} ({n_params / 1e6:.0f}M) | {batch} | {tps['ours_low']:.1f} | {tps['hf_low']:.1f} | "
                            f"{tps['ours_low'] / tps['hf_low']:.2f} | {tps['ours']:.1f} | {tps['hf']:.1f} | "
                            f"{tps['ours_low'] / tps['ours']:.2f} | {tps['ours_low'] / tps['hf']:.2f} | {first:.1f} | "
                            f"{'yes' if same else f'{agree:.0%} of ids'} | {'yes' if same32 else 'no'} |")
                print(rows[-1], flush=True)
                continue

            t0 = time.perf_counter()
            run_ours()
            first = time.perf_counter() - t0
            run_hf()
            t_hf, t_ours = float("inf"), float("inf")
            for _ in range(args.reps):  # interleaved, so that load on the machine hits both alike
                t, ref = best_time(run_hf, 1, args.pause)
                t_hf = min(t_hf, t)
                t, out = best_time(run_ours, 1, args.pause)
                t_ours = min(t_ours, t)
            same = out.shape == ref.shape and bool((out == ref).all())
            agree = float((out[:, -n:] == ref[:, -n:]).mean()) if out.shape == ref.shape else 0.0
            tps_hf, tps_ours = batch * n / t_hf, batch * n / t_ours
            rows.append(f"| {shape} ({n_params / 1e6:.0f}M) | {batch} | {tps_ours:.1f} | {tps_hf:.1f} | "
                        f"{tps_ours / tps_hf:.2f} | {first:.1f} | {'yes' if same else f'{agree:.0%} of ids'} |")
            print(rows[-1], flush=True)
    print(f"\nbackend={backend} threads={args.threads} cpus={os.cpu_count()} "
          f"pinned={sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'} "
          f"new_tokens={args.new_tokens} prompt={args.prompt} reps={args.reps} pause={args.pause} "
          f"dtype={args.dtype} load={os.getloadavg()[0]:.2f}")
    if args.dtype != "float32":
        d = args.dtype
        print(f"| shape | batch | ours {d} tok/s | HF {d} tok/s | x HF {d} | ours fp32 tok/s | HF fp32 tok/s | "
              f"ours {d}/fp32 | x HF fp32 | first call s | same ids as HF {d} | fp32 same ids |")
        print("|---|---:|" + "---:|" * 8 + "---|---|")
    else:
        print("| shape | batch | keras_models tok/s | transformers tok/s | ratio | first call s | same ids |")
        print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
