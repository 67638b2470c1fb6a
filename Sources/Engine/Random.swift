/// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11).
///
/// Every random value is a pure function of (seed, stream, counter), so a value can be
/// computed anywhere without replaying a sequence. Training relies on this: the noise for
/// image `i` of the global batch at step `s` is the same whichever rank computes it, and
/// whatever the number of ranks.
public struct Philox: Sendable {
    public let key: (UInt32, UInt32)

    /// `stream` separates independent uses of one seed (initialisation, noise, shuffling...).
    public init(seed: UInt64, stream: Stream) {
        let mixed = seed &* 0x9E37_79B9_7F4A_7C15 ^ stream.rawValue &* 0xD1B5_4A32_D192_ED03
        key = (UInt32(truncatingIfNeeded: mixed), UInt32(truncatingIfNeeded: mixed >> 32))
    }

    public enum Stream: UInt64, Sendable {
        case initialization = 1, noise = 2, shuffle = 3, synthetic = 4, sampling = 5, judging = 6
    }

    /// Four independent 32-bit words for the 128-bit counter (c0, c1, c2, c3).
    @inline(__always)
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        var x = (c0, c1, c2, c3)
        var k = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x.0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x.2)
            x = (UInt32(truncatingIfNeeded: p1 >> 32) ^ x.1 ^ k.0, UInt32(truncatingIfNeeded: p1),
                 UInt32(truncatingIfNeeded: p0 >> 32) ^ x.3 ^ k.1, UInt32(truncatingIfNeeded: p0))
            k = (k.0 &+ 0x9E37_79B9, k.1 &+ 0xBB67_AE85)
        }
        return x
    }

    /// Uniform in the open interval (0, 1): never 0, so its logarithm is finite.
    @inline(__always)
    public static func unit(_ word: UInt32) -> Float {
        (Float(word >> 8) + 0.5) * (1.0 / 16_777_216.0)
    }

    /// Uniform (0, 1) value number `index` of row `row` under counter prefix `tag`.
    public func uniform(tag: UInt64, row: UInt32, index: UInt32) -> Float {
        let b = block(index / 4, row, UInt32(truncatingIfNeeded: tag), UInt32(truncatingIfNeeded: tag >> 32))
        switch index % 4 {
        case 0: return Philox.unit(b.0)
        case 1: return Philox.unit(b.1)
        case 2: return Philox.unit(b.2)
        default: return Philox.unit(b.3)
        }
    }

    /// Fills `out[0..<count]` with uniform (low, high) values; value j depends only on (tag, row, j).
    public func fillUniform(_ out: UnsafeMutablePointer<Float>, count: Int, low: Float, high: Float,
                            tag: UInt64, row: UInt32) {
        fill(out, count: count, tag: tag, row: row) { b in
            let span = high - low
            return (low + span * Philox.unit(b.0), low + span * Philox.unit(b.1),
                    low + span * Philox.unit(b.2), low + span * Philox.unit(b.3))
        }
    }

    /// Fills `out[0..<count]` with standard normal values (Box-Muller, four per Philox block);
    /// value j depends only on (tag, row, j).
    public func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, tag: UInt64, row: UInt32) {
        fill(out, count: count, tag: tag, row: row) { b in
            let r0 = (-2 * logf(Philox.unit(b.0))).squareRoot(), a0 = 2 * Float.pi * Philox.unit(b.1)
            let r1 = (-2 * logf(Philox.unit(b.2))).squareRoot(), a1 = 2 * Float.pi * Philox.unit(b.3)
            return (r0 * cosf(a0), r0 * sinf(a0), r1 * cosf(a1), r1 * sinf(a1))
        }
    }

    /// Block j/4 of (tag, row) supplies values j..<j+4.
    @inline(__always)
    private func fill(_ out: UnsafeMutablePointer<Float>, count: Int, tag: UInt64, row: UInt32,
                      _ transform: ((UInt32, UInt32, UInt32, UInt32)) -> (Float, Float, Float, Float)) {
        var j = 0
        while j < count {
            let values = transform(block(UInt32(j / 4), row, UInt32(truncatingIfNeeded: tag),
                                         UInt32(truncatingIfNeeded: tag >> 32)))
            out[j] = values.0
            if j + 1 < count { out[j + 1] = values.1 }
            if j + 2 < count { out[j + 2] = values.2 }
            if j + 3 < count { out[j + 3] = values.3 }
            j += 4
        }
    }

    /// A uniformly random permutation of 0..<n (Fisher-Yates), determined by (seed, stream, tag).
    public func permutation(_ n: Int, tag: UInt64) -> [Int32] {
        var order = (0..<n).map { Int32($0) }
        var i = n - 1
        while i > 0 {
            // 64 random bits per draw keep the modulo bias below 2^-30 for any realistic n.
            let b = block(UInt32(truncatingIfNeeded: i), UInt32(truncatingIfNeeded: i >> 32),
                          UInt32(truncatingIfNeeded: tag), UInt32(truncatingIfNeeded: tag >> 32))
            let r = (UInt64(b.0) << 32 | UInt64(b.1)) % UInt64(i + 1)
            order.swapAt(i, Int(r))
            i -= 1
        }
        return order
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
