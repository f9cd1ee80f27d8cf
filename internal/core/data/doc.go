// Package data provides image-classification datasets for pruning and
// fine-tuning: a data.csv or ImageFolder directory, or MNIST IDX files, decoded
// in pure Go, converted to the model's input shape, cached and batched.
//
// A dataset is opened once (Open or FromMNIST) and handed out as splits
// (train, val, test). Each split yields shuffled, normalised float32 batches in
// NCHW layout ready to be copied into a tensor:
//
//	ds, err := data.Open(dir, data.Options{Channels: 1, Height: 224, Width: 224})
//	train, err := ds.Split("train")
//	for b, err := range train.Batches(ctx, data.BatchOptions{BatchSize: 32, Shuffle: true, Epoch: e}) {
//		if err != nil { ... }
//		// b.X, b.Y, b.N
//	}
//
// Images are decoded (PNG, JPEG), converted and resized only the first time they
// are needed: the resulting uint8 C×H×W pixels stay cached in memory, so later
// epochs decode nothing. Normalisation and augmentation run on the cached bytes
// for every batch.
//
// Every error about bad input names the file and, for data.csv, the row
// ("data.csv row 17: image "x/a.png": ..."), so that the CLI can print it as is.
package data
