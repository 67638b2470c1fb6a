import CTurboJPEG
import Dispatch
import Foundation
import VAEEngine

/// Decodes JPEG files to RGB with libjpeg-turbo, at full resolution. One per thread: the handle and
/// both buffers are reused for every image.
public final class JPEGDecoder {
    private let handle: tjhandle
    private var fileBytes = [UInt8]()
    public private(set) var rgb = [UInt8]()
    public private(set) var width = 0
    public private(set) var height = 0

    public init() {
        guard let handle = tjInitDecompress() else { fatalError("libjpeg-turbo could not create a decompressor") }
        self.handle = handle
    }

    deinit { tjDestroy(handle) }

    /// Decodes `path` into `rgb` (width x height x 3 bytes, HWC). Anything libjpeg-turbo reports,
    /// warnings included (a truncated file "decodes" with grey blocks), is an error.
    public func decode(path: String) throws(DataError) {
        let size = try readFile(path, into: &fileBytes)
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colourspace: Int32 = 0
        let headerStatus = fileBytes.withUnsafeBufferPointer { file in
            tjDecompressHeader3(handle, file.baseAddress, UInt(size), &width, &height, &subsampling, &colourspace)
        }
        guard headerStatus == 0 else { throw DataError.badImage(path: path, problem: "not a JPEG: \(message())") }
        self.width = Int(width)
        self.height = Int(height)
        if rgb.count < self.width * self.height * 3 { rgb = [UInt8](repeating: 0, count: self.width * self.height * 3) }
        let status = fileBytes.withUnsafeBufferPointer { file in
            rgb.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, file.baseAddress, UInt(size), out.baseAddress, width, 0, height,
                              Int32(TJPF_RGB.rawValue), TJFLAG_STOPONWARNING)
            }
        }
        guard status == 0 else { throw DataError.badImage(path: path, problem: "does not decode: \(message())") }
    }

    private func message() -> String { String(cString: tjGetErrorStr2(handle)) }
}

public struct PreparationOptions: Sendable {
    public var celebaDirectory: String
    public var outputPath: String
    public var crop: CropBox
    public var imageSize: Int
    /// nil keeps all partitions.
    public var partition: Partition?
    /// Keep only the first `limit` selected images.
    public var limit: Int?
    public var skipBad: Bool
    public var threads: Int

    public init(celebaDirectory: String, outputPath: String, crop: CropBox = .celebA, imageSize: Int = 64,
                partition: Partition? = nil, limit: Int? = nil, skipBad: Bool = false,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.celebaDirectory = celebaDirectory
        self.outputPath = outputPath
        self.crop = crop
        self.imageSize = imageSize
        self.partition = partition
        self.limit = limit
        self.skipBad = skipBad
        self.threads = threads
    }
}

public struct PreparationReport: Sendable {
    public var written = 0
    public var counts = [Partition: Int]()
    /// File name and problem (a line naming the path) of each image skipped with skipBad.
    public var skipped = [(file: String, problem: String)]()
    public var seconds = 0.0
}

/// Decodes, crops and resizes the selected CelebA images on `threads` threads and writes them,
/// in annotation order, to a dataset file. `progress(done, total)` is called after each chunk.
public func prepareCelebA(_ options: PreparationOptions,
                          progress: (Int, Int) -> Void = { _, _ in }) throws -> PreparationReport {
    let started = monotonicSeconds()
    let annotations = try CelebAAnnotations(directory: options.celebaDirectory)
    let imageDirectory = options.celebaDirectory + "/" + CelebAAnnotations.imageDirectory
    try requireDirectory(imageDirectory, holding: "CelebA's aligned JPEGs")
    let selected = Array(annotations.entries.filter { options.partition == nil || $0.partition == options.partition }
        .prefix(options.limit ?? Int.max))
    let selection = "partition \(options.partition?.name ?? "all"), limit \(options.limit.map(String.init) ?? "none")"
    guard !selected.isEmpty else {
        throw DataError.invalidSetting("\(options.celebaDirectory): no images selected (\(selection))")
    }

    let provenance = Provenance(source: "CelebA at \(options.celebaDirectory)", crop: options.crop,
                                resize: "exact area average", selection: selection)
    let writer = try DatasetWriter(path: options.outputPath, imageSize: options.imageSize, channels: 3,
                                   attributeNames: annotations.attributeNames, provenance: provenance)

    // Images go through in chunks: all threads decode one chunk, then it is written in order.
    let threads = options.threads
    let imagesPerThread = 64
    let workers = (0..<threads).map { _ in
        PreparationWorker(crop: options.crop, imageSize: options.imageSize, capacity: imagesPerThread)
    }
    var report = PreparationReport()
    for chunkStart in stride(from: 0, to: selected.count, by: imagesPerThread * threads) {
        let chunk = selected[chunkStart..<min(chunkStart + imagesPerThread * threads, selected.count)]
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            workers[thread].process(chunk, thread: thread, threads: threads, imageDirectory: imageDirectory)
        }
        for (k, entry) in chunk.enumerated() {
            let worker = workers[k % threads]
            if let failure = worker.failures[k] {
                guard options.skipBad else { throw failure }
                report.skipped.append((entry.fileName, failure.description))
                continue
            }
            try writer.append(pixels: worker.pixels + (k / threads) * worker.pixelBytes, attributes: entry.attributes,
                              partition: entry.partition, imageNumber: entry.imageNumber)
            report.counts[entry.partition, default: 0] += 1
        }
        progress(chunkStart + chunk.count, selected.count)
    }
    try writer.finish()
    report.written = writer.count
    report.seconds = monotonicSeconds() - started
    return report
}

/// One thread's share of a chunk: images thread, thread + threads, ... of it. Each worker is used by
/// one thread at a time and owns everything it writes, so the threads share nothing mutable.
private final class PreparationWorker: @unchecked Sendable {
    let decoder = JPEGDecoder()
    let resizer: CropResizer
    let pixelBytes: Int
    /// The worker's n-th image of the chunk is at pixels + n * pixelBytes.
    let pixels: UnsafeMutablePointer<UInt8>
    /// Images of the current chunk that failed, by position in the chunk.
    private(set) var failures = [Int: DataError]()

    init(crop: CropBox, imageSize: Int, capacity: Int) {
        resizer = CropResizer(crop: crop, outputSize: imageSize)
        pixelBytes = imageSize * imageSize * 3
        pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * pixelBytes)
    }

    deinit { pixels.deallocate() }

    func process(_ chunk: ArraySlice<CelebAEntry>, thread: Int, threads: Int, imageDirectory: String) {
        failures.removeAll()
        for k in stride(from: thread, to: chunk.count, by: threads) {
            let path = imageDirectory + "/" + chunk[chunk.startIndex + k].fileName
            do {
                try decoder.decode(path: path)
                resizer.resize(rgb: decoder.rgb, width: decoder.width, height: decoder.height,
                               into: pixels + (k / threads) * pixelBytes)
            } catch {
                failures[k] = error
            }
        }
    }
}
