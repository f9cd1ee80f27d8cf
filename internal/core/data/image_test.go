package data

import (
	"image"
	"image/color"
	"math"
	"testing"
)

func checker(w, h int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			if (x+y)%2 == 0 {
				g.Pix[y*w+x] = 255
			}
		}
	}
	return g
}

func within(t *testing.T, what string, got []uint8, want float64, tol float64) {
	t.Helper()
	for i, v := range got {
		if math.Abs(float64(v)-want) > tol {
			t.Fatalf("%s: pixel %d = %d, want %.1f±%.0f", what, i, v, want, tol)
		}
	}
}

func TestResize(t *testing.T) {
	// A constant image stays constant, whatever the scale.
	within(t, "gray 640x480→224", prepare(constGray(640, 480, 77), 1, 224, 224), 77, 0)
	within(t, "gray 5x3→17x9", prepare(constGray(5, 3, 200), 1, 9, 17), 200, 0)

	// A pixel checker has no detail left at half size: every output pixel is
	// the average. Catmull-Rom's negative lobes, renormalised at the border of
	// a 4×4 image, leave a few levels of ripple there.
	within(t, "checker 4x4→2x2", prepare(checker(4, 4), 1, 2, 2), 127.5, 4)
	// On a large image (an X-ray at input size) it must be flat: a filter that
	// did not widen when shrinking (nearest, plain bilinear) would alias.
	within(t, "checker 640x480→224", prepare(checker(640, 480), 1, 224, 224), 127.5, 2)

	// A ramp halves to the means of pixel pairs.
	ramp := image.NewGray(image.Rect(0, 0, 8, 1))
	for x := range 8 {
		ramp.Pix[x] = uint8(32 * x)
	}
	got := prepare(ramp, 1, 1, 4)
	for i, want := range []float64{16, 80, 144, 208} {
		if math.Abs(float64(got[i])-want) > 2 {
			t.Errorf("ramp 8→4: %v, want ≈ [16 80 144 208]", got)
			break
		}
	}

	// Same size is copied exactly, gray or colour.
	g := checker(3, 2)
	if got := prepare(g, 1, 2, 3); string(got) != string(g.Pix) {
		t.Errorf("same size gray: %v, want %v", got, g.Pix)
	}
	rgb := prepare(constRGB(3, 2, color.RGBA{1, 2, 3, 255}), 3, 2, 3)
	for c, want := range []uint8{1, 2, 3} {
		within(t, "same size rgb", rgb[c*6:(c+1)*6], float64(want), 0)
	}
}

func TestChannelConversion(t *testing.T) {
	// Gray to RGB replicates the plane.
	out := prepare(checker(8, 8), 3, 4, 4)
	for i := range 16 {
		if out[i] != out[16+i] || out[i] != out[32+i] {
			t.Fatalf("gray→RGB planes differ at %d: %d %d %d", i, out[i], out[16+i], out[32+i])
		}
	}
	// RGB to gray is the luma (Go's BT.601 weights).
	c := color.RGBA{200, 100, 50, 255}
	want := color.GrayModel.Convert(c).(color.Gray).Y
	within(t, "RGB→gray", prepare(constRGB(10, 10, c), 1, 5, 5), float64(want), 0)
	within(t, "NRGBA→gray", prepare(&image.NRGBA{Pix: []uint8{200, 100, 50, 255}, Stride: 4, Rect: image.Rect(0, 0, 1, 1)}, 1, 2, 2), float64(want), 0)
	// RGB stays RGB.
	out = prepare(constRGB(10, 10, c), 3, 5, 5)
	for ch, v := range []uint8{200, 100, 50} {
		within(t, "RGB→RGB", out[ch*25:(ch+1)*25], float64(v), 0)
	}
	// JPEG colour arrives as YCbCr: its Y plane is the luma.
	ycc := image.NewYCbCr(image.Rect(0, 0, 4, 4), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = 90
	}
	for i := range ycc.Cb {
		ycc.Cb[i], ycc.Cr[i] = 128, 128
	}
	within(t, "YCbCr→gray", prepare(ycc, 1, 2, 2), 90, 0)
	within(t, "YCbCr→RGB", prepare(ycc, 3, 2, 2), 90, 0)
}

