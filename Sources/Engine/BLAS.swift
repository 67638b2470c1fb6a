import CBLAS
import Kernels

/// The number format of the GEMM operands. Parameters, activations, gradients, Adam's moments and
/// the loss are float32 either way.
///   float32:  the default and the reference. Kernels' f32_gemm (AVX-512 FMA, one thread, 1.4x
///             OpenBLAS' Haswell kernel per training step here) on a CPU with AVX-512 while
///             OpenBLAS has one thread; OpenBLAS' SGEMM otherwise (`--blas-threads` over 1 splits
///             each product between its threads).
///   bfloat16: each operand rounded to bfloat16 (round to nearest even) as it is packed, products
///             summed in float32 (Kernels' bf16_gemm on AVX512_BF16): twice the multiply-adds of
///             a float32 FMA per instruction, with 8 bits of mantissa per operand.
public enum Precision: String, CaseIterable, Codable, Sendable {
    case float32 = "fp32", bfloat16 = "bf16"

    /// Whether this machine runs it: bfloat16 needs AVX512_BF16 (CPUID, checked once).
    public var isAvailable: Bool {
        switch self {
        case .float32: true
        case .bfloat16: Precision.bfloat16Available
        }
    }

    private static let bfloat16Available = bf16_gemm_available()
    fileprivate static let float32KernelAvailable = f32_gemm_available()

    /// Throws unless this machine runs it.
    public func validate() throws {
        guard isAvailable else {
            throw ConfigError("precision \(rawValue) needs a CPU with AVX512_BF16 (and an OS that saves the zmm registers); this one has not")
        }
    }
}

