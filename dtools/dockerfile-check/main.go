// Command dockerfile-check checks gopruner's Dockerfile without a Docker
// engine (see dtools/README.md). It is a module of its own so that BuildKit
// stays out of gopruner's module graph; dtools/container_check.sh runs it.
//
//	dockerfile-check lint   [-f Dockerfile] [-context DIR]
//	dockerfile-check replay [-f Dockerfile] [-context DIR] -work DIR -torch-include DIR -torch-lib DIR
//
// lint runs BuildKit's own Dockerfile checks (the rules of `docker build
// --check`, base images stubbed: nothing is pulled) and gopruner's rules: named
// stages, pinned base images, COPY --from naming an earlier stage, context
// sources that .dockerignore keeps, the build stage's `make shim`/`make build`,
// and a runtime stage that keeps bin/ and lib/ side by side with ENTRYPOINT
// ["gopruner"].
//
// replay interprets the Dockerfile against fake roots under -work: the build
// stage's COPYs from the context (filtered by .dockerignore) and its `make` and
// `go` RUN steps run for real, with $LIBTORCH at <work>/build/<LIBTORCH>
// holding links to a local libtorch; then the runtime stage's COPY --from lines
// fill <work>/runtime, the build root is hidden, and ENTRYPOINT is run with the
// runtime stage's PATH and LD_LIBRARY_PATH mapped into <work>/runtime.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

// What an nvidia/cuda image's config sets; the lint stub hands it to BuildKit
// so that ${PATH} and ${LD_LIBRARY_PATH} resolve as they will on the real base.
var stubBaseEnv = []string{
	"PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
	"NVIDIA_VISIBLE_DEVICES=all",
	"NVIDIA_DRIVER_CAPABILITIES=compute,utility",
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	fset := flag.NewFlagSet(cmd, flag.ExitOnError)
	dockerfile := fset.String("f", "Dockerfile", "the Dockerfile")
	ctxDir := fset.String("context", ".", "the build context (the repository root)")
	work := fset.String("work", "", "replay: an empty scratch directory")
	torchInc := fset.String("torch-include", "", "replay: the local libtorch's include directory")
	torchLib := fset.String("torch-lib", "", "replay: the local libtorch's library directory")
	_ = fset.Parse(os.Args[2:])

	df, err := load(*dockerfile, *ctxDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerfile-check:", err)
		os.Exit(1)
	}
	var ok bool
	switch cmd {
	case "lint":
		ok = df.lint()
	case "replay":
		if *work == "" || *torchInc == "" || *torchLib == "" {
			usage()
		}
		ok = df.replay(*work, *torchInc, *torchLib)
	default:
		usage()
	}
	if !ok {
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: dockerfile-check lint|replay [-f Dockerfile] [-context DIR] [-work DIR -torch-include DIR -torch-lib DIR]")
	os.Exit(2)
}

type dockerfile struct {
	path     string
	data     []byte
	ctxDir   string
	stages   []instructions.Stage
	metaArgs map[string]string
	ignore   *patternmatcher.PatternMatcher
	problems int
}

func load(file, ctxDir string) (*dockerfile, error) {
	dt, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	d := &dockerfile{path: file, data: dt, ctxDir: ctxDir, stages: stages, metaArgs: map[string]string{}}
	for _, a := range meta {
		for _, kv := range a.Args {
			d.metaArgs[kv.Key] = kv.ValueString()
		}
	}
	var patterns []string
	if f, err := os.Open(filepath.Join(ctxDir, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	if d.ignore, err = patternmatcher.New(patterns); err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	return d, nil
}

func (d *dockerfile) ok(format string, a ...any) { fmt.Printf("  ok    "+format+"\n", a...) }
func (d *dockerfile) fail(format string, a ...any) {
	d.problems++
	fmt.Printf("  FAIL  "+format+"\n", a...)
}

func line(c interface{ Location() []parser.Range }) int {
	if l := c.Location(); len(l) > 0 {
		return l[0].Start.Line
	}
	return 0
}

// ---- variables -------------------------------------------------------------

type vars struct {
	m    map[string]string
	keys []string
}

func newVars(env []string) *vars {
	v := &vars{m: map[string]string{}}
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok {
			v.set(k, val)
		}
	}
	return v
}

func (v *vars) set(k, val string) {
	if _, ok := v.m[k]; !ok {
		v.keys = append(v.keys, k)
	}
	v.m[k] = val
}
func (v *vars) Get(k string) (string, bool) { s, ok := v.m[k]; return s, ok }
func (v *vars) Keys() []string              { return v.keys }
func (v *vars) environ() []string {
	out := make([]string, 0, len(v.keys))
	for _, k := range v.keys {
		out = append(out, k+"="+v.m[k])
	}
	return out
}

var lex = shell.NewLex('\\')

func (v *vars) expand(word string) (string, error) {
	s, _, err := lex.ProcessWord(word, v)
	return s, err
}

// stageState is a stage interpreted up to its end: working directory,
// variables, and what lint and replay need to know about its commands.
type stageState struct {
	idx     int
	st      *instructions.Stage
	base    string // FROM, expanded with the meta ARGs
	workdir string
	vars    *vars // ARGs and ENVs, over the base image's environment
	args    map[string]bool
}

func (d *dockerfile) metaVars() *vars {
	v := newVars(nil)
	keys := make([]string, 0, len(d.metaArgs))
	for k := range d.metaArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.set(k, d.metaArgs[k])
	}
	return v
}

func (d *dockerfile) stageIndex(name string) int {
	for i, s := range d.stages {
		if strings.EqualFold(s.Name, name) {
			return i
		}
	}
	return -1
}

// walk interprets stage i, calling fn (if not nil) before each command with the
// state as it is when that command runs. baseEnv is the base image's
// environment (or, for a stage FROM another stage, that stage's end state).
func (d *dockerfile) walk(i int, baseEnv []string, fn func(s *stageState, c instructions.Command) error) (*stageState, error) {
	st := &d.stages[i]
	base, err := d.metaVars().expand(st.BaseName)
	if err != nil {
		return nil, err
	}
	s := &stageState{idx: i, st: st, base: base, workdir: "/", args: map[string]bool{}}
	if j := d.stageIndex(base); j >= 0 && j < i {
		prev, err := d.walk(j, baseEnv, nil)
		if err != nil {
			return nil, err
		}
		s.workdir = prev.workdir
		s.vars = newVars(prev.vars.environ())
	} else {
		s.vars = newVars(baseEnv)
	}
	for _, c := range st.Commands {
		if fn != nil {
			if err := fn(s, c); err != nil {
				return s, err
			}
		}
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				val, has := d.metaArgs[kv.Key]
				if kv.Value != nil {
					if val, err = s.vars.expand(*kv.Value); err != nil {
						return s, err
					}
					has = true
				}
				s.args[kv.Key] = true
				if has {
					s.vars.set(kv.Key, val)
				}
			}
		case *instructions.EnvCommand:
			// ENV k=v k2=v2 expands every value against the state before it.
			vals := make([]string, len(c.Env))
			for j, kv := range c.Env {
				if vals[j], err = s.vars.expand(kv.Value); err != nil {
					return s, err
				}
			}
			for j, kv := range c.Env {
				s.vars.set(kv.Key, vals[j])
			}
		case *instructions.WorkdirCommand:
			p, err := s.vars.expand(c.Path)
			if err != nil {
				return s, err
			}
			if !path.IsAbs(p) {
				p = path.Join(s.workdir, p)
			}
			s.workdir = path.Clean(p)
		}
	}
	return s, nil
}

