#ifndef KERNELS_H
#define KERNELS_H

#include <stdbool.h>

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

/// Whether this CPU and its operating system run AVX-512 code: CPUID leaf 7 reports AVX512F and
/// XGETBV shows that the OS saves the opmask and zmm registers.
bool f32_gemm_available(void);

/// Row-major C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C in float32 (AVX-512 FMA), with the
/// arguments of bf16_gemm. Single-threaded; the blocking is fixed, so the result's bits depend
/// only on the arguments. Call only when f32_gemm_available().
void f32_gemm(bool transpose_a, bool transpose_b, int m, int n, int k,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
