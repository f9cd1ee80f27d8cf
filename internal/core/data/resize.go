package data

import (
	"image"
	"math"
)

// resizeGray resamples a gray image to w×h with the Catmull-Rom kernel,
// widened by the scale factor when shrinking, as x/image/draw's CatmullRom
// does, but on the one plane: x/image/draw only has fast paths into RGBA
// images, so a gray X-ray cost four channels of filtering there. The filter
// is separable: rows first into a float32 buffer, then columns.
func resizeGray(src *image.Gray, w, h int) []uint8 {
	b := src.Bounds()
	sw, sh := b.Dx(), b.Dy()
	xs := filterTaps(sw, w)
	ys := filterTaps(sh, h)
	tmp := make([]float32, sh*w)
	for y := 0; y < sh; y++ {
		i := src.PixOffset(b.Min.X, b.Min.Y+y)
		row := src.Pix[i : i+sw]
		out := tmp[y*w : (y+1)*w]
		for x, t := range xs {
			var acc float32
			for k, wt := range t.w {
				acc += wt * float32(row[t.first+k])
			}
			out[x] = acc
		}
	}
	dst := make([]uint8, w*h)
	col := make([]float32, w)
	for y, t := range ys {
		clear(col)
		for k, wt := range t.w {
			src := tmp[(t.first+k)*w : (t.first+k+1)*w]
			for x, v := range src {
				col[x] += wt * v
			}
		}
		out := dst[y*w : (y+1)*w]
		for x, v := range col {
			out[x] = clamp8(v)
		}
	}
	return dst
}

// taps are one output sample's source range and normalised weights.
type taps struct {
	first int
	w     []float32
}

// filterTaps lays out the Catmull-Rom taps that map n source samples to m:
// output i is centred on source coordinate (i+0.5)·n/m − 0.5; when shrinking,
// the kernel is stretched by n/m so it averages over the pixels it covers.
// Taps past the border are dropped and the rest renormalised.
func filterTaps(n, m int) []taps {
	scale := float64(n) / float64(m)
	stretch := math.Max(scale, 1)
	radius := 2 * stretch
	out := make([]taps, m)
	for i := range out {
		c := (float64(i)+0.5)*scale - 0.5
		lo := max(0, int(math.Ceil(c-radius)))
		hi := min(n-1, int(math.Floor(c+radius)))
		ws := make([]float32, 0, hi-lo+1)
		var sum float64
		for j := lo; j <= hi; j++ {
			v := catmullRom((float64(j) - c) / stretch)
			ws = append(ws, float32(v))
			sum += v
		}
		for k := range ws {
			ws[k] = float32(float64(ws[k]) / sum)
		}
		out[i] = taps{first: lo, w: ws}
	}
	return out
}

// catmullRom is the cubic kernel with B=0, C=0.5 (support 2).
func catmullRom(t float64) float64 {
	t = math.Abs(t)
	switch {
	case t < 1:
		return (1.5*t-2.5)*t*t + 1
	case t < 2:
		return ((-0.5*t+2.5)*t-4)*t + 2
	}
	return 0
}

func clamp8(v float32) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}
