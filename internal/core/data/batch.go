package data

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
)

// Split is one split of a Dataset. It is cheap to create and safe for
// concurrent use.
type Split struct {
	d    *Dataset
	name string
	idx  []int // indices into d.samples
}

// Name returns the split's name: train, val or test.
func (s *Split) Name() string { return s.name }

// Len returns the number of samples in the split.
func (s *Split) Len() int { return len(s.idx) }

// Dataset returns the dataset the split belongs to.
func (s *Split) Dataset() *Dataset { return s.d }

// Label returns the class index of sample i (0 ≤ i < Len).
func (s *Split) Label(i int) int { return s.d.samples[s.idx[i]].label }

// Source returns what identifies sample i to a user: its path as written in
// data.csv or relative to the dataset directory, or an in-memory name.
func (s *Split) Source(i int) string { return s.d.samples[s.idx[i]].name }

// Image returns sample i as prepared for the model (uint8, C×H×W, not
// normalised), decoding it on first use. The slice is the cached copy and must
// not be modified.
func (s *Split) Image(i int) ([]uint8, error) { return s.d.pixels(s.idx[i]) }

// Subset is a fixed sample of n of the split's samples, drawn by seed and
// kept in split order; the split itself when n is 0 or not below Len. The
// same (n, seed) always gives the same samples, so every candidate of a
// search is validated on the same ones.
func (s *Split) Subset(n int, seed int64) *Split {
	if n <= 0 || n >= len(s.idx) {
		return s
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed5ab5e7))
	pick := r.Perm(len(s.idx))[:n]
	slices.Sort(pick)
	idx := make([]int, n)
	for i, p := range pick {
		idx[i] = s.idx[p]
	}
	return &Split{d: s.d, name: s.name, idx: idx}
}

// Preload decodes every sample of the split into the cache, so that bad files
// are reported before a long run starts rather than in the middle of it.
func (s *Split) Preload(ctx context.Context) error {
	// Chunks bound the number of goroutines parked on the decode semaphore.
	const chunk = 1024
	for lo := 0; lo < len(s.idx); lo += chunk {
		if _, err := s.d.fetch(ctx, s.idx[lo:min(lo+chunk, len(s.idx))]); err != nil {
			return err
		}
	}
	return nil
}

// BatchOptions control one pass (epoch) over a split.
type BatchOptions struct {
	// BatchSize is the number of samples per batch (required, > 0).
	BatchSize int
	// Shuffle visits the samples in a random order determined by Seed and
	// Epoch: the same pair always gives the same order.
	Shuffle bool
	Seed    int64
	Epoch   int
	// DropLast skips a final batch smaller than BatchSize.
	DropLast bool
	// MaxBatches stops the pass after that many batches (a step budget);
	// 0 means the whole epoch.
	MaxBatches int
	// Flip mirrors each sample horizontally with probability 1/2.
	Flip bool
	// CropPad, if > 0, pads each sample by CropPad zero pixels on every side and
	// crops a random H×W window back out (random translation by up to CropPad).
	CropPad int
	// Reuse recycles batch buffers: a Batch is then only valid until the loop
	// asks for the next one. It saves allocating N·C·H·W floats per step for
	// callers that copy each batch into a tensor right away.
	Reuse bool
}

// Batch is a group of samples ready for the model.
type Batch struct {
	X     []float32 // N·C·H·W normalised pixels, NCHW
	Y     []int64   // N class indices
	N     int       // samples in this batch (the last one may be short)
	Index []int     // the samples' positions in the split (for Split.Source)
}

func (o BatchOptions) check() error {
	if o.BatchSize <= 0 {
		return fmt.Errorf("data: BatchSize must be > 0, got %d", o.BatchSize)
	}
	if o.CropPad < 0 {
		return fmt.Errorf("data: CropPad must be ≥ 0, got %d", o.CropPad)
	}
	if o.MaxBatches < 0 {
		return fmt.Errorf("data: MaxBatches must be ≥ 0, got %d", o.MaxBatches)
	}
	return nil
}

// NumBatches returns how many batches Batches yields with o.
func (s *Split) NumBatches(o BatchOptions) int {
	if o.BatchSize <= 0 {
		return 0
	}
	n := len(s.idx) / o.BatchSize
	if !o.DropLast && len(s.idx)%o.BatchSize != 0 {
		n++
	}
	if o.MaxBatches > 0 {
		n = min(n, o.MaxBatches)
	}
	return n
}

