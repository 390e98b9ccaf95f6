import logging
import os
import zlib

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# hermetic runs: no persistent JAX executables in the user's ~/.cache (tests/test_jax_cache.py covers it)
os.environ.setdefault("KERAS_MODELS_JAX_CACHE", "off")
# CI time: the jax pass spends most of its time in XLA:CPU compiles (one per eager op and shape, one
# per jitted step), not in running the tiny models. Unoptimised LLVM codegen and XLA's older
# (non-MLIR) fusion emitters compile several times faster: tests/models/test_decoders.py 84 s with
# the defaults, 62 s with the first flag, 42 s with both; the whole jax pass 74 -> 44 min on a Zen 3
# core. The computation is the same. (The second flag once made one compiled logits-processor chain
# drop a token Transformers keeps: typical-p compared a recomputed copy of its scores with a
# threshold taken from a sorted copy; it now decides on the sorted copy, as Transformers does.) Set
# XLA_FLAGS yourself to test with XLA's defaults.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")


def pytest_report_header(config):
    return f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"


def pytest_configure(config):
    # CI time, as for XLA_FLAGS above: Grappler's graph rewrites of each traced tf.function cost more
    # than the tiny graphs take to run (tests/models/test_decoders.py: 39 s -> 34 s). Kernels and
    # numerics are unchanged; KM_TEST_GRAPPLER=1 keeps TensorFlow's default.
    if os.environ["KERAS_BACKEND"] == "tensorflow" and os.environ.get("KM_TEST_GRAPPLER") != "1":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


@pytest.fixture
def backend():
    import keras

    return keras.backend.backend()


@pytest.fixture(autouse=True)
def _quiet_logs():
    logging.getLogger("keras_models").setLevel(logging.INFO)
    yield


# Tests whose results do not depend on KERAS_BACKEND, or that another pass already covers. Under
# tools/test.sh (KM_BACKEND_INDEPENDENT_ONCE=1) they run in the torch pass only, not three times;
# a test there marked ``all_backends`` still runs in every pass:
#  * tests/tokenizers/: pure numpy / Rust tokenizers;
#  * tests/cli/: subprocesses of the CLI (argument handling, output formats); the one test that
#    runs a model through ``--backend`` is marked all_backends;
#  * tests/video/test_video_processor.py: numpy + Pillow video preprocessing;
#  * tests/docs/: the docs' examples as a user runs them (the models' numerics are checked on
#    every backend by the parity tests);
#  * file-level safety of presets (journaled saves, refused tensors, shard paths) and the spec's
#    config.json handling;
#  * hub handle resolution (tests/presets/test_hub.py: which files and revisions are read) and the
#    demo (real MiniLM + a short fit: tests/presets/test_minilm_real.py and the fit tests check
#    those numerics on every backend). CI time: the demo alone took 73 s of the tensorflow pass;
#  * tests/test_distribution.py: a JAX subprocess on 8 virtual devices, whatever the pass's backend.
# A single test elsewhere (numpy post-processing of stored outputs, ...) is marked
# ``backend_independent`` for the same effect.
BACKEND_INDEPENDENT = ("tests/tokenizers/", "tests/cli/", "tests/docs/", "tests/presets/test_save_safety.py",
                       "tests/presets/test_checkpoint_safety.py", "tests/test_spec.py",
                       "tests/video/test_video_processor.py", "tests/presets/test_hub.py", "tests/test_demo.py",
                       "tests/test_distribution.py")


# Under tools/test.sh, two more kinds of test run in fewer passes (CI time: the suite runs three
# times on 2 cores):
#  * ``*_reloads_in_transformers`` tests (our save_to_preset output loaded by Transformers, outputs
#    compared) check the exported names, layouts and config.json, which no backend changes, and the
#    plain ``.keras`` round trips (``test_keras_save_load`` / ``test_keras_round_trip``: a config and
#    numpy weights written and read by Keras; the symbolic build that load_model runs is the one
#    every from_preset test runs in every pass): each runs in one of the two passes, jax or
#    tensorflow, chosen by a hash of its test id, so that the two share them (tensorflow 70 s and
#    jax 50 s for the round trips alone at stop 32); the round trips run in the torch pass too;
#  * tests marked ``one_case_per_pass("task")``: parametrisations that differ only in the named
#    parameter (a family's heads) share the backbone's computation, and a head's weight mapping is
#    backend-independent. The torch pass runs every case; the jax and tensorflow passes run one
#    case of each group, rotating through the parameter's values from group to group (the
#    tensorflow pass one case further on than jax), so that every head still runs under every
#    backend across the families.
ONCE_PASS = "tensorflow"


ONE_OF_TWO = ("test_keras_save_load", "test_keras_round_trip")  # and torch's pass, the cheapest


def _runs_in_pass(item, backend):
    """Whether a test shared between the jax and tensorflow passes (above) runs in ``backend``'s."""
    if "reloads_in_transformers" in item.originalname:
        return backend == _reload_pass(item)
    if item.originalname in ONE_OF_TWO:
        return backend in ("torch", _reload_pass(item))
    return True


def _reload_pass(item):
    """The pass (jax or tensorflow) that runs a ``*_reloads_in_transformers`` test."""
    return ("jax", "tensorflow")[zlib.crc32(item.nodeid.encode()) % 2]


def _one_case_per_group(items):
    """The items a jax/tensorflow pass drops for ``one_case_per_pass`` (see above)."""
    groups = {}
    for item in items:
        marker = item.get_closest_marker("one_case_per_pass")
        if marker is None or not hasattr(item, "callspec"):
            continue
        varied = marker.args[0]
        rest = tuple(sorted((k, repr(v)) for k, v in item.callspec.params.items() if k != varied))
        groups.setdefault((str(item.path), item.originalname, rest), []).append(item)
    # The two passes start the rotation one case apart, so that a group's cases are spread over
    # both rather than the same one running twice.
    shift = 1 if os.environ.get("KERAS_BACKEND") == ONCE_PASS else 0
    drop = []
    for i, members in enumerate(groups.values()):
        keep = members[(i + shift) % len(members)]
        drop.extend(m for m in members if m is not keep)
    return drop


def pytest_collection_modifyitems(config, items):
    backend = os.environ["KERAS_BACKEND"]
    once = bool(os.environ.get("KM_BACKEND_INDEPENDENT_ONCE"))
    drop = []
    for item in items if once else ():
        path = str(item.path.relative_to(config.rootpath)).replace(os.sep, "/")
        independent = (path.startswith(BACKEND_INDEPENDENT) and item.get_closest_marker("all_backends") is None
                       or item.get_closest_marker("backend_independent") is not None)
        if independent:
            if backend != "torch":
                drop.append(item)
        elif not _runs_in_pass(item, backend):
            drop.append(item)
    if once and backend != "torch":
        drop.extend(_one_case_per_group([i for i in items if i not in drop]))
    if drop:
        dropped = {id(i) for i in drop}
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if id(i) not in dropped]
