// What bf16_gemm.c and f32_gemm.c share: the loop nest of a packed GEMM in the style of BLIS and the
// update of a C tile. Include it inside a file's `#pragma clang attribute push(target(...))`, so its
// functions are compiled for that file's instructions; each file gives its own packing and
// micro-kernel, and the always_inline nest lets the compiler call them directly.
//
// Loops, outermost first (blocking fixed, never a function of threads):
//   jc over n by NC      B block  [KC, NC], packed once per (jc, pc), lives in L2
//   pc over k by KC        (partial sums go through C in this fixed order)
//   ic over m by MC      A block  [MC, KC], packed once per (jc, pc, ic), lives in L2
//   jr over NC by NR     B micro-panel [KC, NR] stays in L1 while
//   ir over MC by MR       the micro-kernel sweeps the A micro-panels past it.
#ifndef PACKED_GEMM_H
#define PACKED_GEMM_H

#include <immintrin.h>
#include <stdbool.h>

static inline __mmask16 first_lanes(int count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count > 0 ? count : 0)) - 1);
}

/// One row of a C tile of 32 columns: row = acc + beta · row, only `lanes0`/`lanes1` of each half
/// written, the row not read when beta is 0.
static inline __attribute__((always_inline)) void update_tile_row(__m512 acc0, __m512 acc1, float beta, float *row,
                                                                  __mmask16 lanes0, __mmask16 lanes1) {
    if (beta != 0) {
        __m512 scale = _mm512_set1_ps(beta);
        acc0 = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(lanes0, row), acc0);
        acc1 = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(lanes1, row + 16), acc1);
    }
    _mm512_mask_storeu_ps(row, lanes0, acc0);
    _mm512_mask_storeu_ps(row + 16, lanes1, acc1);
}

/// The blocking of both kernels (float32 measured best with bf16's: MR 12 or 14 and KC 128 or
/// 256 ran the engine's products within 2%). Sizes in bfloat16 / float32 elements.
enum {
    MR = 12,   // rows of the C tile: 24 accumulators + 2 of B + a broadcast, of 32 zmm
    NR = 32,   // columns of the C tile: two zmm of 16 float32
    KC = 256,  // k per block: a B micro-panel is KC·NR = 16 / 32 KB (L1 is 48 KB)
    MC = 96,   // rows per A block: MC·KC = 48 / 96 KB
    NC = 512,  // columns per B block: KC·NC = 256 / 512 KB (L2 is 1 MB)
};

/// op(A) rows [0, mc) x k [0, kc) → packed A block; op(B) k [0, kc) x columns [0, nc) → packed B block.
typedef void (*packed_gemm_pack_a)(bool transposed, const float *a, int lda, int mc, int kc, void *packed);
typedef void (*packed_gemm_pack_b)(bool transposed, const float *b, int ldb, int kc, int nc, void *packed);
/// C tile [rows, columns] (at most MR x NR) = A micro-panel · B micro-panel (kc values of k) + beta · C.
typedef void (*packed_gemm_tile)(bool transposed_a, int kc, const void *a, const void *b, float beta, float *c, int ldc,
                                 int rows, int columns);

/// Row-major C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C (C not read when beta is 0), through
/// `packed_a` (MC·KC elements of element_size bytes; an A micro-panel is MR·KC) and `packed_b`
/// (KC·NC; a B micro-panel is NR times kc rounded up to k_step, the k the micro-kernel takes at once).
static inline __attribute__((always_inline)) void packed_gemm(
        int k_step, int element_size, packed_gemm_pack_a pack_a, packed_gemm_pack_b pack_b, packed_gemm_tile tile,
        void *packed_a, void *packed_b, bool transpose_a, bool transpose_b, int m, int n, int k,
        const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (k == 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(long)i * ldc + j] = beta == 0 ? 0 : beta * c[(long)i * ldc + j];
        return;
    }
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            int b_panel_bytes = (kc + k_step - 1) / k_step * k_step * NR * element_size;
            const float *b_block = transpose_b ? b + (long)jc * ldb + pc : b + (long)pc * ldb + jc;
            pack_b(transpose_b, b_block, ldb, kc, nc, packed_b);
            float block_beta = pc == 0 ? beta : 1;
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                const float *a_block = transpose_a ? a + (long)pc * lda + ic : a + (long)ic * lda + pc;
                pack_a(transpose_a, a_block, lda, mc, kc, packed_a);
                for (int jr = 0; jr < nc; jr += NR) {
                    for (int ir = 0; ir < mc; ir += MR) {
                        const char *panel_a = (const char *)packed_a + (long)ir * KC * element_size;
                        const char *panel_b = (const char *)packed_b + (long)(jr / NR) * b_panel_bytes;
                        float *c_tile = c + (long)(ic + ir) * ldc + jc + jr;
                        int rows = mc - ir < MR ? mc - ir : MR, columns = nc - jr < NR ? nc - jr : NR;
                        tile(transpose_a, kc, panel_a, panel_b, block_beta, c_tile, ldc, rows, columns);
                    }
                }
            }
        }
    }
}

#endif
