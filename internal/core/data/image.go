package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	stddraw "image/draw"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode

	"golang.org/x/image/draw"
)

// maxPixels refuses images whose header promises more pixels than any sane
// input, so a corrupt or hostile file cannot make the decoder allocate
// gigabytes.
const maxPixels = 100 << 20

// decodeFile reads and decodes an image file by its content, not its name:
// exported datasets often have .png files that are really JPEGs.
func decodeFile(path string) (image.Image, error) {
	raw, err := readRegular(path, MaxImageBytes)
	if err != nil {
		return nil, pathErrText(err)
	}
	return decodeBytes(raw)
}

func decodeBytes(raw []byte) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode: %w (want PNG or JPEG)", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, fmt.Errorf("decode %s: unsupported size %dx%d", format, cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", format, err)
	}
	return img, nil
}

// prepare converts img to channels and resizes it to h×w, returning the
// pixels as uint8 in C×H×W order: the form kept in the cache.
//
// Gray output takes the luma before resizing: luma is linear in R, G and B,
// so the order makes no difference to the result but resizing one channel is
// three times cheaper. Resizing uses Catmull-Rom, which x/image/draw widens
// when shrinking, so downscaled images are area-filtered rather than aliased
// (like PIL's antialiased bicubic that torchvision models are trained with).
// Gray sources take resizeGray, the same filter on their one plane.
func prepare(img image.Image, channels, h, w int) []uint8 {
	var src image.Image
	if channels == 1 {
		src = toGray(img)
	} else {
		src = toScalable(img)
	}
	out := make([]uint8, channels*h*w)
	sb := src.Bounds()
	if g, ok := src.(*image.Gray); ok {
		var plane []uint8
		if sb.Dx() == w && sb.Dy() == h {
			// Same size: copy exactly; even a unit-scale filter pass rounds.
			plane = make([]uint8, w*h)
			for y := 0; y < h; y++ {
				i := g.PixOffset(sb.Min.X, sb.Min.Y+y)
				copy(plane[y*w:], g.Pix[i:i+w])
			}
		} else {
			plane = resizeGray(g, w, h)
		}
		for c := 0; c < channels; c++ {
			copy(out[c*h*w:], plane)
		}
		return out
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if sb.Dx() == w && sb.Dy() == h {
		stddraw.Draw(dst, dst.Bounds(), src, sb.Min, stddraw.Src)
	} else {
		draw.CatmullRom.Scale(dst, dst.Bounds(), src, sb, draw.Src, nil)
	}
	plane := h * w
	for y := 0; y < h; y++ {
		row := dst.Pix[y*dst.Stride:]
		for x := 0; x < w; x++ {
			i := y*w + x
			for c := 0; c < channels; c++ {
				out[c*plane+i] = row[4*x+c]
			}
		}
	}
	return out
}

// toGray returns img as 8-bit luma. The common types of X-ray and photo files
// get loops over their pixel buffers; the rest go through color.GrayModel.
func toGray(img image.Image) *image.Gray {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.Gray:
		return m
	case *image.YCbCr:
		// JPEG's Y is the same BT.601 luma that color.GrayModel computes.
		g := image.NewGray(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			yi := m.YOffset(b.Min.X, y)
			copy(g.Pix[(y-b.Min.Y)*g.Stride:(y-b.Min.Y)*g.Stride+b.Dx()], m.Y[yi:yi+b.Dx()])
		}
		return g
	case *image.Gray16:
		g := image.NewGray(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				i := m.PixOffset(x, y)
				v := uint32(m.Pix[i])<<8 | uint32(m.Pix[i+1])
				g.Pix[(y-b.Min.Y)*g.Stride+(x-b.Min.X)] = uint8((v*255 + 32767) / 65535)
			}
		}
		return g
	}
	g := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g.Pix[(y-b.Min.Y)*g.Stride+(x-b.Min.X)] = color.GrayModel.Convert(img.At(x, y)).(color.Gray).Y
		}
	}
	return g
}

// toScalable returns img as a type that x/image/draw scales without per-pixel
// interface calls, converting only when it has to.
func toScalable(img image.Image) image.Image {
	switch m := img.(type) {
	case *image.Gray, *image.RGBA, *image.NRGBA:
		return m
	case *image.YCbCr:
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422,
			image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio440:
			return m
		}
	case *image.Gray16:
		return toGray(m)
	}
	b := img.Bounds()
	rgba := image.NewRGBA(b)
	stddraw.Draw(rgba, b, img, b.Min, stddraw.Src)
	return rgba
}
