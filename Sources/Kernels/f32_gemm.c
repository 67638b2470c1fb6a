// A packed float32 GEMM on AVX-512 FMA, with the loop nest of bf16_gemm (packed_gemm.h) and a
// register-blocked micro-kernel: an MR x NR tile of C in 2·MR zmm accumulators; per k it loads two
// zmm of B (32 columns) and broadcasts one value of A per row into an FMA.
//
// Packed layouts (float32, zero-padded to whole tiles):
//   A micro-panel: MR rows x KC values, either row-major (row r, k p at r·KC + p), a plain copy of
//                  the rows of an A stored [m, k], or k-major (p·MR + r), a copy of MR adjacent
//                  values of each storage row of an A stored [k, m].
//   B micro-panel: for each k, NR values (the columns).
#include "Kernels.h"

#include <cpuid.h>
#include <immintrin.h>

bool f32_gemm_available(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;  // OSXSAVE
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    // SSE, AVX, opmask, upper halves of zmm0-15, zmm16-31.
    const unsigned zmmState = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    if ((xcr0_low & zmmState) != zmmState) return false;
    return __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx & (1u << 16));  // AVX512F
}

#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)

#include "packed_gemm.h"

/// A block rows [0, mc) x k [0, kc) of op(A) → micro-panels of MR rows, rows past mc zero:
/// row-major from an A stored [m, k], k-major from an A stored [k, m] (each a plain copy).
static void pack_a(bool transposed, const float *a, int lda, int mc, int kc, void *packed) {
    for (int panel = 0; panel < mc; panel += MR) {
        float *out = (float *)packed + panel * KC;
        int rows = mc - panel < MR ? mc - panel : MR;
        if (!transposed) {
            for (int r = 0; r < MR; r++) {
                const float *row = a + (long)(panel + r) * lda;
                for (int p = 0; p < kc; p += 16) {
                    __mmask16 lanes = r < rows ? first_lanes(kc - p) : 0;
                    _mm512_mask_storeu_ps(out + r * KC + p, first_lanes(kc - p), _mm512_maskz_loadu_ps(lanes, row + p));
                }
            }
        } else {
            __mmask16 lanes = first_lanes(rows);
            for (int p = 0; p < kc; p++) {
                _mm512_mask_storeu_ps(out + p * MR, first_lanes(MR), _mm512_maskz_loadu_ps(lanes, a + (long)p * lda + panel));
            }
        }
    }
}

/// B block k [0, kc) x columns [0, nc) of op(B) → micro-panels of NR columns, columns past nc zero.
/// A B stored [n, k] is read down its columns, 16 rows of storage at a time, one gather per k.
static void pack_b(bool transposed, const float *b, int ldb, int kc, int nc, void *packed) {
    for (int panel = 0; panel < nc; panel += NR) {
        float *out = (float *)packed + panel * kc;
        int columns = nc - panel < NR ? nc - panel : NR;
        for (int half = 0; half < NR; half += 16) {
            __mmask16 lanes = first_lanes(columns - half);
            if (!transposed) {
                for (int p = 0; p < kc; p++) {
                    _mm512_storeu_ps(out + p * NR + half, _mm512_maskz_loadu_ps(lanes, b + (long)p * ldb + panel + half));
                }
            } else {
                const float *first = b + (long)(panel + half) * ldb;
                const __m512i row_starts = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                              _mm512_set1_epi32(ldb));
                for (int p = 0; p < kc; p++) {
                    __m512 column = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, row_starts, first + p, 4);
                    _mm512_storeu_ps(out + p * NR + half, column);
                }
            }
        }
    }
}

/// C tile [rows, columns] = A micro-panel · B micro-panel (kc values of k) + beta · C.
/// A's value of row r at k p is at r·row_stride + p·k_stride: (KC, 1) row-major, (1, MR) k-major;
/// constants at each call, so the addresses fold.
static inline __attribute__((always_inline)) void micro_kernel(int kc, const float *a, int row_stride, int k_stride,
                                                               const float *b, float beta, float *c, int ldc, int rows,
                                                               int columns) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b + p * NR), b1 = _mm512_loadu_ps(b + p * NR + 16);
        for (int r = 0; r < MR; r++) {
            __m512 value = _mm512_set1_ps(a[r * row_stride + p * k_stride]);
            acc[r][0] = _mm512_fmadd_ps(value, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(value, b1, acc[r][1]);
        }
    }
    // Constant length, test inside: the accumulators stay in registers (see bf16_gemm.c).
    __mmask16 lanes0 = first_lanes(columns), lanes1 = first_lanes(columns - 16);
    for (int r = 0; r < MR; r++) {
        if (r < rows) update_tile_row(acc[r][0], acc[r][1], beta, c + (long)r * ldc, lanes0, lanes1);
    }
}

// Per-thread packing buffers (see thread_buffers), set by f32_gemm.
typedef struct {
    float a[MC * KC], b[KC * NC];
} packing_buffers;
static pthread_key_t buffers_key;
__attribute__((constructor)) static void create_buffers_key(void) { pthread_key_create(&buffers_key, free); }
static _Thread_local packing_buffers *buffers;

/// Operand A of a product: a matrix stored [m, k] or (transposed) [k, m].
typedef struct {
    const float *a;
    int lda;
    bool transposed;
} a_operand;

/// A block rows [ic, ic + mc) x k [pc, pc + kc) → packed_a.
static void pack_a_block(const void *operand, int ic, int pc, int mc, int kc) {
    const a_operand *a = operand;
    const float *block = a->transposed ? a->a + (long)pc * a->lda + ic : a->a + (long)ic * a->lda + pc;
    pack_a(a->transposed, block, a->lda, mc, kc, buffers->a);
}

/// Tile (ir, jr) of a block: A micro-panel ir of packed_a, B micro-panel jr of b_block.
static inline __attribute__((always_inline)) void tile(const void *operand, int kc, int ir, int jr, const void *b_block,
                                                       float beta, float *c, int ldc, int rows, int columns) {
    const float *panel_a = buffers->a + ir * KC, *panel_b = (const float *)b_block + jr * kc;
    if (((const a_operand *)operand)->transposed) {
        micro_kernel(kc, panel_a, 1, MR, panel_b, beta, c, ldc, rows, columns);
    } else {
        micro_kernel(kc, panel_a, KC, 1, panel_b, beta, c, ldc, rows, columns);
    }
}

void f32_gemm(bool transpose_a, bool transpose_b, int m, int n, int k,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    buffers = thread_buffers(buffers_key, sizeof *buffers);
    if (k == 0) return scale_c(m, n, beta, c, ldc);
    a_operand operand = {a, lda, transpose_a};
    FOR_EACH_B_BLOCK(k, n) {
        pack_b(transpose_b, b_at(transpose_b, b, ldb, jc, pc), ldb, kc, nc, buffers->b);
        for_each_tile(pack_a_block, tile, &operand, m, pc, nc, kc, buffers->b, pc == 0 ? beta : 1, c + jc, ldc);
    }
}

#pragma clang attribute pop
