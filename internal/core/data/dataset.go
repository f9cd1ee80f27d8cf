package data

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
	"github.com/gopruner/gopruner/internal/core/safepath"
)

// Dataset is a set of labelled images split into train, val and test. It is
// safe for concurrent use: several splits (or several iterators over one
// split) may produce batches at once and share its cache.
type Dataset struct {
	// Classes maps class indices to names. Save it with the run (WriteClasses)
	// so that a later run, or whoever deploys the model, can read the outputs.
	Classes []string

	opts    Options
	origin  string // what errors call the data's origin: a data.csv path, a directory, "mnist"
	samples []sample
	splits  map[string][]int // split name → indices into samples, in dataset order

	cache        []cacheEntry
	hits, misses atomic.Int64
	sem          chan struct{}  // bounds concurrent decodes to Options.Workers
	lut          [][256]float32 // per channel: byte → normalised value
}

type sample struct {
	name  string // as the user wrote it: the data.csv path, or relative to the dataset dir
	path  string // the file to read; "" for in-memory images
	row   int    // 1-based data.csv row; 0 when there is none
	label int
	split string
	key   string      // stable identity for the val carve-out
	mem   image.Image // in-memory source (MNIST)
}

// Open reads the dataset in dir: DIR/data.csv if it exists, else an
// ImageFolder layout (DIR/<class>/*.png|jpg|jpeg, or DIR/<split>/<class>/...
// with split directories named train, val and test).
//
// data.csv has a header naming a path column (path, file, filename or image;
// case-insensitive), a label column (label, class or target) and optionally a
// split column (train, val, test). Paths are relative to dir and must stay
// inside it once symlinks are resolved (package safepath), unless
// Options.AllowExternalPaths; the same holds for ImageFolder entries. Only
// regular files are read: a named pipe or a device is refused before it is
// opened. data.csv is bounded by MaxCSVBytes, MaxCSVRows and MaxCSVLine.
// Labels are names (classes sorted by name) or integers (used as is), unless
// Options.Classes fixes the class list. Open checks that every image file
// exists; images are decoded later, when first used (or by Split.Preload).
func Open(dir string, opts Options) (*Dataset, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dataset %q: not a directory", dir)
	}
	csvPath := filepath.Join(dir, "data.csv")
	f, err := openCSVFile(csvPath)
	switch {
	case err == nil:
		defer f.Close()
		t, err := parseCSV(f, csvPath)
		if err != nil {
			return nil, err
		}
		return openCSV(dir, csvPath, t, opts)
	case errors.Is(err, fs.ErrNotExist):
		return openFolder(dir, opts)
	default:
		return nil, fmt.Errorf("dataset: %w", err)
	}
}

// openCSVFile opens data.csv if it is a regular file; a named pipe there
// would block the open.
func openCSVFile(csvPath string) (*os.File, error) {
	if _, err := os.Stat(csvPath); err == nil {
		if _, err := checkRegular(csvPath); err != nil {
			return nil, fmt.Errorf("%s: %w", csvPath, err)
		}
	}
	return os.Open(csvPath)
}

func openCSV(dir, csvPath string, t *csvTable, opts Options) (*Dataset, error) {
	labels := make([]string, len(t.rows))
	for i, r := range t.rows {
		labels[i] = r.Label
	}
	lab, err := newLabeler(labels, opts.Classes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", csvPath, err)
	}
	root, err := safepath.NewRoot(dir, opts.AllowExternalPaths)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	d := &Dataset{Classes: lab.classes, opts: opts, origin: csvPath}
	d.samples = make([]sample, len(t.rows))
	for i, r := range t.rows {
		s := sample{name: r.Path, row: r.Row, split: r.Split, key: filepath.ToSlash(filepath.Clean(r.Path))}
		if s.split == "" {
			s.split = Train
		}
		if s.label, err = lab.index(r.Label); err != nil {
			return nil, fmt.Errorf("%s row %d: image %q: %w", csvPath, r.Row, r.Path, err)
		}
		// The policy comes first and never opens anything, so a row that
		// points out of the data set is not even statted for its content.
		if s.path, err = root.Within(filepath.FromSlash(r.Path)); err != nil {
			return nil, fmt.Errorf("%s row %d: image %q: %w", csvPath, r.Row, r.Path, policyErr(err))
		}
		_, err := checkRegular(s.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s row %d: image %q: file not found (%s)", csvPath, r.Row, r.Path, s.path)
		case err != nil:
			return nil, fmt.Errorf("%s row %d: image %q: %w", csvPath, r.Row, r.Path, pathErrText(err))
		}
		d.samples[i] = s
	}
	return d.finish()
}

