#ifndef KERNELS_H
#define KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/// Whether this CPU and its operating system run AVX512_BF16 code: CPUID leaf 7 reports AVX512F,
/// AVX512BW and AVX512VL (sub-leaf 0) and AVX512_BF16 (sub-leaf 1, EAX bit 5), and XGETBV shows
/// that the OS saves the opmask and zmm registers.
bool bf16_gemm_available(void);

/// Row-major C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, with the products of A and B taken in
/// bfloat16: every element of A and B is rounded to bfloat16 (round to nearest even; subnormal
/// inputs count as zero, as the instructions do) and the products are summed in float32.
/// lda, ldb, ldc are the row strides of A, B and C as stored (before any transpose). With beta 0
/// C is only written. Single-threaded; the blocking is fixed, so the result's bits depend only
/// on the arguments. Call only when bf16_gemm_available().
void bf16_gemm(bool transpose_a, bool transpose_b, int m, int n, int k,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/// The number of bfloat16 values bf16_pack_b writes for a B of k x n (op(B), after any transpose).
long bf16_packed_b_count(int k, int n);

/// Packs op(B)[k,n] once, for several bf16_gemm_packed_b calls with the same B: the panels
/// bf16_gemm would pack for itself on every call, the same bits.
void bf16_pack_b(bool transpose_b, int k, int n, const float *b, int ldb, uint16_t *packed);

/// bf16_gemm with B already packed by bf16_pack_b (with the same k and n): the same result bits.
void bf16_gemm_packed_b(bool transpose_a, int m, int n, int k, const float *a, int lda, const uint16_t *packed_b,
                        float beta, float *c, int ldc);

#endif
