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

/// The patch matrix [N·(H/2)·(W/2), 16·C] of a 4x4 convolution with stride 2 and padding 1 over
/// images [N, H, W, C] (row-major, float32): row (n, oy, ox) holds image n's values at rows
/// 2·oy − 1 + ky, columns 2·ox − 1 + kx, ordered (ky, kx, c); taps in the padding are 0. The
/// engine's im2col (PatchGeometry) writes the same matrix.
typedef struct {
    const float *image;
    int height, width, channels;
} bf16_patches;

/// bf16_gemm with A = the patch matrix of `a` (op(A) its transpose when transpose_a), B not
/// transposed: the packer reads the images directly, never writing the patch matrix. Same bits
/// as im2col followed by bf16_gemm with lda = 16·C.
void bf16_gemm_patches(bool transpose_a, int m, int n, int k, bf16_patches a,
                       const float *b, int ldb, float beta, float *c, int ldc);

#endif
