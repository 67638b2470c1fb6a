// A packed GEMM in the style of BLIS on AVX512_BF16's vdpbf16ps, which adds the products of a
// pair of bfloat16 values to each of 16 float32 lanes: acc[j] += a[2j]·b[2j] + a[2j+1]·b[2j+1].
// The blocking and loop nest (shared with f32_gemm.c) are in packed_gemm.h.
//
// Micro-kernel: an MR x NR tile of C in 2·MR zmm accumulators; per pair of k it loads two zmm of
// B (32 columns x 2 k) and broadcasts one 32-bit pair of A per row.
//
// Packed layouts (bfloat16, zero-padded to whole tiles and to an even k):
//   A micro-panel: MR rows x KC values, either row-major (pair p of row r at dword r·KC/2 + p),
//                  a plain conversion of each row of an A stored [m, k], or pair-major (dword
//                  p·MR + r), two interleaved rows of an A stored [k, m]; the kernel broadcasts
//                  one dword per row and pair.
//   B micro-panel: for each pair p, NR dwords (B[2p, j], B[2p+1, j]), j the column.
#include "Kernels.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>

bool bf16_gemm_available(void) {
    if (!f32_gemm_available()) return false;  // AVX512F, and the OS saves the zmm registers
    unsigned eax, ebx, ecx, edx;
    __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx);
    const unsigned bw = 1u << 30, vl = 1u << 31;
    if ((ebx & (bw | vl)) != (bw | vl)) return false;
    __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx);
    return (eax >> 5) & 1;
}

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))), apply_to = function)

#include "packed_gemm.h"

/// dst[0..<padded] = bfloat16(src[0..<count]), then zeros; padded is a multiple of 2.
static inline void convert_row(const float *src, int count, uint16_t *dst, int padded) {
    for (int i = 0; i < padded; i += 32) {
        __m512 low = _mm512_maskz_loadu_ps(first_lanes(count - i), src + i);
        __m512 high = _mm512_maskz_loadu_ps(first_lanes(count - i - 16), src + i + 16);
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh(high, low);
        int left = padded - i;
        __mmask32 store = left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        _mm512_mask_storeu_epi16(dst + i, store, both);
    }
}

/// The source of the zero rows of a partial panel (converted with a count of 0: nothing is read).
static const float no_values[1] = {0};

/// 16 dwords (first[j], second[j]) in bfloat16, j = 0..15.
static inline __m512i interleave_pairs(__m512 first, __m512 second) {
    // Lane l of the interleaved halves takes element l/2 of `first` (l even) or of `second`.
    const __m512i low_index = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i high_index = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    __m512 low = _mm512_permutex2var_ps(first, low_index, second);
    __m512 high = _mm512_permutex2var_ps(first, high_index, second);
    return (__m512i)_mm512_cvtne2ps_pbh(high, low);
}

/// A block rows [0, mc) x k [0, kc) of op(A) → micro-panels of MR rows, rows past mc zero.
/// An A stored [m, k] is packed row by row (each row a plain conversion: ROW_MAJOR below); an A
/// stored [k, m] pair by pair (two rows of storage interleaved: PAIR_MAJOR), the layout each
/// reads fastest. The micro-kernel takes either.
static void pack_a(bool transposed, const float *a, int lda, int mc, int kc, uint16_t *packed) {
    int padded = (kc + 1) & ~1, pairs = padded / 2;
    for (int panel = 0; panel < mc; panel += MR) {
        uint16_t *out = packed + panel * KC;
        int rows = mc - panel < MR ? mc - panel : MR;
        if (!transposed) {
            for (int r = 0; r < MR; r++) {
                convert_row(r < rows ? a + (long)(panel + r) * lda : no_values, r < rows ? kc : 0, out + r * KC, padded);
            }
        } else {
            // Pair p: storage rows 2p and 2p+1, columns panel..panel+rows, interleaved into MR dwords.
            __mmask16 lanes = first_lanes(rows);
            for (int p = 0; p < pairs; p++) {
                const float *row0 = a + (long)(2 * p) * lda + panel;
                __m512 r0 = _mm512_maskz_loadu_ps(lanes, row0);
                __m512 r1 = _mm512_maskz_loadu_ps(2 * p + 1 < kc ? lanes : 0, row0 + lda);
                _mm512_mask_storeu_epi32(out + p * MR * 2, (__mmask16)((1u << MR) - 1), interleave_pairs(r0, r1));
            }
        }
    }
}

