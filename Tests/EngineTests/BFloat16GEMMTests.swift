import Foundation
import Kernels
import Testing
@testable import VAEEngine

/// bfloat16 of x, round to nearest even (test values are normal numbers, so no subnormal rule).
func bfloat16(_ x: Float) -> Float {
    let bits = x.bitPattern
    return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
}

/// Kernels' bf16_gemm against a Float64 GEMM of the same bfloat16-rounded operands.
@Suite(.enabled(if: Precision.bfloat16.isAvailable, "this CPU has no AVX512_BF16: the bfloat16 GEMM cannot run"))
struct BFloat16GEMMTests {
    /// Odd sizes around the kernel's blocking (tiles of 12 x 32, k blocks of 256, A blocks of 96
    /// rows, B blocks of 512 columns), and the engine's own small shapes.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (13, 33, 7), (12, 32, 48), (37, 50, 513), (97, 530, 31), (5, 17, 600), (64, 48, 32),
    ]

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func agreesWithFloat64OnRoundedOperands(transposeA: Bool, transposeB: Bool) {
        for (index, shape) in BFloat16GEMMTests.shapes.enumerated() {
            for beta: Float in [0, 1, 0.5] {
                checkKernel(.bf16, shape, transposeA: transposeA, transposeB: transposeB, beta: beta, seed: UInt64(index))
            }
        }
    }

    /// Ties between two bfloat16 values go to the even one: 1 + 2^-8 lies halfway between 1 and
    /// 1 + 2^-7 and becomes 1; 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6 and becomes
    /// 1 + 2^-6. Just above a tie rounds up.
    @Test func roundsOperandsToNearestEven() {
        let cases: [(value: Float, expected: Float)] = [
            (1.00390625, 1), (1.01171875, 1.015625), (1.00390625 + 0x1p-20, 1.0078125), (-1.00390625, -1),
        ]
        for (value, expected) in cases {
            var a = value, b: Float = 1, c: Float = .nan
            gemm(.bfloat16, m: 1, n: 1, k: 1, &a, lda: 1, &b, ldb: 1, beta: 0, &c, ldc: 1)
            #expect(c == expected, "\(value) → \(c)")
        }
    }

    /// A B packed once (PackedB, as the convolutions use their kernels for every chunk of
    /// images) gives the same bits as gemm packing it in each call, in both precisions, for two
    /// products in a row with one packing; the shapes span several k and n blocks.
    @Test(arguments: Precision.allCases, [false, true])
    func packedOperandGivesTheSameBits(precision: Precision, transposeB: Bool) {
        for (index, (m, n, k)) in [(13, 33, 7), (37, 530, 513), (97, 50, 31)].enumerated() {
            let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
            let b = randomValues(bRows * (bColumns + 1), seed: UInt64(10 * index)).map(Float.init)
            let packed = PackedB(precision, transposed: transposeB, k: k, n: n)
            packed.pack(b, ldb: bColumns + 1)
            for transposeA in [false, true] {
                let a = randomValues(m * k, seed: UInt64(10 * index + (transposeA ? 2 : 1))).map(Float.init)
                let lda = transposeA ? m : k
                var expected = randomValues(m * n, seed: UInt64(10 * index + 3)).map(Float.init), actual = expected
                gemm(precision, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a, lda: lda, b,
                     ldb: bColumns + 1, beta: 0.5, &expected, ldc: n)
                gemm(transposeA: transposeA, m: m, a, lda: lda, packed, beta: 0.5, &actual, ldc: n)
                #expect(actual.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "\((m, n, k)) transposeA \(transposeA)")
            }
        }
    }

    /// The transposed packing (a B stored [n, k], converted a row at a time and transposed in
    /// registers) writes, byte for byte, the panels of the plain packing of an explicitly
    /// transposed copy [k, n]: odd k (a zero second value of the last pair), k not a multiple of
    /// the 32 values of a tile, partial panels of fewer than 16 and of 16-31 columns, several k and
    /// n blocks, and a row stride wider than the rows.
    @Test func transposedPackingIsThePackingOfATransposedCopy() {
        for (index, (k, n)) in [(1, 1), (7, 13), (32, 32), (33, 17), (48, 50), (257, 31), (600, 530), (128, 2048)].enumerated() {
            let ldb = k + 3
            let stored = randomValues(n * ldb, seed: UInt64(30 + index)).map(Float.init)  // B stored [n, k]
            var copy = [Float](repeating: .nan, count: k * n)  // B [k, n]
            for j in 0..<n { for p in 0..<k { copy[p * n + j] = stored[j * ldb + p] } }
            let transposed = PackedB(.bfloat16, transposed: true, k: k, n: n), plain = PackedB(.bfloat16, k: k, n: n)
            let count = bf16_packed_b_count(Int32(k), Int32(n))
            transposed.panels!.update(repeating: 0xABCD, count: count)
            transposed.pack(stored, ldb: ldb)
            plain.pack(copy, ldb: n)
            let same = UnsafeBufferPointer(start: transposed.panels!, count: count)
                .elementsEqual(UnsafeBufferPointer(start: plain.panels!, count: count))  // outside #expect, which would print every value
            #expect(same, "k \(k), n \(n)")
        }
    }

    /// bfloat16GEMM reading the patches straight from the image gives the bits of im2col and a
    /// GEMM of the written-out patch matrix, in each form its packing supports: as A (with a
    /// packed B) for both; for 32 and 64 channels ("wide") as B, and as the transposed product the
    /// convolutions' backward uses (dKᵀ = dyᵀ · P against dK = Pᵀ · dy); for 3 channels (RGB) as
    /// the transposed A of dK = Pᵀ · dy itself, with an odd k too. 3 images of 20x20 give 300 patch
    /// rows (two k blocks of 256, and both borders of every image row); 64 channels give 1,024
    /// columns (two n blocks of 512).
    @Test(arguments: [3, 32, 64])
    func patchesFromTheImageGiveTheBitsOfIm2col(channels: Int) {
        let geometry = PatchGeometry(largeHeight: 20, largeWidth: 20, channels: channels)
        let images = 3, rows = 3 * 100, width = geometry.patchSize, m = 7
        let large = randomValues(images * geometry.largeImageSize, seed: 21).map(Float.init)
        var columns = [Float](repeating: .nan, count: rows * width)
        geometry.im2col(large, &columns, batch: images)
        let b = randomValues(width * m, seed: 24).map(Float.init), packed = PackedB(.bfloat16, k: width, n: m)
        packed.pack(b, ldb: m)
        var expected = [Float](repeating: .nan, count: rows * m), actual = expected
        gemm(.bfloat16, m: rows, n: m, k: width, columns, lda: width, b, ldb: m, beta: 0, &expected, ldc: m)
        bfloat16GEMM(m: rows, patchesOf: large, geometry, packed, beta: 0, &actual, ldc: m)
        #expect(actual.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "patches as A")
        let dy = randomValues(rows * m, seed: 23).map(Float.init)
        switch geometry.bfloat16Packing {
        case .wide:
            for transposeA in [false, true] {
                let a = randomValues(m * rows, seed: 22).map(Float.init), lda = transposeA ? m : rows
                var expected = [Float](repeating: .nan, count: m * width), actual = expected
                gemm(.bfloat16, transposeA: transposeA, m: m, n: width, k: rows, a, lda: lda, columns, ldb: width, beta: 0,
                     &expected, ldc: width)
                bfloat16GEMM(transposeA: transposeA, m: m, k: rows, a, lda: lda, patchesOf: large, geometry, beta: 0,
                             &actual, ldc: width)
                #expect(actual.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "transposeA \(transposeA)")
            }
            var dK = [Float](repeating: .nan, count: width * m), dKTransposed = dK
            gemm(.bfloat16, transposeA: true, m: width, n: m, k: rows, columns, lda: width, dy, ldb: m, beta: 0, &dK, ldc: m)
            bfloat16GEMM(transposeA: true, m: m, k: rows, dy, lda: m, patchesOf: large, geometry, beta: 0, &dKTransposed,
                         ldc: width)
            #expect((0..<width * m).allSatisfy { dK[$0].bitPattern == dKTransposed[($0 % m) * width + $0 / m].bitPattern })
        case .rgb:
            for k in [rows, rows - 1] {
                var expected = randomValues(width * m, seed: 25).map(Float.init), actual = expected
                gemm(.bfloat16, transposeA: true, m: width, n: m, k: k, columns, lda: width, dy, ldb: m, beta: 0.5,
                     &expected, ldc: m)
                bfloat16GEMM(n: m, k: k, transposedPatchesOf: large, geometry, dy, ldb: m, beta: 0.5, &actual, ldc: m)
                #expect(actual.elementsEqual(expected) { $0.bitPattern == $1.bitPattern }, "transposed patches, k \(k)")
            }
        case .none:
            Issue.record("\(channels) channels are not packed from the image")
        }
    }
}

