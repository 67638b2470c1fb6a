/// XXH64 (Yann Collet's xxHash, 64-bit variant): the dataset file's content checksum.
///
/// Four independent 64-bit lanes keep the multiplier busy, so hashing runs at memory speed
/// (several GB/s) and verifying the 2.5 GB full-CelebA file costs about a second. The output is
/// the standard XXH64 value, so `xxh64sum` can cross-check a file's content if ever needed.
public func xxHash64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    func rotateLeft(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    func round(_ accumulator: UInt64, _ lane: UInt64) -> UInt64 {
        rotateLeft(accumulator &+ lane &* prime2, 31) &* prime1
    }
    func merge(_ hash: UInt64, _ accumulator: UInt64) -> UInt64 {
        (hash ^ round(0, accumulator)) &* prime1 &+ prime4
    }
    func word64(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    let n = bytes.count
    var offset = 0
    var hash: UInt64
    if n >= 32 {
        var v1 = seed &+ prime1 &+ prime2, v2 = seed &+ prime2, v3 = seed, v4 = seed &- prime1
        while offset + 32 <= n {
            v1 = round(v1, word64(offset))
            v2 = round(v2, word64(offset + 8))
            v3 = round(v3, word64(offset + 16))
            v4 = round(v4, word64(offset + 24))
            offset += 32
        }
        hash = rotateLeft(v1, 1) &+ rotateLeft(v2, 7) &+ rotateLeft(v3, 12) &+ rotateLeft(v4, 18)
        hash = merge(merge(merge(merge(hash, v1), v2), v3), v4)
    } else {
        hash = seed &+ prime5
    }
    hash = hash &+ UInt64(n)

    while offset + 8 <= n {
        hash = rotateLeft(hash ^ round(0, word64(offset)), 27) &* prime1 &+ prime4
        offset += 8
    }
    if offset + 4 <= n {
        let word = UInt64(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        hash = rotateLeft(hash ^ word &* prime1, 23) &* prime2 &+ prime3
        offset += 4
    }
    while offset < n {
        hash = rotateLeft(hash ^ UInt64(bytes[offset]) &* prime5, 11) &* prime1
        offset += 1
    }

    hash ^= hash >> 33
    hash &*= prime2
    hash ^= hash >> 29
    hash &*= prime3
    hash ^= hash >> 32
    return hash
}