func (s *stageState) abs(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(s.workdir, p)
}

// copyDest is where source src of COPY c lands (a file destination only when
// the COPY has one source and the destination does not end in /).
func copyDest(s *stageState, c *instructions.CopyCommand, src, orig string) (string, error) {
	dest, err := s.vars.expand(c.DestPath)
	if err != nil {
		return "", err
	}
	dir := strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.") || dest == "." || len(c.SourcePaths) > 1 || strings.ContainsAny(orig, "*?[")
	dest = s.abs(dest)
	if dir {
		return path.Join(dest, path.Base(src)), nil
	}
	return dest, nil
}

// ---- lint ------------------------------------------------------------------

type stubResolver struct{ refs []string }

func (r *stubResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	r.refs = append(r.refs, ref)
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": stubBaseEnv},
	}
	dt, err := json.Marshal(cfg)
	return ref, "", dt, err
}

var (
	makeShim  = regexp.MustCompile(`(^|[;&|]\s*)make\b[^;&|]*\bshim\b`)
	makeBuild = regexp.MustCompile(`(^|[;&|]\s*)make\b[^;&|]*\bbuild\b`)
	cudaTag   = regexp.MustCompile(`nvidia/cuda:(\d+)\.(\d+)`)
	pinnedTag = regexp.MustCompile(`^[^@]+:[A-Za-z0-9_][A-Za-z0-9_.-]*$|@sha256:[0-9a-f]{64}$`)
)

func runText(c *instructions.RunCommand) string { return strings.Join(c.CmdLine, " ") }