/// A kernel of the package, with the rounding it applies to each operand.
enum GEMMKernel {
    case bf16, f32

    func operand(_ x: Float) -> Float { self == .bf16 ? bfloat16(x) : x }
}

/// C = op(A) · op(B) + beta · C with row strides wider than the rows (3 spare values), C first
/// filled with NaN when beta is 0 (it must not be read). Each element must agree with the Float64
/// sum of the (rounded) products to float32 accumulation, within a bound of 2^-24 (half an ulp)
/// of the largest partial sum, Σ|a·b| + |beta·c|, per rounding:
///   bf16: products of two bfloat16 values are exact in float32; the k additions and the
///         final one of beta · C round: k + 1.
///   f32:  each of the k FMAs rounds once (product and sum together), and so does each k
///         block's addition to C (blocks of 256, the first with beta · C): k + ⌈k/256⌉.
func checkKernel(_ kernel: GEMMKernel, _ shape: (m: Int, n: Int, k: Int), transposeA: Bool, transposeB: Bool, beta: Float,
                 seed: UInt64) {
    let (m, n, k) = shape
    let (aRows, aColumns) = transposeA ? (k, m) : (m, k)
    let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
    let (lda, ldb, ldc) = (aColumns + 3, bColumns + 3, n + 3)
    let a = randomValues(aRows * lda, seed: 3 * seed + 1).map(Float.init)
    let b = randomValues(bRows * ldb, seed: 3 * seed + 2).map(Float.init)
    let c0 = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : randomValues(m * ldc, seed: 3 * seed + 3).map(Float.init)
    var c = c0
    switch kernel {
    case .bf16:
        gemm(.bfloat16, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb,
             beta: beta, &c, ldc: ldc)
    case .f32:
        f32_gemm(transposeA, transposeB, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), beta, &c, Int32(ldc))
    }

    func opA(_ i: Int, _ p: Int) -> Double { Double(kernel.operand(transposeA ? a[p * lda + i] : a[i * lda + p])) }
    func opB(_ p: Int, _ j: Int) -> Double { Double(kernel.operand(transposeB ? b[j * ldb + p] : b[p * ldb + j])) }
    var worst = 0.0
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0, magnitude = 0.0
            for p in 0..<k {
                sum += opA(i, p) * opB(p, j)
                magnitude += abs(opA(i, p) * opB(p, j))
            }
            let old = beta == 0 ? 0 : Double(beta) * Double(c0[i * ldc + j])
            let roundings = kernel == .bf16 ? k + 1 : k + (k + 255) / 256
            let bound = Double(roundings) * 0x1p-24 * (magnitude + abs(old))
            worst = max(worst, abs(Double(c[i * ldc + j]) - (sum + old)) / bound)
        }
        // The spare values at the end of each row stay as they were.
        #expect(c[(i * ldc + n)..<(i * ldc + ldc)].elementsEqual(c0[(i * ldc + n)..<(i * ldc + ldc)],
                                                                 by: { $0 == $1 || ($0.isNaN && $1.isNaN) }))
    }
    #expect(worst <= 1, "\(kernel) \(shape) transposeA \(transposeA) transposeB \(transposeB) beta \(beta): error \(worst) x bound")
}

/// Kernels' f32_gemm against a Float64 GEMM of the same operands.
@Suite(.enabled(if: f32_gemm_available(), "this CPU has no AVX-512: the float32 kernel cannot run"))
struct Float32GEMMTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func agreesWithFloat64(transposeA: Bool, transposeB: Bool) {
        // bfloat16's shapes (the same blocking), the engine's conv shapes, and more k blocks.
        let shapes = BFloat16GEMMTests.shapes + [(1024, 32, 48), (48, 32, 1024), (200, 70, 300)]
        for (index, shape) in shapes.enumerated() {
            for beta: Float in [0, 1, 0.5] {
                checkKernel(.f32, shape, transposeA: transposeA, transposeB: transposeB, beta: beta, seed: UInt64(index))
            }
        }
    }
}
