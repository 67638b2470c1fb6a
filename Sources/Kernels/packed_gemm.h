// What bf16_gemm.c and f32_gemm.c share: the blocking and loop nest of a packed GEMM in the style
// of BLIS and the update of a C tile. Include it inside a file's
// `#pragma clang attribute push(target(...))`, so its functions are compiled for that file's
// instructions; each file gives its own packing and micro-kernel (the always_inline loops let the
// compiler call them directly).
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
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/// The blocking of both kernels (float32 measured best with bf16's: MR 12 or 14 and KC 128 or
/// 256 ran the engine's products within 2%). Sizes in bfloat16 / float32.
enum {
    MR = 12,   // rows of the C tile: 24 accumulators + 2 of B + a broadcast, of 32 zmm
    NR = 32,   // columns of the C tile: two zmm of 16 float32
    KC = 256,  // k per block: a B micro-panel is KC·NR = 16 / 32 KB (L1 is 48 KB)
    MC = 96,   // rows per A block: MC·KC = 48 / 96 KB
    NC = 512,  // columns per B block: KC·NC = 256 / 512 KB (L2 is 1 MB)
};

/// This thread's packing buffers of `bytes` under `key` (whose destructor frees them), allocated
/// 64-byte aligned on the thread's first product; the engine runs one model replica per thread.
/// As static thread-local arrays (about 1 MB for both kernels) they would be carved out of every
/// thread's stack, whatever the thread.
static void *thread_buffers(pthread_key_t key, size_t bytes) {
    void *buffers = pthread_getspecific(key);
    if (buffers) return buffers;
    buffers = aligned_alloc(64, bytes);
    if (!buffers || pthread_setspecific(key, buffers) != 0) abort();
    return buffers;
}

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

/// The blocks of a B [k, n], in the order every product visits them: jc over n by NC, then pc
/// over k by KC.
#define FOR_EACH_B_BLOCK(k, n)                                                                       \
    for (int jc = 0, nc = (n) < NC ? (n) : NC; jc < (n); jc += NC, nc = (n) - jc < NC ? (n) - jc : NC) \
        for (int pc = 0, kc = (k) < KC ? (k) : KC; pc < (k); pc += KC, kc = (k) - pc < KC ? (k) - pc : KC)

/// C = beta · C (a product with k = 0), C not read when beta is 0.
static void scale_c(int m, int n, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(long)i * ldc + j] = beta == 0 ? 0 : beta * c[(long)i * ldc + j];
}

/// op(B) block (jc, pc): a B stored [n, k] moves along its rows, one stored [k, n] down them.
static const float *b_at(bool transpose_b, const float *b, int ldb, int jc, int pc) {
    return transpose_b ? b + (long)jc * ldb + pc : b + (long)pc * ldb + jc;
}

/// Packs A block rows [ic, ic + mc) x k [pc, pc + kc) of the operand `a` (the file's own type).
typedef void (*pack_a_block_function)(const void *a, int ic, int pc, int mc, int kc);
/// C tile [rows, columns] (at most MR x NR) = A micro-panel ir of the packed A block · B micro-panel
/// jr of `b_block` (kc values of k) + beta · C.
typedef void (*tile_function)(const void *a, int kc, int ir, int jr, const void *b_block, float beta, float *c, int ldc,
                              int rows, int columns);

/// C[m, nc] = op(A)[m, k range of the block] · (packed B block [kc, nc]) + beta · C: the ic, jr and ir loops.
static inline __attribute__((always_inline)) void for_each_tile(pack_a_block_function pack_a_block, tile_function tile,
                                                                const void *a, int m, int pc, int nc, int kc,
                                                                const void *b_block, float beta, float *c, int ldc) {
    for (int ic = 0; ic < m; ic += MC) {
        int mc = m - ic < MC ? m - ic : MC;
        pack_a_block(a, ic, pc, mc, kc);
        for (int jr = 0; jr < nc; jr += NR) {
            for (int ir = 0; ir < mc; ir += MR) {
                int rows = mc - ir < MR ? mc - ir : MR, columns = nc - jr < NR ? nc - jr : NR;
                tile(a, kc, ir, jr, b_block, beta, c + (long)(ic + ir) * ldc + jr, ldc, rows, columns);
            }
        }
    }
}

#endif