func (d *dockerfile) lint() bool {
	fmt.Printf("%s: %d stages (", d.path, len(d.stages))
	for i, s := range d.stages {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Print(s.Name)
	}
	fmt.Println(")")

	// 1. BuildKit's own checks: the Dockerfile frontend converted to LLB for
	// every stage, with its linter on, as `docker build --check` does.
	res := &stubResolver{}
	sm := llb.NewSourceMap(nil, filepath.Base(d.path), "Dockerfile", d.data)
	sm.Definition = &llb.Definition{}
	lr, err := dockerfile2llb.DockerfileLint(context.Background(), d.data, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    sm,
		MetaResolver: res,
	})
	switch {
	case err != nil:
		d.fail("buildkit: %v", err)
	case lr.Error != nil:
		d.fail("buildkit: %s", lr.Error.Message)
	default:
		for _, w := range lr.Warnings {
			l := 0
			if len(w.Location.Ranges) > 0 {
				l = int(w.Location.Ranges[0].Start.Line)
			}
			d.fail("buildkit %s (line %d): %s", w.RuleName, l, w.Detail)
		}
		if len(lr.Warnings) == 0 {
			d.ok("buildkit: parses and converts to LLB; no `docker build --check` warnings (base images stubbed: %s)", strings.Join(uniq(res.refs), ", "))
		}
	}

	// 2. gopruner's rules.
	if len(d.stages) < 2 {
		d.fail("multi-stage: want a build stage and a runtime stage, have %d stage(s)", len(d.stages))
		return false
	}
	for i, st := range d.stages {
		if st.Name == "" {
			d.fail("stage %d (line %d) has no name (FROM ... AS name)", i, st.Location[0].Start.Line)
		}
		base, err := d.metaVars().expand(st.BaseName)
		if err != nil {
			d.fail("stage %s: FROM %s: %v", st.Name, st.BaseName, err)
			continue
		}
		if j := d.stageIndex(base); j >= 0 {
			if j >= i {
				d.fail("stage %s: FROM %s names a later stage", st.Name, base)
			}
		} else if !pinnedTag.MatchString(base) || strings.HasSuffix(base, ":latest") {
			d.fail("stage %s: base image %q is not pinned to a tag or digest", st.Name, base)
		} else {
			d.ok("stage %s: FROM %s", st.Name, base)
		}
	}
	final := len(d.stages) - 1
	buildIdx := -1
	for i := range d.stages {
		_, err := d.walk(i, stubBaseEnv, func(s *stageState, c instructions.Command) error {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok {
				return nil
			}
			if cp.From != "" {
				j := d.stageIndex(cp.From)
				switch {
				case j < 0:
					d.fail("line %d: COPY --from=%s: no such stage (external images are not allowed here)", line(cp), cp.From)
				case j >= i:
					d.fail("line %d: COPY --from=%s: not an earlier stage", line(cp), cp.From)
				default:
					d.ok("line %d: COPY --from=%s names an earlier stage", line(cp), cp.From)
				}
				return nil
			}
			for _, src := range cp.SourcePaths {
				d.checkContextSource(cp, src)
			}
			return nil
		})
		if err != nil {
			d.fail("stage %s: %v", d.stages[i].Name, err)
		}
	}

	// The runtime (final) stage and the stage it takes gopruner from.
	fin, err := d.walk(final, stubBaseEnv, nil)
	if err != nil {
		d.fail("stage %s: %v", d.stages[final].Name, err)
		return false
	}
	binDest, libDest := "", ""
	var libtorchDests []string
	for _, c := range d.stages[final].Commands {
		cp, ok := c.(*instructions.CopyCommand)
		if !ok || cp.From == "" {
			continue
		}
		for _, src := range cp.SourcePaths {
			dst, err := copyDest(fin, cp, src, src)
			if err != nil {
				d.fail("line %d: %v", line(cp), err)
				continue
			}
			switch {
			case path.Base(src) == "gopruner" && path.Base(path.Dir(src)) == "bin":
				binDest, buildIdx = dst, d.stageIndex(cp.From)
			case path.Base(src) == "libgptorch.so":
				libDest = dst
			case strings.Contains(src, "*.so"):
				libtorchDests = append(libtorchDests, path.Dir(dst))
			}
		}
	}
	if binDest == "" || libDest == "" {
		d.fail("stage %s: does not COPY --from the build stage both bin/gopruner and lib/libgptorch.so", fin.st.Name)
	} else if path.Base(path.Dir(binDest)) != "bin" || path.Base(path.Dir(libDest)) != "lib" || path.Dir(path.Dir(binDest)) != path.Dir(path.Dir(libDest)) {
		d.fail("stage %s: gopruner at %s and the shim at %s break the rpath $ORIGIN/../lib", fin.st.Name, binDest, libDest)
	} else {
		d.ok("stage %s: %s finds %s through $ORIGIN/../lib", fin.st.Name, binDest, libDest)
	}
	if binDest != "" && !inList(fin.vars.m["PATH"], path.Dir(binDest)) {
		d.fail("stage %s: PATH=%s lacks %s", fin.st.Name, fin.vars.m["PATH"], path.Dir(binDest))
	} else if binDest != "" {
		d.ok("stage %s: PATH starts with %s", fin.st.Name, strings.SplitN(fin.vars.m["PATH"], ":", 2)[0])
	}
	if len(libtorchDests) == 0 {
		d.fail("stage %s: copies no libtorch shared libraries (COPY --from=... <libtorch>/lib/*.so* ...)", fin.st.Name)
	}
	for _, l := range uniq(libtorchDests) {
		if !inList(fin.vars.m["LD_LIBRARY_PATH"], l) {
			d.fail("stage %s: LD_LIBRARY_PATH=%s lacks %s", fin.st.Name, fin.vars.m["LD_LIBRARY_PATH"], l)
		} else {
			d.ok("stage %s: LD_LIBRARY_PATH=%s (libtorch's libraries, then the base image's)", fin.st.Name, fin.vars.m["LD_LIBRARY_PATH"])
		}
	}
	var entry, cmdLine *instructions.ShellDependantCmdLine
	for _, c := range d.stages[final].Commands {
		switch c := c.(type) {
		case *instructions.EntrypointCommand:
			entry = &c.ShellDependantCmdLine
		case *instructions.CmdCommand:
			cmdLine = &c.ShellDependantCmdLine
		}
	}
	switch {
	case entry == nil:
		d.fail("stage %s: no ENTRYPOINT", fin.st.Name)
	case entry.PrependShell:
		d.fail(`stage %s: ENTRYPOINT in shell form, want exec form ["gopruner"]`, fin.st.Name)
	case len(entry.CmdLine) != 1 || entry.CmdLine[0] != "gopruner":
		d.fail(`stage %s: ENTRYPOINT is %q, want ["gopruner"]`, fin.st.Name, entry.CmdLine)
	default:
		d.ok(`stage %s: ENTRYPOINT ["gopruner"]`, fin.st.Name)
	}
	if cmdLine == nil || cmdLine.PrependShell {
		d.fail("stage %s: want an exec-form CMD (default arguments)", fin.st.Name)
	} else {
		d.ok("stage %s: CMD %q", fin.st.Name, cmdLine.CmdLine)
	}
	if fin.workdir != "/workspace" {
		d.fail("stage %s: WORKDIR is %s, want /workspace (docker_run.sh mounts the workspace there)", fin.st.Name, fin.workdir)
	} else {
		d.ok("stage %s: WORKDIR /workspace", fin.st.Name)
	}

	// The build stage.
	if buildIdx < 0 {
		d.fail("no build stage found (the final stage's COPY --from of bin/gopruner)")
		return d.summary()
	}
	bs, err := d.walk(buildIdx, stubBaseEnv, nil)
	if err != nil {
		d.fail("stage %s: %v", d.stages[buildIdx].Name, err)
		return d.summary()
	}
	for _, a := range []string{"LIBTORCH_VERSION", "GO_VERSION"} {
		if !bs.args[a] {
			d.fail("stage %s: no ARG %s", bs.st.Name, a)
		} else {
			d.ok("stage %s: ARG %s=%s", bs.st.Name, a, bs.vars.m[a])
		}
	}
	for _, a := range []string{"LIBTORCH_URL", "CUDA_VERSION"} {
		if v, ok := bs.vars.m[a]; ok && bs.args[a] {
			d.ok("stage %s: ARG %s=%s", bs.st.Name, a, v)
		}
	}
	if m := cudaTag.FindStringSubmatch(bs.base); m != nil && bs.args["LIBTORCH_CUDA"] {
		if want := "cu" + m[1] + m[2]; bs.vars.m["LIBTORCH_CUDA"] != want {
			d.fail("stage %s: LIBTORCH_CUDA=%s, but the base image has CUDA %s.%s (%s)", bs.st.Name, bs.vars.m["LIBTORCH_CUDA"], m[1], m[2], want)
		} else {
			d.ok("stage %s: libtorch's CUDA (%s) matches the base image's", bs.st.Name, want)
		}
	}
	lt := bs.vars.m["LIBTORCH"]
	if !path.IsAbs(lt) {
		d.fail("stage %s: ENV LIBTORCH must be an absolute path (have %q)", bs.st.Name, lt)
	} else {
		d.ok("stage %s: ENV LIBTORCH=%s", bs.st.Name, lt)
		for _, l := range libtorchDests {
			if l != path.Join(lt, "lib") {
				d.fail("stage %s: libtorch libraries land in %s, but the shim's rpath is %s/lib", fin.st.Name, l, lt)
			}
		}
	}
	shimAt, buildAt := -1, -1
	for _, c := range d.stages[buildIdx].Commands {
		r, ok := c.(*instructions.RunCommand)
		if !ok {
			continue
		}
		t := runText(r)
		if makeShim.MatchString(t) && shimAt < 0 {
			shimAt = line(r)
			if !strings.Contains(t, "LIBTORCH=") {
				d.fail("line %d: `make shim` without LIBTORCH=", line(r))
			}
		}
		if makeBuild.MatchString(t) && buildAt < 0 {
			buildAt = line(r)
		}
	}
	switch {
	case shimAt < 0 || buildAt < 0:
		d.fail("stage %s: want RUN make ... shim LIBTORCH=... and RUN make build", bs.st.Name)
	case shimAt > buildAt:
		d.fail("stage %s: make build (line %d) before make shim (line %d)", bs.st.Name, buildAt, shimAt)
	default:
		d.ok("stage %s: make shim (line %d), then make build (line %d), in %s", bs.st.Name, shimAt, buildAt, bs.workdir)
	}
	if binDest != "" {
		for _, c := range d.stages[final].Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				for _, src := range cp.SourcePaths {
					if strings.HasSuffix(src, "bin/gopruner") && path.Clean(src) != path.Join(bs.workdir, "bin/gopruner") {
						d.fail("line %d: copies %s, but make build writes %s", line(cp), src, path.Join(bs.workdir, "bin/gopruner"))
					}
					if strings.HasSuffix(src, "lib/libgptorch.so") && path.Clean(src) != path.Join(bs.workdir, "lib/libgptorch.so") {
						d.fail("line %d: copies %s, but make shim writes %s", line(cp), src, path.Join(bs.workdir, "lib/libgptorch.so"))
					}
				}
			}
		}
	}

	// 3. .dockerignore.
	for _, p := range []string{".git/HEAD", ".cache/fixtures/x", "bin/gopruner", "lib/libgptorch.so", "build/shim/ir.o", "exp_save/run/summary.json"} {
		if m, _ := d.ignore.MatchesOrParentMatches(p); !m {
			d.fail(".dockerignore does not exclude %s", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "Makefile", "cgo/gptorch.h", "torch/torch.go", "cmd/gopruner/main.go"} {
		if m, _ := d.ignore.MatchesOrParentMatches(p); m {
			d.fail(".dockerignore excludes %s, which the build needs", p)
		}
	}
	d.ok(".dockerignore: excludes .git .cache bin lib build exp_save; keeps the sources")
	return d.summary()
}

func (d *dockerfile) summary() bool {
	if d.problems > 0 {
		fmt.Printf("%s: %d problem(s)\n", d.path, d.problems)
		return false
	}
	return true
}

// checkContextSource: a COPY source from the context must exist there and
// must not be dropped by .dockerignore (BuildKit's CopyIgnoredFile, which
// needs a build client to run).
func (d *dockerfile) checkContextSource(cp *instructions.CopyCommand, src string) {
	clean := path.Clean(strings.TrimPrefix(src, "/"))
	if clean == "." {
		d.ok("line %d: COPY %s (the context, less .dockerignore)", line(cp), src)
		return
	}
	matches, _ := filepath.Glob(filepath.Join(d.ctxDir, filepath.FromSlash(clean)))
	if len(matches) == 0 {
		d.fail("line %d: COPY %s: not in the build context", line(cp), src)
		return
	}
	for _, m := range matches {
		rel, _ := filepath.Rel(d.ctxDir, m)
		if ex, _ := d.ignore.MatchesOrParentMatches(filepath.ToSlash(rel)); ex {
			d.fail("line %d: COPY %s: .dockerignore excludes %s", line(cp), src, rel)
			return
		}
	}
	d.ok("line %d: COPY %s (in the context, kept by .dockerignore)", line(cp), src)
}

func inList(list, dir string) bool {
	for _, e := range strings.Split(list, ":") {
		if path.Clean(e) == path.Clean(dir) {
			return true
		}
	}
	return false
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// ---- replay ----------------------------------------------------------------

// replayable: the RUN steps that build gopruner. The others install system
// packages, download libtorch and Go, or assert CUDA linkage: they need the
// base image or the network and are reported as not replayed.
func replayable(c *instructions.RunCommand) bool {
	f := strings.Fields(runText(c))
	return len(f) > 0 && (f[0] == "make" || f[0] == "go")
}

func (d *dockerfile) replay(work, torchInc, torchLib string) bool {
	work, _ = filepath.Abs(work)
	buildRoot := filepath.Join(work, "build-root")
	runRoot := filepath.Join(work, "runtime-root")
	for _, dir := range []string{buildRoot, runRoot} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			d.fail("%v", err)
			return false
		}
	}
	final := len(d.stages) - 1
	buildIdx := -1
	for _, c := range d.stages[final].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
			for _, s := range cp.SourcePaths {
				if strings.HasSuffix(s, "bin/gopruner") {
					buildIdx = d.stageIndex(cp.From)
				}
			}
		}
	}
	if buildIdx < 0 || buildIdx == final {
		d.fail("no build stage (the final stage's COPY --from of bin/gopruner)")
		return false
	}
	// The host's environment stands in for the base image's, less what an
	// enclosing make (make container-check) exports: a RUN step has none.
	var host []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR":
		default:
			host = append(host, kv)
		}
	}

	// Build stage, in <work>/build-root.
	fmt.Printf("replay: stage %s in %s\n", d.stages[buildIdx].Name, buildRoot)
	shellCmd := []string{"/bin/sh", "-c"}
	var libtorchMade bool
	_, err := d.walk(buildIdx, host, func(s *stageState, c instructions.Command) error {
		// $LIBTORCH: links to the local libtorch where the Dockerfile unpacks it.
		if lt := s.vars.m["LIBTORCH"]; lt != "" && path.IsAbs(lt) && !libtorchMade {
			if err := mimicLibtorch(filepath.Join(buildRoot, lt), torchInc, torchLib); err != nil {
				return err
			}
			libtorchMade = true
			fmt.Printf("  libtorch  %s -> links to %s and %s\n", filepath.Join(buildRoot, lt), torchInc, torchLib)
		}
		switch c := c.(type) {
		case *instructions.ShellCommand:
			shellCmd = c.Shell
		case *instructions.WorkdirCommand:
			p, _ := s.vars.expand(c.Path)
			return os.MkdirAll(filepath.Join(buildRoot, s.abs(p)), 0o755)
		case *instructions.CopyCommand:
			if c.From != "" {
				return fmt.Errorf("line %d: COPY --from in the build stage is not replayed", line(c))
			}
			for _, src := range c.SourcePaths {
				dst, err := copyDest(s, c, src, src)
				if err != nil {
					return err
				}
				if path.Clean(src) == "." {
					dst, _ = s.vars.expand(c.DestPath)
					dst = s.abs(dst)
				}
				n, err := d.copyContext(src, filepath.Join(buildRoot, dst))
				if err != nil {
					return fmt.Errorf("line %d: COPY %s: %w", line(c), src, err)
				}
				fmt.Printf("  line %-3d  COPY %s -> %s (%d files from the context)\n", line(c), src, dst, n)
			}
		case *instructions.RunCommand:
			if !replayable(c) {
				fmt.Printf("  line %-3d  not replayed (system setup or downloads): %.70s\n", line(c), runText(c))
				return nil
			}
			argv := c.CmdLine
			if c.PrependShell {
				argv = append(append([]string{}, shellCmd...), strings.Join(c.CmdLine, " "))
			}
			env := newVars(s.vars.environ())
			for _, k := range env.keys {
				env.m[k] = mapList(buildRoot, env.m[k])
			}
			fmt.Printf("  line %-3d  RUN %s\n", line(c), runText(c))
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = filepath.Join(buildRoot, s.workdir)
			cmd.Env = env.environ()
			cmd.Stdout, cmd.Stderr = prefixed("            | "), prefixed("            | ")
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("line %d: RUN %s: %w", line(c), runText(c), err)
			}
		}
		return nil
	})
	if err != nil {
		d.fail("%v", err)
		return false
	}

	// Runtime stage, in <work>/runtime-root.
	fmt.Printf("replay: stage %s in %s\n", d.stages[final].Name, runRoot)
	rs, err := d.walk(final, host, func(s *stageState, c instructions.Command) error {
		cp, ok := c.(*instructions.CopyCommand)
		if !ok {
			return nil
		}
		if d.stageIndex(cp.From) != buildIdx {
			return fmt.Errorf("line %d: COPY --from=%s is not replayed", line(cp), cp.From)
		}
		for _, src := range cp.SourcePaths {
			matches, _ := filepath.Glob(filepath.Join(buildRoot, src))
			if len(matches) == 0 {
				return fmt.Errorf("line %d: COPY --from=%s %s: nothing there after the build", line(cp), cp.From, src)
			}
			for _, m := range matches {
				rel, _ := filepath.Rel(buildRoot, m)
				dst, err := copyDest(s, cp, "/"+rel, src)
				if err != nil {
					return err
				}
				if err := copyResolved(m, filepath.Join(runRoot, dst), buildRoot); err != nil {
					return err
				}
			}
			fmt.Printf("  line %-3d  COPY --from=%s %s -> %s (%d files)\n", line(cp), cp.From, src, cp.DestPath, len(matches))
		}
		return nil
	})
	if err != nil {
		d.fail("%v", err)
		return false
	}
	if err := os.MkdirAll(filepath.Join(runRoot, rs.workdir), 0o755); err != nil {
		d.fail("%v", err)
		return false
	}
	var entry, cmdArgs []string
	for _, c := range d.stages[final].Commands {
		switch c := c.(type) {
		case *instructions.EntrypointCommand:
			entry = c.CmdLine
		case *instructions.CmdCommand:
			cmdArgs = c.CmdLine
		}
	}
	if len(entry) == 0 {
		d.fail("no ENTRYPOINT")
		return false
	}

	// Hide the build root: its paths are baked into rpaths (the Go binary's
	// cgo -L dir, the shim's $LIBTORCH/lib), and the image has no such paths.
	hidden := buildRoot + ".hidden"
	if err := os.Rename(buildRoot, hidden); err != nil {
		d.fail("%v", err)
		return false
	}
	defer os.Rename(hidden, buildRoot)

	env := newVars(rs.vars.environ())
	for _, k := range env.keys {
		env.m[k] = mapList(runRoot, env.m[k])
	}
	exe := lookPath(entry[0], env.m["PATH"])
	if exe == "" || !strings.HasPrefix(exe, runRoot+"/") {
		d.fail("ENTRYPOINT %s: not found on the runtime stage's PATH (%s)", entry[0], env.m["PATH"])
		return false
	}
	fmt.Printf("  ENTRYPOINT %s -> %s\n", entry[0], strings.TrimPrefix(exe, runRoot))
	fmt.Printf("  PATH=%s\n  LD_LIBRARY_PATH=%s\n", env.m["PATH"], env.m["LD_LIBRARY_PATH"])

	run := func(args ...string) (string, error) {
		cmd := exec.Command(exe, append(append([]string{}, entry[1:]...), args...)...)
		cmd.Dir = filepath.Join(runRoot, rs.workdir)
		cmd.Env = env.environ()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("version")
	if err != nil {
		d.fail("gopruner version from the runtime layout: %v\n%s", err, out)
	} else {
		d.ok("gopruner version from the runtime layout (build root hidden):\n%s", indent(out, "          "))
	}
	if out, err := run(cmdArgs...); err != nil {
		d.fail("ENTRYPOINT + CMD (gopruner %s): %v\n%s", strings.Join(cmdArgs, " "), err, out)
	} else {
		d.ok("ENTRYPOINT + CMD (gopruner %s) exits 0", strings.Join(cmdArgs, " "))
	}
	// Where the loader takes each library from.
	ldd := exec.Command("ldd", exe)
	ldd.Env = env.environ()
	lout, err := ldd.Output()
	if err != nil {
		d.fail("ldd %s: %v", exe, err)
		return d.summary()
	}
	found := map[string]string{}
	for _, l := range strings.Split(string(lout), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == "=>" {
			found[f[0]] = f[2]
			if f[2] == "not" {
				d.fail("ldd: %s not found", f[0])
			}
		}
	}
	libs := make([]string, 0, len(found))
	for lib := range found {
		libs = append(libs, lib)
	}
	sort.Strings(libs)
	for _, lib := range libs {
		where := found[lib]
		isTorch := strings.HasPrefix(lib, "libtorch") || strings.HasPrefix(lib, "libc10")
		switch {
		case lib == "libgptorch.so" || isTorch:
			if !strings.HasPrefix(where, runRoot+"/") {
				d.fail("ldd: %s comes from %s, outside the runtime layout", lib, where)
			} else {
				d.ok("ldd: %-22s <- %s", lib, strings.TrimPrefix(where, runRoot))
			}
		}
	}
	if _, ok := found["libgptorch.so"]; !ok {
		d.fail("ldd: gopruner does not load libgptorch.so")
	}
	return d.summary()
}

