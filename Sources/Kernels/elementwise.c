// The engine's element-wise passes (and col2im, an element-wise gather) on AVX-512. The Swift engine is built for baseline x86-64, where
// its SIMD16<Float> loops become 128-bit SSE; on a CPU with AVX-512 (f32_gemm_available) the engine
// calls these instead. Each computes exactly what its Swift loop computes, operation for operation
// (no fused multiply-adds: the file is built with -ffp-contract=off), so results do not depend on
// which ran. Vectors of 16 values, then the same scalar operations as Swift for the last few.
#include "Kernels.h"

#include <immintrin.h>
#include <math.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512dq"))), apply_to = function)

void avx512_relu_forward(float *y, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 value = _mm512_loadu_ps(y + i);
        __mmask16 negative = _mm512_cmp_ps_mask(value, _mm512_setzero_ps(), _CMP_LT_OQ);
        _mm512_storeu_ps(y + i, _mm512_mask_mov_ps(value, negative, _mm512_setzero_ps()));
    }
    for (; i < count; i++) y[i] = 0.0f >= y[i] ? 0.0f : y[i];  // Swift's max(y, 0)
}

void avx512_relu_backward(const float *y, float *gradient, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __mmask16 off = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i), _mm512_setzero_ps(), _CMP_LE_OQ);
        _mm512_storeu_ps(gradient + i, _mm512_mask_mov_ps(_mm512_loadu_ps(gradient + i), off, _mm512_setzero_ps()));
    }
    for (; i < count; i++) {
        if (y[i] <= 0) gradient[i] = 0;
    }
}

/// e^x as the engine's Swift `exponential` computes it (Cephes' polynomial), step for step.
static inline __m512 exponential(__m512 x) {
    __m512 t = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, _mm512_set1_ps(88), _CMP_GT_OQ), _mm512_set1_ps(88));
    t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, _mm512_set1_ps(-88), _CMP_LT_OQ), _mm512_set1_ps(-88));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 shifted = _mm512_add_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504f)), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_add_ps(_mm512_sub_ps(t, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                             _mm512_mul_ps(n, _mm512_set1_ps(2.1219444e-4f)));
    __m512 p = _mm512_set1_ps(1.98756915e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.39819995e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.16657959e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.66666655e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.00000012e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1));
    __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(p, scale);
}

void avx512_sigmoid_forward(float *y, long count) {
    const __m512 one = _mm512_set1_ps(1), sign = _mm512_set1_ps(-0.0f);
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 negated = _mm512_xor_ps(_mm512_loadu_ps(y + i), sign);
        _mm512_storeu_ps(y + i, _mm512_div_ps(one, _mm512_add_ps(one, exponential(negated))));
    }
    for (; i < count; i++) y[i] = 1 / (1 + expf(-y[i]));
}

void avx512_adam(float *p, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
                 float correction) {
    const __m512 beta1 = _mm512_set1_ps(b1), beta2 = _mm512_set1_ps(b2), one_minus_beta1 = _mm512_set1_ps(1 - b1),
                 one_minus_beta2 = _mm512_set1_ps(1 - b2), epsilon = _mm512_set1_ps(eps), step = _mm512_set1_ps(correction);
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 gradient = _mm512_loadu_ps(g + i);
        __m512 first = _mm512_add_ps(_mm512_mul_ps(beta1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(one_minus_beta1, gradient));
        __m512 second = _mm512_add_ps(_mm512_mul_ps(beta2, _mm512_loadu_ps(v + i)),
                                      _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, gradient), gradient));
        _mm512_storeu_ps(m + i, first);
        _mm512_storeu_ps(v + i, second);
        __m512 update = _mm512_div_ps(_mm512_mul_ps(step, first), _mm512_add_ps(_mm512_sqrt_ps(second), epsilon));
        _mm512_storeu_ps(p + i, _mm512_sub_ps(_mm512_loadu_ps(p + i), update));
    }
    for (; i < count; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= correction * m[i] / (sqrtf(v[i]) + eps);
    }
}

/// row[i] = (row[i] + first[i]) (+ second[i]), i < count, count a multiple of 16.
static inline void add_run(const float *first, const float *second, float *row, int count) {
    for (int i = 0; i < count; i += 16) {
        __m512 sum = _mm512_add_ps(_mm512_loadu_ps(row + i), _mm512_loadu_ps(first + i));
        if (second) sum = _mm512_add_ps(sum, _mm512_loadu_ps(second + i));
        _mm512_storeu_ps(row + i, sum);
    }
}

/// One kernel row of a row of patches added into an image row: PatchGeometry.addKernelRow.
static inline void add_kernel_row(const float *taps, float *row, int small_width, int channels) {
    int patch = 16 * channels, last = (2 * small_width - 1) * channels;
    add_run(taps + channels, NULL, row, channels);
    for (int m = 1; m < small_width; m++) {
        int pixels = (2 * m - 1) * channels;
        add_run(taps + (m - 1) * patch + 2 * channels, taps + m * patch, row + pixels, 2 * channels);
    }
    add_run(taps + (small_width - 1) * patch + 2 * channels, NULL, row + last, channels);
}

void avx512_col2im(const float *columns, float *large, int batch, int height, int width, int channels) {
    int small_height = height / 2, small_width = width / 2;
    long patch_row = (long)small_width * 16 * channels, image_row = (long)width * channels;
    for (int n = 0; n < batch; n++) {
        const float *patches = columns + n * small_height * patch_row;
        for (int y = 0; y < height; y++) {
            int oy = (y + 1) / 2, ky = (y + 1) % 2;
            float *row = large + ((long)n * height + y) * image_row;
            if (oy > 0) add_kernel_row(patches + (oy - 1) * patch_row + (ky + 2) * 4 * channels, row, small_width, channels);
            if (oy < small_height) add_kernel_row(patches + oy * patch_row + ky * 4 * channels, row, small_width, channels);
        }
    }
}

#pragma clang attribute pop