/// Transposes a 16x16 tile of dwords: lane j of row i goes to lane i of row j.
static inline void transpose_16x16(__m512i row[16]) {
    // Each row's four 128-bit lanes hold 4 dwords each; interleave dwords, then pairs of dwords, of
    // rows 4g..4g+3: u[4g + c], lane l, holds column 4l + c of rows 4g..4g+3.
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(row[i], row[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(row[i], row[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    // Then a 4x4 transpose of 128-bit lanes: row 4l + c of the result takes lane l of u[c],
    // u[4 + c], u[8 + c], u[12 + c] (0x88 picks lanes 0 and 2 of each source, 0xDD lanes 1 and 3).
    for (int c = 0; c < 4; c++) {
        __m512i even01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
        __m512i odd01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        __m512i even23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
        __m512i odd23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        row[c] = _mm512_shuffle_i32x4(even01, even23, 0x88);
        row[4 + c] = _mm512_shuffle_i32x4(odd01, odd23, 0x88);
        row[8 + c] = _mm512_shuffle_i32x4(even01, even23, 0xDD);
        row[12 + c] = _mm512_shuffle_i32x4(odd01, odd23, 0xDD);
    }
}

/// B block k [0, kc) x columns [0, nc) of op(B) → micro-panels of NR columns, pairs of k
/// interleaved, columns past nc and the k past an odd kc zero. A B stored [k, n] interleaves two
/// storage rows; in a B stored [n, k] a pair is two adjacent values of one storage row, so 16
/// rows are converted at a time (16 pairs each) and transposed in registers.
static void pack_b(bool transposed, const float *b, int ldb, int kc, int nc, uint16_t *packed) {
    int pairs = (kc + 1) / 2;
    for (int panel = 0; panel < nc; panel += NR) {
        uint16_t *out = packed + panel * pairs * 2;
        int columns = nc - panel < NR ? nc - panel : NR;
        if (!transposed) {
            for (int p = 0; p < pairs; p++) {
                const float *row0 = b + (long)(2 * p) * ldb + panel;
                bool second = 2 * p + 1 < kc;
                for (int half = 0; half < NR; half += 16) {
                    __mmask16 lanes = first_lanes(columns - half);
                    __m512 r0 = _mm512_maskz_loadu_ps(lanes, row0 + half);
                    __m512 r1 = _mm512_maskz_loadu_ps(second ? lanes : 0, row0 + ldb + half);
                    _mm512_storeu_si512(out + (p * NR + half) * 2, interleave_pairs(r0, r1));
                }
            }
        } else {
            // Tiles of 16 columns x 16 pairs: each column (a storage row) converted to 16 dwords,
            // one per pair, then transposed so that each pair's 16 dwords are stored at once.
            for (int half = 0; half < NR; half += 16) {
                for (int first_pair = 0; first_pair < pairs; first_pair += 16) {
                    __m512i tile[16];
                    int count = kc - 2 * first_pair;  // values of k left, zeros past them
                    for (int j = 0; j < 16; j++) {
                        if (half + j >= columns) {
                            tile[j] = _mm512_setzero_si512();
                            continue;
                        }
                        const float *row = b + (long)(panel + half + j) * ldb + 2 * first_pair;
                        __m512 low = _mm512_maskz_loadu_ps(first_lanes(count), row);
                        __m512 high = _mm512_maskz_loadu_ps(first_lanes(count - 16), row + 16);
                        tile[j] = (__m512i)_mm512_cvtne2ps_pbh(high, low);
                    }
                    transpose_16x16(tile);
                    int tile_pairs = pairs - first_pair < 16 ? pairs - first_pair : 16;
                    for (int q = 0; q < tile_pairs; q++) {
                        _mm512_storeu_si512(out + ((first_pair + q) * NR + half) * 2, tile[q]);
                    }
                }
            }
        }
    }
}

/// Where a patch row's taps lie: its image's first value and the pixel under tap (0, 0), which
/// may be in the padding.
typedef struct {
    long image_start;
    int y, x;
} patch_origin;

static inline patch_origin origin_of(const bf16_patches *patches, int row) {
    int small_width = patches->width / 2, pixels = (patches->height / 2) * small_width, pixel = row % pixels;
    return (patch_origin){(long)(row / pixels) * patches->height * patches->width, 2 * (pixel / small_width) - 1,
                          2 * (pixel % small_width) - 1};
}

/// The origin of the patch row after `origin`'s: the packers step through consecutive rows this
/// way rather than dividing for each (two integer divisions per row cost more than the copy).
static inline patch_origin next_origin(const bf16_patches *patches, patch_origin origin) {
    origin.x += 2;
    if ((origin.x + 1) / 2 < patches->width / 2) return origin;
    origin.x = -1;
    origin.y += 2;
    if ((origin.y + 1) / 2 < patches->height / 2) return origin;
    origin.y = -1;
    origin.image_start += (long)patches->height * patches->width;
    return origin;
}

/// origins[0..<count] = the origins of patch rows first_row, first_row + 1, ...
static void origins_of(const bf16_patches *patches, int first_row, int count, patch_origin *origins) {
    origins[0] = origin_of(patches, first_row);
    for (int r = 1; r < count; r++) origins[r] = next_origin(patches, origins[r - 1]);
}

/// Where a column's values lie relative to a patch origin: its tap (ky, kx) and channel.
typedef struct {
    int ky, kx, channel;
} patch_column;

static inline patch_column column_of(const bf16_patches *patches, int column) {
    int tap = column / patches->channels;
    return (patch_column){tap / 4, tap % 4, column % patches->channels};
}

/// The values of `column` on of the patch row at `origin`: that tap's channels from the column's
/// on, contiguous in the image; NULL for a tap in the padding (zeros).
static inline const float *patch_values(const bf16_patches *patches, patch_origin origin, patch_column column) {
    int y = origin.y + column.ky, x = origin.x + column.kx;
    if (y < 0 || y >= patches->height || x < 0 || x >= patches->width) return NULL;
    return patches->large + (origin.image_start + (long)y * patches->width + x) * patches->channels + column.channel;
}

static inline __m512 load_or_zero(const float *values) {
    return values ? _mm512_loadu_ps(values) : _mm512_setzero_ps();
}

// The patch packers below read a patch matrix straight from its image, so it is never written
// out. Two cases: channels % NR == 0, with blocks that start at a multiple of NR columns, where
// each NR columns of a row are adjacent channels of one tap, contiguous in the image; and 3
// channels (RGB), where a patch row's kernel row (4 taps x 3 channels) is 12 contiguous values and
// the whole row of 48 values fits one k block.

/// pack_a of rows [first_row, first_row + mc) x columns [first_column, first_column + kc) of a
/// patch matrix (as an A stored [m, k]: each row a plain conversion). channels % NR == 0.
static void pack_a_patches(const bf16_patches *patches, int first_row, int mc, int first_column, int kc,
                           uint16_t *packed) {
    patch_column columns[KC / NR];  // the divisions once per block, not per row
    for (int column = 0; column < kc; column += NR) columns[column / NR] = column_of(patches, first_column + column);
    patch_origin origin = origin_of(patches, first_row);
    for (int r = 0; r < (mc + MR - 1) / MR * MR; r++, origin = next_origin(patches, origin)) {
        uint16_t *out = packed + r * KC;  // panel r / MR, its row r % MR
        bool inside = r < mc;             // rows past mc are zeros
        for (int column = 0; column < kc; column += NR) {
            const float *values = inside ? patch_values(patches, origin, columns[column / NR]) : NULL;
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(load_or_zero(values ? values + 16 : NULL), load_or_zero(values));
            _mm512_storeu_si512(out + column, both);
        }
    }
}

/// pack_b of rows [first_row, first_row + kc) x columns [first_column, first_column + nc) of a
/// patch matrix (as a B stored [k, n]: two rows interleaved). channels % NR == 0.
static void pack_b_patches(const bf16_patches *patches, int first_row, int kc, int first_column, int nc,
                           uint16_t *packed) {
    int pairs = (kc + 1) / 2;
    patch_origin origins[KC];
    origins_of(patches, first_row, kc, origins);
    for (int panel = 0; panel < nc; panel += NR) {
        uint16_t *out = packed + panel * pairs * 2;
        patch_column column = column_of(patches, first_column + panel);
        for (int p = 0; p < pairs; p++) {
            const float *first = patch_values(patches, origins[2 * p], column);
            const float *second = 2 * p + 1 < kc ? patch_values(patches, origins[2 * p + 1], column) : NULL;
            for (int half = 0; half < NR; half += 16) {
                __m512 r0 = load_or_zero(first ? first + half : NULL), r1 = load_or_zero(second ? second + half : NULL);
                _mm512_storeu_si512(out + (p * NR + half) * 2, interleave_pairs(r0, r1));
            }
        }
    }
}

/// Kernel row `ky` of the RGB patch row at `origin`: 4 taps x 3 channels, 12 values contiguous in
/// the image from pixel (y, origin.x), in lanes 0-11; taps in the padding and lanes 12-15 zero.
/// No value outside the row's valid taps is read. A kernel row inside the image is two plain loads
/// (8 + 4 values): a masked load of 16 lanes, measured here, cost about 18 cycles each on this
/// CPU and made the step slower than im2col; only kernel rows at the left and right border (2 of
/// every image row's patches) take one.
static inline __m512 rgb_kernel_row(const bf16_patches *patches, patch_origin origin, int ky) {
    int y = origin.y + ky;
    if (y < 0 || y >= patches->height) return _mm512_setzero_ps();
    const float *run = patches->large + (origin.image_start + (long)y * patches->width + origin.x) * 3;
    int first_tap = origin.x < 0 ? -origin.x : 0;
    int end_tap = patches->width - origin.x < 4 ? patches->width - origin.x : 4;
    if (first_tap == 0 && end_tap == 4) {
        __m512 low = _mm512_zextps256_ps512(_mm256_loadu_ps(run));  // lanes 8-15 zero
        return _mm512_insertf32x4(low, _mm_loadu_ps(run + 8), 2);
    }
    __mmask16 lanes = (__mmask16)(((1u << (3 * end_tap)) - 1) & ~((1u << (3 * first_tap)) - 1));
    return _mm512_maskz_loadu_ps(lanes, run);
}

/// pack_a of rows [first_row, first_row + mc) of an RGB patch matrix, all its 48 columns (as an A
/// stored [m, k]): each kernel row converted and stored at its 12 columns; the 4 zeros each store
/// writes past them are overwritten by the next kernel row or lie past k (never read).
static void pack_a_rgb_patches(const bf16_patches *patches, int first_row, int mc, uint16_t *packed) {
    patch_origin origin = origin_of(patches, first_row);
    for (int r = 0; r < (mc + MR - 1) / MR * MR; r++, origin = next_origin(patches, origin)) {
        uint16_t *out = packed + r * KC;  // panel r / MR, its row r % MR; rows past mc are zeros
        for (int ky = 0; ky < 4; ky++) {
            __m512 values = r < mc ? rgb_kernel_row(patches, origin, ky) : _mm512_setzero_ps();
            _mm256_storeu_si256((__m256i *)(out + 12 * ky), (__m256i)_mm512_cvtneps_pbh(values));
        }
    }
}

/// pack_a of the transposed RGB patch matrix (an A stored [k, m] = patches [rows, 48]): rows
/// [first_column, first_column + mc) of op(A) (columns of the patches) x k [first_row, first_row +
/// kc) (patch rows). An A micro-panel of MR = 12 columns starting at a multiple of 12 is one
/// kernel row of every patch, so pair p interleaves two patch rows' kernel rows.
static void pack_a_rgb_patches_transposed(const bf16_patches *patches, int first_column, int mc, int first_row, int kc,
                                          uint16_t *packed) {
    int pairs = (kc + 1) / 2;
    patch_origin origins[KC];
    origins_of(patches, first_row, kc, origins);
    for (int panel = 0; panel < mc; panel += MR) {
        uint16_t *out = packed + panel * KC;
        int ky = (first_column + panel) / 12;
        for (int p = 0; p < pairs; p++) {
            __m512 r0 = rgb_kernel_row(patches, origins[2 * p], ky);
            __m512 r1 = 2 * p + 1 < kc ? rgb_kernel_row(patches, origins[2 * p + 1], ky) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(out + p * MR * 2, (__mmask16)((1u << MR) - 1), interleave_pairs(r0, r1));
        }
    }
}

/// C tile [rows, columns] (at most MR x NR) = A micro-panel · B micro-panel + beta · C,
/// C not read when beta is 0.
/// The A micro-panel's pair p of row r is dword r·row_stride + p·pair_stride: (KC/2, 1) for
/// ROW_MAJOR, (1, MR) for PAIR_MAJOR; constants at each call, so the addresses fold.
static inline __attribute__((always_inline)) void micro_kernel(
        int pairs, const uint16_t *a, int row_stride, int pair_stride, const uint16_t *b, float beta,
        float *c, int ldc, int rows, int columns) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint32_t *a32 = (const uint32_t *)a;
    for (int p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * NR * 2);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * NR * 2 + 32);
        for (int r = 0; r < MR; r++) {
            __m512bh pair = (__m512bh)_mm512_set1_epi32((int)a32[r * row_stride + p * pair_stride]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], pair, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], pair, b1);
        }
    }
    // A loop of constant length with the row test inside unrolls fully and keeps the
    // accumulators in registers (a `break` made the compiler spill all 24 to the stack).
    __mmask16 lanes0 = first_lanes(columns), lanes1 = first_lanes(columns - 16);
    for (int r = 0; r < MR; r++) {
        if (r < rows) update_tile_row(acc[r][0], acc[r][1], beta, c + (long)r * ldc, lanes0, lanes1);
    }
}