// isImageFile reports whether name has one of the extensions an ImageFolder
// scan picks up; other files (README, thumbs.db, .DS_Store) are ignored.
func isImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// folderPolicy is where an ImageFolder scan may lead: entries that are
// symlinks must resolve inside root unless allow.
type folderPolicy struct {
	root string
	sp   *safepath.Root
}

// listDir returns the visible subdirectories and image files of dir, sorted.
// A symlink that leads out of the data set, and an image that is not a
// regular file, are errors naming the entry.
func listDir(dir string, pol folderPolicy) (dirs, images []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(dir, name)
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			rel, err := filepath.Rel(pol.root, full)
			if err != nil {
				return nil, nil, fmt.Errorf("dataset %q: %q: %w", pol.root, full, err)
			}
			if _, err := pol.sp.Within(rel); err != nil {
				return nil, nil, fmt.Errorf("dataset %q: entry %q: %w", pol.root, filepath.ToSlash(rel), policyErr(err))
			}
			fi, err := os.Stat(full)
			if err != nil {
				continue // a dangling link, allowed out: nothing to read
			}
			mode = fi.Mode().Type()
		}
		switch {
		case mode.IsDir():
			dirs = append(dirs, name)
		case isImageFile(name):
			if !mode.IsRegular() {
				rel, _ := filepath.Rel(pol.root, full)
				return nil, nil, fmt.Errorf("dataset %q: image %q: is not a regular file (%s)", pol.root, filepath.ToSlash(rel), fileKind(mode))
			}
			images = append(images, name)
		}
	}
	return dirs, images, nil
}

func openFolder(dir string, opts Options) (*Dataset, error) {
	sp, err := safepath.NewRoot(dir, opts.AllowExternalPaths)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	pol := folderPolicy{root: dir, sp: sp}
	top, topImages, err := listDir(dir, pol)
	if err != nil {
		return nil, err
	}
	// DIR/train/<class>/..., DIR/val/... (the Kaggle chest X-ray layout) when
	// every subdirectory is a split holding only class directories.
	splitLayout := len(top) > 0 && len(topImages) == 0
	for _, name := range top {
		if _, ok := splitAliases[strings.ToLower(name)]; !ok {
			splitLayout = false
			break
		}
		sub, subImages, err := listDir(filepath.Join(dir, name), pol)
		if err != nil {
			return nil, err
		}
		if len(sub) == 0 || len(subImages) > 0 {
			splitLayout = false
			break
		}
	}
	type classDir struct{ split, rel, class string }
	var cdirs []classDir
	if splitLayout {
		for _, s := range top {
			classes, _, err := listDir(filepath.Join(dir, s), pol)
			if err != nil {
				return nil, err
			}
			for _, c := range classes {
				cdirs = append(cdirs, classDir{splitAliases[strings.ToLower(s)], filepath.Join(s, c), c})
			}
		}
	} else {
		for _, c := range top {
			cdirs = append(cdirs, classDir{Train, c, c})
		}
	}
	if len(cdirs) == 0 {
		return nil, fmt.Errorf("dataset %q: no data.csv and no class directories (want DIR/data.csv or DIR/<class>/*.png|jpg): empty dataset", dir)
	}
	names := make([]string, len(cdirs))
	for i, c := range cdirs {
		names[i] = c.class
	}
	// Directory names are names even when they look like numbers: ImageFolder
	// sorts them as strings, and models trained on it expect that order.
	lab := nameLabeler(names)
	if opts.Classes != nil {
		lab, _ = newLabeler(nil, opts.Classes)
	}
	d := &Dataset{Classes: lab.classes, opts: opts, origin: dir}
	for _, c := range cdirs {
		label, err := lab.index(c.class)
		if err != nil {
			return nil, fmt.Errorf("dataset %q: directory %q: %w", dir, c.rel, err)
		}
		_, files, err := listDir(filepath.Join(dir, c.rel), pol)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			rel := filepath.Join(c.rel, f)
			d.samples = append(d.samples, sample{
				name: filepath.ToSlash(rel), path: filepath.Join(dir, rel),
				label: label, split: c.split, key: filepath.ToSlash(rel),
			})
		}
	}
	if len(d.samples) == 0 {
		return nil, fmt.Errorf("dataset %q: no .png/.jpg/.jpeg images in its class directories: empty dataset", dir)
	}
	return d.finish()
}

