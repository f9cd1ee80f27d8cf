package data

import (
	"context"
	"fmt"
	"image"
	"sync"
	"sync/atomic"
)

// cacheEntry holds one sample's prepared pixels. Readers take the atomic fast
// path; the mutex makes concurrent first requests for the same sample (two
// candidates evaluating val at once) decode it once.
type cacheEntry struct {
	pix atomic.Pointer[[]uint8]
	mu  sync.Mutex
}

// CacheStats counts cache use since the dataset was opened.
type CacheStats struct {
	Hits   int64 // samples served from the cache
	Misses int64 // samples decoded (the first use of each, and retries after errors)
}

// CacheStats returns the cache counters.
func (d *Dataset) CacheStats() CacheStats {
	return CacheStats{Hits: d.hits.Load(), Misses: d.misses.Load()}
}

// pixels returns sample i as cached uint8 C×H×W, decoding it on first use.
// The slice is shared: callers must not modify it.
func (d *Dataset) pixels(i int) ([]uint8, error) {
	e := &d.cache[i]
	if p := e.pix.Load(); p != nil {
		d.hits.Add(1)
		return *p, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pix.Load(); p != nil {
		d.hits.Add(1)
		return *p, nil
	}
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	d.misses.Add(1)
	img, err := d.sourceImage(i)
	if err != nil {
		return nil, err
	}
	pix := prepare(img, d.opts.Channels, d.opts.Height, d.opts.Width)
	e.pix.Store(&pix)
	return pix, nil
}

// sourceImage returns sample i as stored: decoded from its file, not yet
// converted or resized. Errors name the sample.
func (d *Dataset) sourceImage(i int) (image.Image, error) {
	s := &d.samples[i]
	if s.mem != nil {
		return s.mem, nil
	}
	img, err := decodeFile(s.path)
	if err != nil {
		return nil, d.sampleErr(i, err)
	}
	return img, nil
}

// sampleErr prefixes err with where sample i comes from.
func (d *Dataset) sampleErr(i int, err error) error {
	s := &d.samples[i]
	if s.row > 0 {
		return fmt.Errorf("%s row %d: image %q: %w", d.origin, s.row, s.name, err)
	}
	if s.path != "" {
		return fmt.Errorf("image %q: %w", s.path, err)
	}
	return fmt.Errorf("%s: sample %q: %w", d.origin, s.name, err)
}

// fetch returns the pixels of the samples idx, decoding the missing ones in
// parallel (bounded by Options.Workers across the whole dataset). On error it
// reports the first failing sample in idx order, so the message does not
// depend on goroutine scheduling.
func (d *Dataset) fetch(ctx context.Context, idx []int) ([][]uint8, error) {
	out := make([][]uint8, len(idx))
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		if p := d.cache[i].pix.Load(); p != nil {
			d.hits.Add(1)
			out[k] = *p
			continue
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k], errs[k] = d.pixels(i)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