// Per-thread packing buffers (see thread_buffers), set by every entry point below.
typedef struct {
    uint16_t a[MC * KC], b[KC * NC];
} packing_buffers;
static pthread_key_t buffers_key;
__attribute__((constructor)) static void create_buffers_key(void) { pthread_key_create(&buffers_key, free); }
static _Thread_local packing_buffers *buffers;

enum { ROW_MAJOR_ROW = KC / 2, ROW_MAJOR_PAIR = 1, PAIR_MAJOR_ROW = 1, PAIR_MAJOR_PAIR = MR };

/// Operand A of a product: a matrix stored [m, k] or (transposed) [k, m], or a patch matrix.
typedef struct {
    const float *a;
    int lda;
    bool transposed;
    const bf16_patches *patches;  // not NULL: A is this patch matrix [m, 16·channels], or its transpose
} a_operand;

/// A block rows [ic, ic + mc) x k [pc, pc + kc) → packed_a.
static void pack_a_block(const void *operand, int ic, int pc, int mc, int kc) {
    const a_operand *a = operand;
    if (a->patches && a->patches->channels == 3) {
        if (a->transposed) return pack_a_rgb_patches_transposed(a->patches, ic, mc, pc, kc, buffers->a);
        return pack_a_rgb_patches(a->patches, ic, mc, buffers->a);
    }
    if (a->patches) return pack_a_patches(a->patches, ic, mc, pc, kc, buffers->a);
    const float *block = a->transposed ? a->a + (long)pc * a->lda + ic : a->a + (long)ic * a->lda + pc;
    pack_a(a->transposed, block, a->lda, mc, kc, buffers->a);
}