// Order returns the split positions in the order one pass visits them.
func (s *Split) Order(o BatchOptions) []int {
	order := make([]int, len(s.idx))
	for i := range order {
		order[i] = i
	}
	if o.Shuffle {
		r := rand.New(rand.NewPCG(mix64(uint64(o.Seed)), mix64(uint64(o.Epoch)^0x9e3779b97f4a7c15)))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}

// Batches returns an iterator over one pass of the split. The next batch is
// prepared in the background while the caller works on the current one.
// An error (a bad image, a cancelled ctx) is yielded once as (nil, err) and
// ends the pass; breaking out of the loop stops the background work before
// the loop returns.
func (s *Split) Batches(ctx context.Context, o BatchOptions) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		if err := o.check(); err != nil {
			yield(nil, err)
			return
		}
		order := s.Order(o)
		nb := s.NumBatches(o)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()

		type result struct {
			b   *Batch
			err error
		}
		// One batch waits in the channel while the next is being built: enough
		// to hide decode and normalisation behind a training step.
		ready := make(chan result, 1)
		free := make(chan *Batch, 3)
		go func() {
			defer close(ready)
			for k := 0; k < nb; k++ {
				var buf *Batch
				select {
				case buf = <-free:
				default:
				}
				pos := order[k*o.BatchSize : min((k+1)*o.BatchSize, len(order))]
				b, err := s.assemble(ctx, pos, k, o, buf)
				select {
				case ready <- result{b, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		// Draining on every exit path ensures the producer has stopped (and no
		// longer touches a batch) by the time the loop returns.
		defer func() {
			cancel()
			for range ready {
			}
		}()
		delivered := 0
		for r := range ready {
			if r.err != nil {
				yield(nil, r.err)
				return
			}
			if !yield(r.b, nil) {
				return
			}
			delivered++
			if o.Reuse {
				select {
				case free <- r.b:
				default:
				}
			}
		}
		if delivered < nb {
			err := ctx.Err()
			if err == nil {
				err = errors.New("data: batch producer stopped early")
			}
			yield(nil, err)
		}
	}
}

// assemble builds batch number k from the split positions pos, into buf if
// it is non-nil.
func (s *Split) assemble(ctx context.Context, pos []int, k int, o BatchOptions, buf *Batch) (*Batch, error) {
	d := s.d
	idx := make([]int, len(pos))
	for i, p := range pos {
		idx[i] = s.idx[p]
	}
	pix, err := d.fetch(ctx, idx)
	if err != nil {
		return nil, err
	}
	c, h, w := d.opts.Channels, d.opts.Height, d.opts.Width
	chw := c * h * w
	n := len(pos)
	b := buf
	if b == nil || cap(b.X) < n*chw {
		b = &Batch{X: make([]float32, n*chw), Y: make([]int64, n), Index: make([]int, n)}
	}
	b.X, b.Y, b.Index, b.N = b.X[:n*chw], b.Y[:n], b.Index[:n], n
	augment := o.Flip || o.CropPad > 0
	for j := range n {
		b.Y[j] = int64(d.samples[idx[j]].label)
		b.Index[j] = pos[j]
		x := b.X[j*chw : (j+1)*chw]
		if !augment {
			for ci := range c {
				lut := &d.lut[ci]
				src := pix[j][ci*h*w : (ci+1)*h*w]
				dst := x[ci*h*w : (ci+1)*h*w]
				for i, p := range src {
					dst[i] = lut[p]
				}
			}
			continue
		}
		// Each sample's draw depends only on (seed, epoch, place in the epoch),
		// so augmentation is reproducible whatever the decode scheduling.
		r := rand.New(rand.NewPCG(mix64(uint64(o.Seed)^mix64(uint64(o.Epoch))), uint64(k*o.BatchSize+j)))
		dy, dx := 0, 0
		if o.CropPad > 0 {
			dy = r.IntN(2*o.CropPad+1) - o.CropPad
			dx = r.IntN(2*o.CropPad+1) - o.CropPad
		}
		flip := o.Flip && r.IntN(2) == 1
		augmentInto(x, pix[j], c, h, w, dy, dx, flip, d.lut)
	}
	return b, nil
}

// augmentInto writes src shifted by (dy, dx) with zero fill (the same as a
// random crop from a zero-padded image), optionally mirrored, normalised.
func augmentInto(dst []float32, src []uint8, c, h, w, dy, dx int, flip bool, lut [][256]float32) {
	for ci := range c {
		l := &lut[ci]
		plane := src[ci*h*w : (ci+1)*h*w]
		out := dst[ci*h*w : (ci+1)*h*w]
		for y := range h {
			sy := y + dy
			for x := range w {
				cx := x
				if flip {
					cx = w - 1 - x
				}
				sx := cx + dx
				if sy < 0 || sy >= h || sx < 0 || sx >= w {
					out[y*w+x] = l[0]
				} else {
					out[y*w+x] = l[plane[sy*w+sx]]
				}
			}
		}
	}
}
