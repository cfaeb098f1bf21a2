"""Our patch to llama.cpp's x86 Q4_K kernels (hybrid_llm/llm/engine_patch.py).

The patch is what lets speculative decoding verify drafts with repacked weights and still give
plain decoding's answer: a row multiplied in a batch of four or sixteen must get the bits it gets
alone.
The kernel test calls the installed engine's own kernels (exported by libggml-cpu) on random
weights and activations; the source tests check that a source the patch was not written for
is refused in one line rather than patched in the wrong place.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from hybrid_llm.llm.engine_build import cpu_flags
from hybrid_llm.llm.engine_patch import GEMV_PER_SUBBLOCK, PatchError, apply_edit, patch_source_tree

QK_K = 256
Q4_K_X8_BLOCK = 1152  # 8 interleaved Q4_K blocks: d[8], dmin[8] (f16), scales[96], qs[1024]
Q8_K_BLOCK = 292  # d (f32), qs[256], bsums[16] (i16)
Q8_K_X4_BLOCK = 1168  # 4 interleaved Q8_K blocks
QUANTIZE_4_ROWS = "_Z19ggml_quantize_mat_tILl8EL9ggml_type15EEvPKfPvll"  # ggml_quantize_mat_t<8, Q8_K>


def test_the_patch_changes_only_the_function_it_names():
    other = GEMV_PER_SUBBLOCK.old
    source = (f"void ggml_gemv_q4_K_8x8_q8_K(int n) {{\n{other}    store();\n}}\n\n"
              f"void ggml_gemv_q2_K_8x8_q8_K(int n) {{\n{other}    store();\n}}\n")
    patched = apply_edit(source, GEMV_PER_SUBBLOCK)
    first, second = patched.split("void ggml_gemv_q2_K_8x8_q8_K")
    assert GEMV_PER_SUBBLOCK.new in first and other not in first
    assert other in second, "the same lines in another kernel stay as they are"


def test_a_source_the_patch_was_not_written_for_is_refused(tmp_path: Path):
    with pytest.raises(PatchError, match="ggml_gemv_q4_K_8x8_q8_K.*not there"):
        apply_edit("void ggml_gemv_q4_K_8x8_q8_K(int n) {\n    /* rewritten upstream */\n}\n"
                   f"void ggml_gemv_q2_K_8x8_q8_K(int n) {{\n{GEMV_PER_SUBBLOCK.old}    store();\n}}\n",
                   GEMV_PER_SUBBLOCK)
    with pytest.raises(PatchError, match="missing from the source"):
        patch_source_tree(tmp_path)


def _engine_libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    llama_cpp = pytest.importorskip("llama_cpp", reason="the llama-cpp-python engine is not installed")
    lib = Path(llama_cpp.__file__).parent / "lib"
    try:
        base = ctypes.CDLL(str(next(lib.glob("libggml-base.*"))), mode=ctypes.RTLD_GLOBAL)
        cpu = ctypes.CDLL(str(next(lib.glob("libggml-cpu.*"))), mode=ctypes.RTLD_GLOBAL)
        for name in ("ggml_gemv_q4_K_8x8_q8_K", "ggml_gemm_q4_K_8x8_q8_K", QUANTIZE_4_ROWS):
            getattr(cpu, name)
    except (StopIteration, OSError, AttributeError) as exc:
        pytest.skip(f"this engine does not export the repacked Q4_K kernels ({exc})")
    return base, cpu


@pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="the patched kernels are the AVX2 ones")
@pytest.mark.parametrize("rows", [4, 16], ids=["four-row kernel", "sixteen-row kernel"])
def test_a_repacked_q4_k_row_gets_the_same_bits_alone_and_in_a_batch(rows: int):
    """The four-row kernel serves batches of 4-15 rows, the sixteen-row one batches of 16: both
    must round a row as the one-row kernel does (speculative decoding verifies up to 16 rows)."""
    base, cpu = _engine_libraries()
    pointer, size = ctypes.c_void_p, ctypes.c_int
    base.quantize_row_q8_K_ref.argtypes = [pointer, pointer, ctypes.c_int64]
    quantize_4_rows = getattr(cpu, QUANTIZE_4_ROWS)
    quantize_4_rows.argtypes = [pointer, pointer, ctypes.c_int64, ctypes.c_int64]
    gemv, gemm = cpu.ggml_gemv_q4_K_8x8_q8_K, cpu.ggml_gemm_q4_K_8x8_q8_K
    for kernel in (gemv, gemm):
        kernel.argtypes = [size, pointer, ctypes.c_size_t, pointer, pointer, size, size]

    rng = np.random.default_rng(17)
    n, outputs = 1536, 64  # the default model's hidden size; 8 groups of 8 repacked weight rows
    blocks = n // QK_K
    weights = rng.integers(0, 256, (outputs // 8, blocks, Q4_K_X8_BLOCK), dtype=np.uint8)
    scales = (rng.random((outputs // 8, blocks, 16)) * 0.01).astype(np.float16)
    weights[:, :, :32] = scales.view(np.uint8).reshape(outputs // 8, blocks, 32)  # sane d and dmin
    for _ in range(20):
        batch = (rng.standard_normal((rows, n)) * rng.choice([0.1, 1.0, 10.0], size=(rows, 1))).astype(np.float32)
        batch[:, rng.integers(0, n, 5)] *= 20  # the outliers real activations have
        alone = np.zeros((rows, outputs), np.float32)
        for row in range(rows):
            quantized = np.zeros(blocks * Q8_K_BLOCK, np.uint8)
            base.quantize_row_q8_K_ref(batch[row].ctypes.data, quantized.ctypes.data, n)
            gemv(n, alone[row].ctypes.data, outputs, weights.ctypes.data, quantized.ctypes.data, 1, outputs)
        quantized = np.zeros((rows // 4, blocks * Q8_K_X4_BLOCK), np.uint8)  # groups of 4 rows, one after another
        for group in range(rows // 4):
            quantize_4_rows(batch[group * 4:].ctypes.data, quantized[group].ctypes.data, 4, n)
        together = np.zeros((rows, outputs), np.float32)
        gemm(n, together.ctypes.data, outputs, weights.ctypes.data, quantized.ctypes.data, rows, outputs)
        assert np.array_equal(alone, together), f"a row in a batch of {rows} rounds otherwise than alone: is the patch in?"