/// Tile (ir, jr) of a block: A micro-panel ir of packed_a, B micro-panel jr of b_block.
static inline __attribute__((always_inline)) void tile(const void *operand, int kc, int ir, int jr, const void *b_block,
                                                       float beta, float *c, int ldc, int rows, int columns) {
    int pairs = (kc + 1) / 2;
    const uint16_t *panel_a = buffers->a + ir * KC, *panel_b = (const uint16_t *)b_block + jr * pairs * 2;
    if (((const a_operand *)operand)->transposed) {
        micro_kernel(pairs, panel_a, PAIR_MAJOR_ROW, PAIR_MAJOR_PAIR, panel_b, beta, c, ldc, rows, columns);
    } else {
        micro_kernel(pairs, panel_a, ROW_MAJOR_ROW, ROW_MAJOR_PAIR, panel_b, beta, c, ldc, rows, columns);
    }
}

/// C[m, nc] = op(A)[m, k range of the block] · (packed B block [kc, nc]) + beta · C.
static void multiply_block(const a_operand *a, int m, int pc, int nc, int kc, const uint16_t *b_block, float beta,
                           float *c, int ldc) {
    for_each_tile(pack_a_block, tile, a, m, pc, nc, kc, b_block, beta, c, ldc);
}

/// A B block packed by pack_b: packed_block_count(kc, nc) values (FOR_EACH_B_BLOCK visits them).
static long packed_block_count(int kc, int nc) { return (long)((kc + 1) / 2) * 2 * ((nc + NR - 1) / NR * NR); }