/// Row-major GEMM: C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, operands in `precision`.
/// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (before any transpose).
/// Every product of the engine goes through here.
@inline(__always)
public func gemm(_ precision: Precision, transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                 _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    switch precision {
    case .float32 where Precision.float32KernelAvailable && openblas_get_num_threads() == 1:
        f32_gemm(transposeA, transposeB, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    case .float32:
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    case .bfloat16:
        bf16_gemm(transposeA, transposeB, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// The B operand of several GEMMs in a row (a layer's kernel, the same for every chunk of images),
/// prepared once by `pack`: in bfloat16, rounded and packed into the panels bf16_gemm would
/// otherwise pack again in every call (the same bits); in float32, the matrix as stored.
/// op(B) is [k, n].
public final class PackedB {
    let transposed: Bool, k: Int, n: Int
    /// The bfloat16 panels; nil in float32.
    let panels: UnsafeMutablePointer<UInt16>?
    private var matrix: UnsafePointer<Float>?, ldb = 0
    /// The scope of fixed values (ParameterStore.fixedValuesScope) the panels were packed in, if any.
    private var packedInScope: Int?

    public init(_ precision: Precision, transposed: Bool = false, k: Int, n: Int) {
        (self.transposed, self.k, self.n) = (transposed, k, n)
        panels = precision == .bfloat16 ? .allocate(capacity: bf16_packed_b_count(Int32(k), Int32(n))) : nil
    }

    deinit { panels?.deallocate() }

    /// Takes B as stored (row stride `ldb`); it must not change until the last GEMM with it.
    public func pack(_ b: UnsafePointer<Float>, ldb: Int) {
        (matrix, self.ldb, packedInScope) = (b, ldb, nil)
        if let panels { bf16_pack_b(transposed, Int32(k), Int32(n), b, Int32(ldb), panels) }
    }

    /// `pack`, skipped when the same B was already packed in `scope` of fixed values (the
    /// parameter store's `fixedValuesScope`, which guarantees B has not changed since); outside
    /// any scope (nil) it always packs.
    public func pack(_ b: UnsafePointer<Float>, ldb: Int, fixedIn scope: Int?) {
        if let scope, scope == packedInScope, b == matrix, ldb == self.ldb { return }
        pack(b, ldb: ldb)
        packedInScope = scope
    }

    /// C[m,n] = op(A)[m,k] · B + beta · C.
    func multiply(transposeA: Bool, m: Int, _ a: UnsafePointer<Float>, lda: Int, beta: Float,
                  _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        if let panels {
            bf16_gemm_packed_b(transposeA, Int32(m), Int32(n), Int32(k), a, Int32(lda), panels, beta, c, Int32(ldc))
        } else {
            gemm(.float32, transposeA: transposeA, transposeB: transposed, m: m, n: n, k: k, a, lda: lda, matrix!, ldb: ldb,
                 beta: beta, c, ldc: ldc)
        }
    }
}

/// gemm with a B packed beforehand (see PackedB).
@inline(__always)
public func gemm(transposeA: Bool = false, m: Int, _ a: UnsafePointer<Float>, lda: Int, _ b: PackedB, beta: Float,
                 _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    b.multiply(transposeA: transposeA, m: m, a, lda: lda, beta: beta, c, ldc: ldc)
}

// bfloat16 products with a patch matrix P (PatchGeometry's rows of `large`) packed straight from
// the image instead of written out by im2col: the same bits as im2col + gemm(.bfloat16, ...).
// Each needs the `geometry.bfloat16Packing` it names.

/// C[m, 16·C] = op(A)[m, k] · P[k, 16·C] + beta · C, P the first k patch rows. Packing `.wide`.
func bfloat16GEMM(transposeA: Bool = false, m: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int,
                  patchesOf large: UnsafePointer<Float>, _ geometry: PatchGeometry, beta: Float,
                  _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    var patches = geometry.patches(of: large)
    bf16_gemm_patches_b(transposeA, Int32(m), Int32(k), a, Int32(lda), &patches, beta, c, Int32(ldc))
}

/// C[m, n] = P[m, 16·C] · B + beta · C, P the first m patch rows, B packed (bfloat16) for k = 16·C.
/// Packing `.wide` or `.rgb`.
func bfloat16GEMM(m: Int, patchesOf large: UnsafePointer<Float>, _ geometry: PatchGeometry, _ b: PackedB, beta: Float,
                  _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    var patches = geometry.patches(of: large)
    bf16_gemm_patches_a(Int32(m), Int32(b.n), &patches, b.panels!, beta, c, Int32(ldc))
}

/// C[16·C, n] = Pᵀ · B[k, n] + beta · C, P the first k patch rows, B stored with row stride `ldb`.
/// Packing `.rgb`.
func bfloat16GEMM(n: Int, k: Int, transposedPatchesOf large: UnsafePointer<Float>, _ geometry: PatchGeometry,
                  _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    var patches = geometry.patches(of: large)
    bf16_gemm_patches_transposed_a(Int32(geometry.patchSize), Int32(n), Int32(k), &patches, b, Int32(ldb), beta, c,
                                   Int32(ldc))
}

extension PatchGeometry {
    /// How the bfloat16 GEMMs read these patches from the image:
    ///   wide (channels a multiple of 32): as A, or as B, each 32 columns of a panel adjacent channels of one tap;
    ///   rgb (3 channels): as A or as its transpose, each kernel row of a patch 12 adjacent values,
    ///        and a 12-row micro-panel of the transpose one kernel row of every patch;
    ///   none: not at all (im2col writes them out).
    enum Packing { case wide, rgb, none }

    var bfloat16Packing: Packing { channels % 32 == 0 ? .wide : channels == 3 ? .rgb : .none }

    func patches(of large: UnsafePointer<Float>) -> bf16_patches {
        bf16_patches(large: large, height: Int32(largeHeight), width: Int32(largeWidth), channels: Int32(channels))
    }
}

/// Row-major double-precision GEMM, C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, for the small
/// Float64 fits outside the engine (the attribute judge's logistic regressions).
public func doubleGEMM(transposeA: Bool = false, m: Int, n: Int, k: Int, _ a: UnsafePointer<Double>, lda: Int,
                       _ b: UnsafePointer<Double>, ldb: Int, beta: Double, _ c: UnsafeMutablePointer<Double>, ldc: Int) {
    cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS' own thread pool. One thread per MPI rank and one rank per core is the fast layout.
public enum BLAS {
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    public static var configuration: String {
        String(cString: openblas_get_config())
    }

    /// Measures this machine's sustained GEMM rate in `precision` with a large square product, in
    /// GFLOP/s (median of `repeats` timed products after one warm-up).
    public static func measurePeakGFLOPS(_ precision: Precision = .float32, size: Int = 1536, repeats: Int = 5) -> Double {
        let a = FloatBuffer(count: size * size), b = FloatBuffer(count: size * size), c = FloatBuffer(count: size * size)
        Philox(seed: 7, stream: .sampling).fillUniform(a.pointer, count: a.count, low: -1, high: 1, tag: 0, row: 0)
        Philox(seed: 7, stream: .sampling).fillUniform(b.pointer, count: b.count, low: -1, high: 1, tag: 1, row: 0)
        var seconds: [Double] = []
        for attempt in 0...repeats {
            let start = monotonicSeconds()
            gemm(precision, m: size, n: size, k: size, a.pointer, lda: size, b.pointer, ldb: size, beta: 0, c.pointer, ldc: size)
            if attempt > 0 { seconds.append(monotonicSeconds() - start) }
        }
        let flops = 2.0 * Double(size) * Double(size) * Double(size)
        return flops / median(seconds) / 1e9
    }
}

public func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
