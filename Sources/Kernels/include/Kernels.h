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

/// Whether this CPU and its operating system run AVX-512 code: CPUID leaf 7 reports AVX512F and
/// XGETBV shows that the OS saves the opmask and zmm registers.
bool f32_gemm_available(void);

/// Row-major C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C in float32 (AVX-512 FMA), with the
/// arguments of bf16_gemm. Single-threaded; the blocking is fixed, so the result's bits depend
/// only on the arguments. Call only when f32_gemm_available().
void f32_gemm(bool transpose_a, bool transpose_b, int m, int n, int k,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/// The number of bfloat16 values bf16_pack_b writes for a B of k x n (op(B), after any transpose).
long bf16_packed_b_count(int k, int n);

/// Packs op(B)[k,n] once, for several bf16_gemm_packed_b calls with the same B: the panels
/// bf16_gemm would pack for itself on every call, the same bits.
void bf16_pack_b(bool transpose_b, int k, int n, const float *b, int ldb, uint16_t *packed);

/// bf16_gemm with B already packed by bf16_pack_b (with the same k and n): the same result bits.
void bf16_gemm_packed_b(bool transpose_a, int m, int n, int k, const float *a, int lda, const uint16_t *packed_b,
                        float beta, float *c, int ldc);

/// The patch matrix of a large map [N, height, width, channels] under a 4x4 kernel with stride 2
/// and padding 1 (the engine's PatchGeometry): row r is the patch of small position r (image,
/// row, column order), its 16·channels values ordered (ky, kx, channel), taps in the padding 0.
typedef struct {
    const float *large;
    int height, width, channels;
} bf16_patches;

/// bf16_gemm with B the first k rows of a patch matrix, packed straight from the image (the
/// patch matrix is never written out): C[m, 16·channels] = op(A)[m, k] · patches[k, 16·channels]
/// + beta · C. The same bits as bf16_gemm of the written-out patch matrix. channels % 32 == 0.
void bf16_gemm_patches_b(bool transpose_a, int m, int k, const float *a, int lda, const bf16_patches *patches,
                         float beta, float *c, int ldc);

/// bf16_gemm_packed_b with A the first m rows of a patch matrix [m, k = 16·channels], packed
/// straight from the image: C[m, n] = patches · B + beta · C, B packed by bf16_pack_b for that
/// k and n. The same bits as bf16_gemm of the written-out patch matrix. channels % 32 == 0 or
/// channels == 3.
void bf16_gemm_patches_a(int m, int n, const bf16_patches *patches, const uint16_t *packed_b, float beta, float *c,
                         int ldc);

/// bf16_gemm with A the transpose of the first k rows of a patch matrix, packed straight from the
/// image: C[m, n] = patches[k, m]ᵀ · B[k, n] + beta · C, m ≤ 16·channels, B stored [k, n] with
/// row stride ldb. The same bits as bf16_gemm of the written-out patch matrix. channels == 3.
void bf16_gemm_patches_transposed_a(int m, int n, int k, const bf16_patches *patches, const float *b, int ldb,
                                    float beta, float *c, int ldc);

/// The engine's element-wise passes (ReLU, its gradient mask, the sigmoid) on AVX-512, with the
/// bits of its Swift loops. Call only when f32_gemm_available().
void avx512_relu_forward(float *y, long count);
void avx512_relu_backward(const float *y, float *gradient, long count);
void avx512_sigmoid_forward(float *y, long count);

/// Adam.update's loop over `count` values, with its bits.
void avx512_adam(float *p, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
                 float correction);

/// PatchGeometry.col2im of `batch` large maps [height, width, channels] (channels % 16 == 0), with
/// the bits of its Swift loops: large += the scatter of the patch matrix `columns`.
void avx512_col2im(const float *columns, float *large, int batch, int height, int width, int channels);

#endif