/// C[m, n] = op(A)[m, k] · op(B)[k, n] + beta · C, each B block packed as it comes.
static void multiply_packing_b(const a_operand *operand, bool transpose_b, int m, int n, int k, const float *b, int ldb,
                               float beta, float *c, int ldc) {
    buffers = thread_buffers(buffers_key, sizeof *buffers);
    if (k == 0) return scale_c(m, n, beta, c, ldc);
    FOR_EACH_B_BLOCK(k, n) {
        pack_b(transpose_b, b_at(transpose_b, b, ldb, jc, pc), ldb, kc, nc, buffers->b);
        multiply_block(operand, m, pc, nc, kc, buffers->b, pc == 0 ? beta : 1, c + jc, ldc);
    }
}

void bf16_gemm(bool transpose_a, bool transpose_b, int m, int n, int k,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    a_operand operand = {a, lda, transpose_a, NULL};
    multiply_packing_b(&operand, transpose_b, m, n, k, b, ldb, beta, c, ldc);
}

long bf16_packed_b_count(int k, int n) {
    long count = 0;
    FOR_EACH_B_BLOCK(k, n) count += packed_block_count(kc, nc);
    return count;
}

void bf16_pack_b(bool transpose_b, int k, int n, const float *b, int ldb, uint16_t *packed) {
    FOR_EACH_B_BLOCK(k, n) {
        pack_b(transpose_b, b_at(transpose_b, b, ldb, jc, pc), ldb, kc, nc, packed);
        packed += packed_block_count(kc, nc);
    }
}