// finish carves out val if needed, indexes the splits and sets up the cache.
func (d *Dataset) finish() (*Dataset, error) {
	if len(d.samples) == 0 {
		return nil, fmt.Errorf("%s: empty dataset", d.origin)
	}
	hasVal := slices.ContainsFunc(d.samples, func(s sample) bool { return s.split == Val })
	if !hasVal && d.opts.ValFraction > 0 {
		d.carveVal()
	}
	d.splits = make(map[string][]int)
	for i, s := range d.samples {
		d.splits[s.split] = append(d.splits[s.split], i)
	}
	d.cache = make([]cacheEntry, len(d.samples))
	d.sem = make(chan struct{}, d.opts.Workers)
	d.lut = make([][256]float32, d.opts.Channels)
	for c := range d.lut {
		m, s := d.opts.Mean[c], d.opts.Std[c]
		for p := range 256 {
			d.lut[c][p] = (float32(p)/255 - m) / s
		}
	}
	return d, nil
}

// carveVal moves a fixed share of the train samples to val. Ranking by a
// seeded hash of each sample's key, rather than drawing from a shuffled row
// order, keeps a sample's fate independent of where its row sits, and taking
// the lowest ranks gives an exact count.
func (d *Dataset) carveVal() {
	var train []int
	for i, s := range d.samples {
		if s.split == Train {
			train = append(train, i)
		}
	}
	n := len(train)
	if n < 2 {
		return
	}
	k := int(math.Round(d.opts.ValFraction * float64(n)))
	k = min(max(k, 1), n-1)
	h := make(map[int]uint64, n)
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(d.opts.Seed))
	for _, i := range train {
		f := fnv.New64a()
		f.Write(seed[:])
		f.Write([]byte(d.samples[i].key))
		h[i] = mix64(f.Sum64())
	}
	slices.SortFunc(train, func(a, b int) int {
		if c := cmpU64(h[a], h[b]); c != 0 {
			return c
		}
		if c := strings.Compare(d.samples[a].key, d.samples[b].key); c != 0 {
			return c
		}
		return a - b
	})
	for _, i := range train[:k] {
		d.samples[i].split = Val
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mix64 is splitmix64's finaliser: it spreads seeds and hashes over all bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Len returns the number of samples in all splits together.
func (d *Dataset) Len() int { return len(d.samples) }

// Options returns the options the dataset was opened with, defaults filled in.
func (d *Dataset) Options() Options {
	o := d.opts
	o.Mean = slices.Clone(o.Mean)
	o.Std = slices.Clone(o.Std)
	o.Classes = slices.Clone(o.Classes)
	return o
}

// Split returns the named split: train, val (also "valid", "validation") or
// test. When the data has no val samples, val holds the ValFraction of the
// train samples carved out at Open, and train holds the rest. An empty split
// is an error.
func (d *Dataset) Split(name string) (*Split, error) {
	s, ok := splitAliases[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("data: unknown split %q; want train, val or test", name)
	}
	idx := d.splits[s]
	if len(idx) == 0 {
		why := ""
		if s == Val && d.opts.ValFraction < 0 {
			why = " (ValFraction < 0 disables carving val from train)"
		}
		return nil, fmt.Errorf("%s: split %q is empty%s", d.origin, s, why)
	}
	return &Split{d: d, name: s, idx: idx}, nil
}

// WriteClasses saves the class list as JSON ({"classes": [...]}), replacing
// path atomically.
func (d *Dataset) WriteClasses(path string) error {
	b, err := json.MarshalIndent(struct {
		Classes []string `json:"classes"`
	}{d.Classes}, "", "  ")
	if err != nil {
		return fmt.Errorf("write classes: %w", err)
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// ReadClasses reads a class list written by WriteClasses (a bare JSON array
// of names is accepted too), for Options.Classes.
func ReadClasses(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read classes: %w", err)
	}
	var obj struct {
		Classes []string `json:"classes"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		if err2 := json.Unmarshal(b, &obj.Classes); err2 != nil {
			return nil, fmt.Errorf("read classes %s: %w", path, err)
		}
	}
	if len(obj.Classes) == 0 {
		return nil, fmt.Errorf("read classes %s: no classes", path)
	}
	return obj.Classes, nil
}

// labeler maps label strings to class indices.
type labeler struct {
	classes []string
	byName  map[string]int
	ints    bool // integer labels index classes directly
}

// maxIntLabel keeps a typo such as 1000000 from creating a million classes.
const maxIntLabel = 1 << 16

// newLabeler decides how labels map to classes: through the given class
// list, as integers when every label is one, or as names sorted.
func newLabeler(labels, given []string) (*labeler, error) {
	if given != nil {
		l := &labeler{classes: given, byName: make(map[string]int, len(given)), ints: true}
		for i, c := range given {
			l.byName[c] = i
		}
		return l, nil
	}
	maxLabel, allInts := -1, true
	for _, s := range labels {
		v, err := strconv.Atoi(s)
		if err != nil {
			allInts = false
			break
		}
		maxLabel = max(maxLabel, v)
	}
	if !allInts || len(labels) == 0 {
		return nameLabeler(labels), nil
	}
	if maxLabel >= maxIntLabel {
		return nil, fmt.Errorf("integer label %d is too large (max %d)", maxLabel, maxIntLabel-1)
	}
	l := &labeler{classes: make([]string, maxLabel+1), ints: true}
	for i := range l.classes {
		l.classes[i] = strconv.Itoa(i)
	}
	return l, nil
}

func nameLabeler(labels []string) *labeler {
	classes := slices.Clone(labels)
	slices.Sort(classes)
	classes = slices.Compact(classes)
	l := &labeler{classes: classes, byName: make(map[string]int, len(classes))}
	for i, c := range classes {
		l.byName[c] = i
	}
	return l
}

func (l *labeler) index(s string) (int, error) {
	if i, ok := l.byName[s]; ok {
		return i, nil
	}
	if l.ints {
		if v, err := strconv.Atoi(s); err == nil {
			if v < 0 {
				return 0, fmt.Errorf("negative label %d", v)
			}
			if v < len(l.classes) {
				return v, nil
			}
		}
	}
	return 0, fmt.Errorf("label %q not in the class set %s", s, shortList(l.classes))
}

// shortList formats a class list for an error message without flooding it.
func shortList(c []string) string {
	const n = 10
	if len(c) <= n {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("%q … (%d classes)", c[:n], len(c))
}

// policyErr adds to a path-policy refusal how to lift it.
func policyErr(err error) error {
	if errors.Is(err, safepath.ErrAbsolute) || errors.Is(err, safepath.ErrEscapes) {
		return fmt.Errorf("%w; paths must stay inside the dataset directory (allow_external_paths: true lifts this)", err)
	}
	return err
}

// pathErrText drops the path that *fs.PathError repeats, since the message
// names the row already.
func pathErrText(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
