import Testing
@testable import VAEData

@Test(arguments: [1, 3])
func loaderDeliversThePlansPiecesInOrder(ranks: Int) throws {
    let directory = try TemporaryDirectory()
    let dataset = try Dataset(path: try writeSyntheticDataset(in: directory, count: 40), verifyChecksum: true)
    let training = dataset.indices(in: .train)
    let batchSize = 7, seed: UInt64 = 11
    let imageValues = dataset.imageSize * dataset.imageSize * dataset.channels
    let stepsPerEpoch = training.count / batchSize

    for rank in 0..<ranks {
        // Start in the middle of epoch 2, as a resumed run does, and run past two epoch ends.
        let steps = (2 * stepsPerEpoch + 1)..<(4 * stepsPerEpoch + 2)
        let loader = BatchLoader(dataset: dataset, trainingIndices: training, batchSize: batchSize, seed: seed,
                                 rank: rank, ranks: ranks, steps: steps)
        #expect(loader.stepsPerEpoch == stepsPerEpoch)
        var epoch = 2, step = 1
        for _ in steps {
            let plan = EpochPlan(trainingIndices: training, batchSize: batchSize, seed: seed, epoch: epoch)
            let expected = plan.piece(step: step, rank: rank, ranks: ranks)
            let batch = loader.next()
            #expect(batch.epoch == epoch && batch.step == step)
            #expect(Array(batch.indices) == Array(expected.indices))
            #expect(batch.count == expected.indices.count)
            #expect(batch.offsetInGlobalBatch == expected.offsetInGlobalBatch)
            var largestError: Float = 0
            for (n, index) in batch.indices.enumerated() {
                let bytes = dataset.pixels(Int(index))
                for j in 0..<imageValues {
                    largestError = max(largestError, abs(batch.images[n * imageValues + j] - Float(bytes[j]) / 255))
                }
            }
            #expect(largestError < 1e-6)
            step += 1
            if step == stepsPerEpoch { (epoch, step) = (epoch + 1, 0) }
        }
    }
}

@Test func loaderStopsCleanlyInEveryState() throws {
    let directory = try TemporaryDirectory()
    let dataset = try Dataset(path: try writeSyntheticDataset(in: directory, count: 30), verifyChecksum: false)
    let training = dataset.indices(in: .train)
    for batchesTaken in [0, 1, 5] {
        let loader = BatchLoader(dataset: dataset, trainingIndices: training, batchSize: 4, seed: 1, rank: 0, ranks: 2,
                                 steps: 0..<100)
        for _ in 0..<batchesTaken { _ = loader.next() }
        loader.stop()
        loader.stop()
    }
    // Dropping a running loader without stop() joins its thread in deinit, as does dropping one
    // whose thread has already delivered every step.
    for steps in [0..<100, 3..<4] {
        _ = BatchLoader(dataset: dataset, trainingIndices: training, batchSize: 4, seed: 1, rank: 0, ranks: 1,
                        steps: steps).next()
    }
}