// mimicLibtorch makes dir look like an unpacked libtorch zip (include/ + lib/)
// with links into a local libtorch. For Debian's, include/ links only the
// torch trees, never /usr/include itself (an -isystem alias of /usr/include
// breaks libstdc++'s #include_next).
func mimicLibtorch(dir, inc, lib string) error {
	if err := os.MkdirAll(filepath.Join(dir, "include"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(inc)
	if err != nil {
		return err
	}
	system := filepath.Clean(inc) == "/usr/include"
	for _, e := range ents {
		n := e.Name()
		if system && n != "ATen" && n != "c10" && n != "caffe2" && n != "torch" && n != "TH" && n != "THC" {
			continue
		}
		if err := os.Symlink(filepath.Join(inc, n), filepath.Join(dir, "include", n)); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "include", "torch", "script.h")); err != nil {
		return fmt.Errorf("%s has no torch/script.h", inc)
	}
	libs, _ := filepath.Glob(filepath.Join(lib, "*.so*"))
	n := 0
	for _, l := range libs {
		b := filepath.Base(l)
		if strings.HasPrefix(b, "libtorch_python") {
			continue // needs libpython; the libtorch zip has none
		}
		if system && !(strings.HasPrefix(b, "libtorch") || strings.HasPrefix(b, "libc10") || strings.HasPrefix(b, "libshm") || strings.HasPrefix(b, "libcaffe2")) {
			continue
		}
		if _, err := os.Stat(l); err != nil {
			continue // a dangling link (Debian's -dev links to packages not installed)
		}
		if err := os.Symlink(l, filepath.Join(dir, "lib", b)); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no libtorch libraries in %s", lib)
	}
	return nil
}

// mapList maps each absolute element of a colon-separated list that exists
// under root into root; the rest (host paths) stay as they are.
func mapList(root, list string) string {
	parts := strings.Split(list, ":")
	for i, p := range parts {
		if path.IsAbs(p) && p != "/" {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				parts[i] = filepath.Join(root, p)
			}
		}
	}
	return strings.Join(parts, ":")
}

