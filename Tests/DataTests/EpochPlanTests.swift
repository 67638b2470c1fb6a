import Testing
@testable import VAEData

// Training indices with gaps, as dataset.indices(in: .train) returns when valid and test images are
// interleaved.
private let trainingIndices: [Int32] = (0..<103).map { Int32($0 * 3 + 1) }

@Test(arguments: [1, 2, 3, 4])
func piecesOfEveryGlobalBatchMakeUpExactlyThatBatch(ranks: Int) {
    for batchSize in [1, 5, 8, 10] where batchSize >= ranks {
        for epoch in 0..<3 {
            let plan = EpochPlan(trainingIndices: trainingIndices, batchSize: batchSize, seed: 42, epoch: epoch)
            #expect(plan.stepsPerEpoch == trainingIndices.count / batchSize)
            var seen = [Int32]()
            for step in 0..<plan.stepsPerEpoch {
                let batch = plan.globalBatch(step: step)
                var joined = [Int32]()
                var sizes = [Int]()
                for rank in 0..<ranks {
                    let piece = plan.piece(step: step, rank: rank, ranks: ranks)
                    #expect(piece.offsetInGlobalBatch == joined.count, "pieces are contiguous and in rank order")
                    joined += piece.indices
                    sizes.append(piece.indices.count)
                }
                #expect(joined == Array(batch))
                #expect(sizes.max()! - sizes.min()! <= 1)
                seen += batch
            }
            // Each image at most once; exactly the incomplete last batch is dropped.
            #expect(Set(seen).count == seen.count)
            #expect(seen.count == trainingIndices.count - trainingIndices.count % batchSize)
            #expect(Set(seen).isSubset(of: Set(trainingIndices)))
        }
    }
}

@Test func epochOrderIsReproducibleFromTheSeed() {
    let plan = EpochPlan(trainingIndices: trainingIndices, batchSize: 8, seed: 42, epoch: 1)
    #expect(plan.order == EpochPlan(trainingIndices: trainingIndices, batchSize: 8, seed: 42, epoch: 1).order)
    #expect(plan.order != EpochPlan(trainingIndices: trainingIndices, batchSize: 8, seed: 42, epoch: 2).order)
    #expect(plan.order != EpochPlan(trainingIndices: trainingIndices, batchSize: 8, seed: 43, epoch: 1).order)
    #expect(Set(plan.order) == Set(trainingIndices))
    // The order is a shuffle, not the file order.
    #expect(plan.order != trainingIndices)
}

@Test func firstRanksTakeTheExtraImages() {
    #expect((0..<4).map { EpochPlan.pieceRange(batchSize: 10, rank: $0, ranks: 4) } == [0..<3, 3..<6, 6..<8, 8..<10])
    #expect((0..<3).map { EpochPlan.pieceRange(batchSize: 2, rank: $0, ranks: 3) } == [0..<1, 1..<2, 2..<2])
}