/// C[m, n] = op(A)[m, k] · B + beta · C with B packed by bf16_pack_b: its blocks in the order packed.
static void multiply_packed_b(const a_operand *operand, int m, int n, int k, const uint16_t *packed_b, float beta,
                              float *c, int ldc) {
    buffers = thread_buffers(buffers_key, sizeof *buffers);
    if (k == 0) return scale_c(m, n, beta, c, ldc);
    FOR_EACH_B_BLOCK(k, n) {
        multiply_block(operand, m, pc, nc, kc, packed_b, pc == 0 ? beta : 1, c + jc, ldc);
        packed_b += packed_block_count(kc, nc);
    }
}

void bf16_gemm_packed_b(bool transpose_a, int m, int n, int k, const float *a, int lda, const uint16_t *packed_b,
                        float beta, float *c, int ldc) {
    a_operand operand = {a, lda, transpose_a, NULL};
    multiply_packed_b(&operand, m, n, k, packed_b, beta, c, ldc);
}

void bf16_gemm_patches_a(int m, int n, const bf16_patches *patches, const uint16_t *packed_b, float beta, float *c,
                         int ldc) {
    a_operand operand = {NULL, 0, false, patches};
    multiply_packed_b(&operand, m, n, 16 * patches->channels, packed_b, beta, c, ldc);
}

void bf16_gemm_patches_transposed_a(int m, int n, int k, const bf16_patches *patches, const float *b, int ldb,
                                    float beta, float *c, int ldc) {
    a_operand operand = {NULL, 0, true, patches};
    multiply_packing_b(&operand, false, m, n, k, b, ldb, beta, c, ldc);
}

void bf16_gemm_patches_b(bool transpose_a, int m, int k, const float *a, int lda, const bf16_patches *patches,
                         float beta, float *c, int ldc) {
    buffers = thread_buffers(buffers_key, sizeof *buffers);
    int n = 16 * patches->channels;
    if (k == 0) return scale_c(m, n, beta, c, ldc);
    a_operand operand = {a, lda, transpose_a, NULL};
    FOR_EACH_B_BLOCK(k, n) {
        pack_b_patches(patches, pc, kc, jc, nc, buffers->b);
        multiply_block(&operand, m, pc, nc, kc, buffers->b, pc == 0 ? beta : 1, c + jc, ldc);
    }
}

#pragma clang attribute pop