func TestGray16(t *testing.T) {
	// 16-bit gray X-rays scale down to 8 bits, rounding.
	for _, tc := range []struct {
		v    uint16
		want uint8
	}{{0, 0}, {0xffff, 255}, {0x8080, 128}, {0x0101, 1}, {0x0080, 0}, {0x0081, 1}} {
		g := image.NewGray16(image.Rect(0, 0, 6, 4))
		for y := range 4 {
			for x := range 6 {
				g.SetGray16(x, y, color.Gray16{Y: tc.v})
			}
		}
		within(t, "gray16→gray", prepare(g, 1, 4, 6), float64(tc.want), 0)
		within(t, "gray16→RGB", prepare(g, 3, 2, 3), float64(tc.want), 0)
	}

	// Through a PNG file and Open, resized like an X-ray would be.
	dir := t.TempDir()
	g := image.NewGray16(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			g.SetGray16(x, y, color.Gray16{Y: 0xc0c0})
		}
	}
	saveImage(t, dir, "xray/a.png", g)
	o := grayOptions(16)
	o.ValFraction = -1
	ds, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ds.Split(Train)
	pix, err := sp.Image(0)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "16-bit PNG", pix, 0xc0, 0)
}

func TestJPEGFile(t *testing.T) {
	dir := t.TempDir()
	saveImage(t, dir, "a/gray.jpg", constGray(32, 24, 60))
	saveImage(t, dir, "a/rgb.jpeg", constRGB(32, 24, color.RGBA{250, 10, 120, 255}))
	ds, err := Open(dir, Options{Channels: 3, Height: 8, Width: 8, ValFraction: -1})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ds.Split(Train)
	gray, err := sp.Image(0)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "gray JPEG", gray, 60, 1)
	rgb, err := sp.Image(1)
	if err != nil {
		t.Fatal(err)
	}
	for c, v := range []float64{250, 10, 120} {
		within(t, "RGB JPEG", rgb[c*64:(c+1)*64], v, 4)
	}
}

func TestNormalisation(t *testing.T) {
	dir := t.TempDir()
	saveImage(t, dir, "c/a.png", constRGB(2, 2, color.RGBA{255, 0, 128, 255}))
	tests := []struct {
		name string
		o    Options
		want []float32 // per channel
	}{
		{"imagenet", Options{Channels: 3, Height: 2, Width: 2},
			[]float32{(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128.0/255 - 0.406) / 0.225}},
		{"gray default", Options{Channels: 1, Height: 2, Width: 2},
			[]float32{(float32(color.GrayModel.Convert(color.RGBA{255, 0, 128, 255}).(color.Gray).Y)/255 - 0.5) / 0.5}},
		{"broadcast", Options{Channels: 3, Height: 2, Width: 2, Mean: []float32{0}, Std: []float32{1}},
			[]float32{1, 0, 128.0 / 255}},
		{"per channel", Options{Channels: 3, Height: 2, Width: 2, Mean: []float32{1, 0, 0.5}, Std: []float32{2, 0.5, 0.25}},
			[]float32{0, 0, (128.0/255 - 0.5) / 0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.ValFraction = -1
			ds, err := Open(dir, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			sp, _ := ds.Split(Train)
			bs := collect(t, sp, BatchOptions{BatchSize: 1})
			if len(bs) != 1 || bs[0].N != 1 || len(bs[0].X) != len(tc.want)*4 {
				t.Fatalf("got %d batches", len(bs))
			}
			for i, v := range bs[0].X {
				if w := tc.want[i/4]; math.Abs(float64(v-w)) > 1e-5 {
					t.Fatalf("X[%d] = %v, want %v", i, v, w)
				}
			}
		})
	}
}

// A real-size X-ray through the whole path, to keep an eye on speed.
func BenchmarkPrepareXray(b *testing.B) {
	g := image.NewGray16(image.Rect(0, 0, 640, 480))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 7)
	}
	for b.Loop() {
		prepare(g, 3, 224, 224)
	}
}
