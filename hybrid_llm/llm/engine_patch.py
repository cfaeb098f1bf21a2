"""Our change to llama.cpp's CPU kernels: a row of a batch gets the same logits as alone.

Speculative decoding checks several draft tokens in one batch and must give the answer plain
one-token decoding gives (issue 17). Three of llama.cpp's fast paths round a row differently in a
batch than alone, so without this patch the first two have to stay off (llama_cpp_backend's
BATCH_INVARIANT_SETTINGS), which costs speed, and batches stay below the third's 8 rows:
- On x86, repacked Q4_K weights are multiplied by a one-row `gemv` and a four-row `gemm`
  (ggml-cpu/arch/x86/repack.cpp). Both sum each 256-value block in integers, but `gemv` turns
  the whole block into one float multiply-add while `gemm` does one per 64 values (last bits
  apart, enough to flip a near-tie). GEMV_PER_SUBBLOCK makes `gemv` round per 64 values like
  `gemm`: the same operations, in the same order per output. (The four-row quantizer of the
  activations breaks a tie of +x and -x by sign where the one-row one takes the first; that only
  negates the scale and every quant, which rounds the same.)
- Flash attention over an F16 cache splits a single row's keys among threads once 512 tokens
  are cached and merges the partial softmaxes in another order than a batch row computed whole
  (ggml-cpu/ops.cpp). ATTENTION_ROW_WHOLE keeps a single row whole; its heads still run in parallel.
- K-quant weights that are not repacked (Q6_K on x86: the output layer, half of the value and
  down projections) go through a tiled kernel from 8 rows on (ggml-cpu/tiled), which sums in
  another order than the one-row dot product. TILED_AFTER_VERIFY_BATCH starts it after the
  largest batch speculative decoding verifies: prompt processing (64+ rows) keeps it, and a
  verified batch of 8-16 rows costs 2.9-4.4 one-token decodes (7 rows: 2.9).

The edits are applied to the sdist before compiling; `engine install` measures the result
(engine_check), and models load with repacked weights and an F16 cache only where batches proved
exact (llama_cpp_backend.kernel_settings).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hybrid_llm.llm.speculative import MAX_VERIFY_BATCH

REPACK_X86 = Path("vendor/llama.cpp/ggml/src/ggml-cpu/arch/x86/repack.cpp")


@dataclass(frozen=True)
class SourceEdit:
    """Replace `old` by `new` once, after `anchor` (the function it belongs to)."""

    path: Path
    anchor: str
    old: str
    new: str


GEMV_PER_SUBBLOCK = SourceEdit(
    REPACK_X86,
    anchor="void ggml_gemv_q4_K_8x8_q8_K(",
    old="""\
                    // Accumulate for the complete block
                    iacc_b = _mm256_add_epi32(iacc_b, iacc_sb);
                    iacc_min_b = _mm256_add_epi32(iacc_min_b, iacc_min_sb);
                }

                // Multiply-Add with scale values for the complete super block
                acc_row = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc_b), _mm256_mul_ps(col_scale_f32, row_scale_f32), acc_row);
                acc_min_rows = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc_min_b), _mm256_mul_ps(col_dmin_f32, row_scale_f32), acc_min_rows);
""",
    new="""\
                    // hybrid_llm: multiply-add per two sub blocks, as the 4-row gemm does, so a
                    // row computed alone and in a batch round the same way
                    acc_row = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc_sb), _mm256_mul_ps(col_scale_f32, row_scale_f32), acc_row);
                    acc_min_rows = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc_min_sb), _mm256_mul_ps(col_dmin_f32, row_scale_f32), acc_min_rows);
                    UNUSED(iacc_b);
                    UNUSED(iacc_min_b);
                }
""",
)

ATTENTION_ROW_WHOLE = SourceEdit(
    Path("vendor/llama.cpp/ggml/src/ggml-cpu/ops.cpp"),
    anchor="static void ggml_compute_forward_flash_attn_ext_f16(",
    old="""    const bool use_split_kv_path = !use_ref && (neq1 == 1 && neq3 == 1)""",
    new="""    // hybrid_llm: a single row's keys are not split among threads: a row of a batch is computed
    // whole, and merging partial softmaxes rounds otherwise. One row still runs its heads in parallel.
    const bool use_split_kv_path = false && !use_ref && (neq1 == 1 && neq3 == 1)""",
)

TILED_AFTER_VERIFY_BATCH = SourceEdit(
    Path("vendor/llama.cpp/ggml/src/ggml-cpu/tiled/tiled.cpp"),
    anchor="static bool ggml_tiled_min_batch(",
    old="    return rows >= 8 || ggml_tiled_matmul_forced();",
    new=("    // hybrid_llm: not for the batches speculative decoding verifies, whose rows must get the\n"
         "    // one-row kernel's sums\n"
         f"    return rows > {MAX_VERIFY_BATCH} || ggml_tiled_matmul_forced();"),
)

EDITS = (GEMV_PER_SUBBLOCK, ATTENTION_ROW_WHOLE, TILED_AFTER_VERIFY_BATCH)


class PatchError(RuntimeError):
    """The sdist is not the source the patch was written for."""


def patch_fingerprint() -> str:
    """Part of the engine wheel's cache key: another patch is another build."""
    text = "".join(edit.anchor + edit.old + edit.new for edit in EDITS)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def apply_edit(source: str, edit: SourceEdit) -> str:
    """`source` with the edit made inside the anchored function, nowhere else."""
    start = source.find(edit.anchor)
    if start < 0:
        raise PatchError(f"{edit.path}: {edit.anchor.rstrip('(')} not found")
    end = source.find("\n}\n", start)  # ggml closes a function at column 0
    at = source.find(edit.old, start, len(source) if end < 0 else end + len("\n}\n"))
    if at < 0:
        raise PatchError(f"{edit.path}: the code to change in {edit.anchor.rstrip('(')} is not there")
    return source[:at] + edit.new + source[at + len(edit.old):]


def patch_source_tree(root: Path) -> None:
    """Apply every edit to an unpacked llama-cpp-python sdist at `root`."""
    for edit in EDITS:
        path = root / edit.path
        if not path.is_file():
            raise PatchError(f"{edit.path} is missing from the source")
        path.write_text(apply_edit(path.read_text(encoding="utf-8"), edit), encoding="utf-8")
