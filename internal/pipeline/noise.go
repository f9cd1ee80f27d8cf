package pipeline

// shortTermStream is the index of the random stream (batch order,
// augmentation) of a candidate's short-term fine-tune within its
// iteration. By default each group has its own; with CommonBatches every
// candidate of an iteration shares stream 0, so the candidates differ only
// in their cut (common random numbers) and the comparison between them
// loses the noise of different batch orders.
func (e *evaluator) shortTermStream(group int) int {
	if e.o.CommonBatches {
		return 0
	}
	return group
}