func lookPath(name, pathList string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, dir := range strings.Split(pathList, ":") {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// copyContext copies src (relative to the context; "." for all of it) into
// dst, leaving out what .dockerignore excludes, as `COPY src dst` does.
func (d *dockerfile) copyContext(src, dst string) (int, error) {
	clean := path.Clean(strings.TrimPrefix(src, "/"))
	var roots []string
	if clean == "." {
		roots = []string{d.ctxDir}
	} else {
		m, _ := filepath.Glob(filepath.Join(d.ctxDir, filepath.FromSlash(clean)))
		roots = m
	}
	if len(roots) == 0 {
		return 0, errors.New("not in the context")
	}
	n := 0
	for _, root := range roots {
		st, err := os.Stat(root)
		if err != nil {
			return n, err
		}
		target := dst
		if !st.IsDir() {
			if strings.HasSuffix(dst, "/") || isDir(dst) {
				target = filepath.Join(dst, filepath.Base(root))
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return n, err
			}
			n++
			if err := copyFile(root, target, st.Mode()); err != nil {
				return n, err
			}
			continue
		}
		err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(d.ctxDir, p)
			rel = filepath.ToSlash(rel)
			if rel != "." {
				if ex, _ := d.ignore.MatchesOrParentMatches(rel); ex {
					if e.IsDir() && !d.ignore.Exclusions() {
						return filepath.SkipDir
					}
					if !e.IsDir() {
						return nil
					}
				}
			}
			inner, _ := filepath.Rel(root, p)
			out := filepath.Join(target, inner)
			info, err := e.Info()
			if err != nil {
				return err
			}
			switch {
			case e.IsDir():
				return os.MkdirAll(out, 0o755)
			case info.Mode()&fs.ModeSymlink != 0:
				l, err := os.Readlink(p)
				if err != nil {
					return err
				}
				n++
				return os.Symlink(l, out)
			case info.Mode().IsRegular():
				n++
				return copyFile(p, out, info.Mode())
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyResolved copies src to dst following links, as COPY --from does; a file
// that resolves outside inside (a link into the host's libtorch) is linked to,
// not copied.
func copyResolved(src, dst, inside string) error {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s: directory sources are not replayed", src)
	}
	if !strings.HasPrefix(real, inside+"/") {
		return os.Symlink(real, dst)
	}
	return copyFile(real, dst, st.Mode())
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type prefixWriter struct {
	prefix string
	bol    bool
}

func prefixed(p string) io.Writer { return &prefixWriter{prefix: p, bol: true} }

func (w *prefixWriter) Write(b []byte) (int, error) {
	var buf bytes.Buffer
	for _, c := range b {
		if w.bol {
			buf.WriteString(w.prefix)
			w.bol = false
		}
		buf.WriteByte(c)
		if c == '\n' {
			w.bol = true
		}
	}
	_, err := os.Stdout.Write(buf.Bytes())
	return len(b), err
}

func indent(s, p string) string {
	s = strings.TrimRight(s, "\n")
	return p + strings.ReplaceAll(s, "\n", "\n"+p)
}
