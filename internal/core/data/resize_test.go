package data

import (
	"image"
	"math/rand/v2"
	"testing"

	"golang.org/x/image/draw"
)

// drawGray is the reference: x/image/draw's Catmull-Rom into RGBA, red plane.
func drawGray(src *image.Gray, w, h int) []uint8 {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	out := make([]uint8, w*h)
	for i := range out {
		out[i] = dst.Pix[4*i]
	}
	return out
}

func noiseGray(w, h int, seed uint64) *image.Gray {
	r := rand.New(rand.NewPCG(seed, 7))
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			// Smooth structure plus noise, like a radiograph.
			g.Pix[y*g.Stride+x] = uint8((x*3+y*2)%200 + r.IntN(56))
		}
	}
	return g
}

// TestResizeGrayMatchesXImageDraw: the one-plane resampler gives what
// x/image/draw's Catmull-Rom gives, shrinking and enlarging, within a level
// or two of rounding (draw works in 16-bit fixed point).
func TestResizeGrayMatchesXImageDraw(t *testing.T) {
	for _, c := range []struct{ sw, sh, w, h int }{
		{640, 480, 224, 224}, {640, 480, 320, 240}, {28, 28, 32, 32}, {100, 37, 41, 90}, {7, 5, 3, 11},
	} {
		src := noiseGray(c.sw, c.sh, uint64(c.sw*c.sh))
		got, want := resizeGray(src, c.w, c.h), drawGray(src, c.w, c.h)
		worst := 0
		for i := range got {
			worst = max(worst, abs(int(got[i])-int(want[i])))
		}
		if worst > 2 {
			t.Errorf("%dx%d→%dx%d: differs from x/image/draw by up to %d levels", c.sw, c.sh, c.w, c.h, worst)
		}
	}
	// A sub-image is read from its own bounds.
	full := noiseGray(64, 48, 3)
	sub := full.SubImage(image.Rect(10, 8, 50, 40)).(*image.Gray)
	got := resizeGray(sub, 20, 16)
	flat := image.NewGray(image.Rect(0, 0, 40, 32))
	for y := 0; y < 32; y++ {
		copy(flat.Pix[y*40:], full.Pix[(y+8)*full.Stride+10:(y+8)*full.Stride+50])
	}
	if want := resizeGray(flat, 20, 16); string(got) != string(want) {
		t.Error("a sub-image resizes differently from the same pixels copied out")
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// BenchmarkResizeGray compares, side by side, the one-plane resampler with
// x/image/draw's RGBA path on a chest X-ray sized image (640×480 → 224×224).
func BenchmarkResizeGray(b *testing.B) {
	src := noiseGray(640, 480, 1)
	b.Run("plane", func(b *testing.B) {
		for b.Loop() {
			resizeGray(src, 224, 224)
		}
	})
	b.Run("x-image-draw-rgba", func(b *testing.B) {
		for b.Loop() {
			drawGray(src, 224, 224)
		}
	})
}
