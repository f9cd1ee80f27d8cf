package fail

import (
	"regexp"
	"strings"
)

// tsFailed opens every error the TorchScript interpreter raises: two
// tracebacks of the model's code (serialized and original), twenty to a
// hundred lines, and then the exception. Folded onto the CLI's one error
// line that buries the exception at the end of a paragraph of code.
const tsFailed = "The following operation failed in the TorchScript interpreter."

var (
	tsFrame = regexp.MustCompile(`^\s*File "[^"]*", line \d+, in (\w+)\s*$`)
	// The exception's first line: "RuntimeError: ...", "builtins.ValueError: ...".
	tsExceptionLine = regexp.MustCompile(`^(\w+\.)*\w*(Error|Exception)\b`)
	// The call a frame marks, serialized ("(bn1).forward(") or as written
	// ("self.bn1(").
	tsSerialCall = regexp.MustCompile(`^\((\w+)\)\.forward\(`)
	tsSourceCall = regexp.MustCompile(`^\w+\.(\w+)\(`)
	// A serialized frame's submodule lookups: "bn1 = self.bn1" and
	// `_0 = getattr(self, "0")` (self is whatever the model's source
	// named forward's first argument).
	tsAttr    = regexp.MustCompile(`^\s*(\w+) = \w+\.(\w+)\s*$`)
	tsGetattr = regexp.MustCompile(`^\s*(\w+) = getattr\(\w+, "([^"]+)"\)\s*$`)
)

// TorchScript shortens an error that carries a TorchScript interpreter
// traceback to the text before it, the exception, and the path of the
// submodule that raised it where the traceback shows it ("raised in layer
// layer1.0.conv1"). Other messages are returned as they are.
func TorchScript(msg string) string {
	i := strings.Index(msg, tsFailed)
	if i < 0 {
		return msg
	}
	lines := strings.Split(msg[i+len(tsFailed):], "\n")
	ex := tsException(lines)
	if ex == "" {
		return msg
	}
	out := msg[:i] + strings.TrimPrefix(ex, "builtins.")
	if p := tsPath(lines); p != "" {
		out += " (raised in layer " + p + ")"
	}
	return out
}

// tsException is the exception after the last frame: from the first line
// after the last marker that names one ("RuntimeError: ...",
// "builtins.ValueError: ...") to the end. A traced model's original-code
// traceback is a list of Python frames after that marker, not indented; a
// message whose exception is not named so is its last line.
func tsException(lines []string) string {
	last := -1
	for j, l := range lines {
		if strings.Contains(l, "<--- HERE") {
			last = j
		}
	}
	for j := last + 1; j < len(lines); j++ {
		if tsExceptionLine.MatchString(lines[j]) {
			return strings.TrimSpace(strings.Join(lines[j:], " "))
		}
	}
	for j := len(lines) - 1; j > last; j-- {
		if l := strings.TrimSpace(lines[j]); l != "" {
			return l
		}
	}
	return ""
}

// tsPath follows the first traceback's frames: a frame's marked call adds
// a submodule when the next frame is a forward (a call into a method is
// not a layer). A serialized frame names the submodule through a local
// whose lookup must be among the lines shown; the path stops where it is
// not.
func tsPath(lines []string) string {
	type frame struct {
		fn   string
		body []string
	}
	var frames []frame
	for _, l := range lines {
		if strings.HasPrefix(l, "Traceback of TorchScript, original code") {
			break // the same calls again, as written
		}
		if m := tsFrame.FindStringSubmatch(l); m != nil {
			frames = append(frames, frame{fn: m[1]})
			continue
		}
		if len(frames) > 0 {
			f := &frames[len(frames)-1]
			f.body = append(f.body, l)
		}
	}
	var path []string
	for k := 0; k+1 < len(frames); k++ {
		if frames[k+1].fn != "forward" {
			continue
		}
		name, ok := tsCall(frames[k].body)
		if !ok {
			break
		}
		path = append(path, name)
	}
	return strings.Join(path, ".")
}

// tsCall is the submodule a frame's marked line calls.
func tsCall(body []string) (string, bool) {
	for j := 1; j < len(body); j++ {
		col := strings.Index(body[j], "~")
		if !strings.Contains(body[j], "<--- HERE") || col < 0 || col >= len(body[j-1]) {
			continue
		}
		// The serialized marker starts one past the call's "(".
		if col > 0 && body[j-1][col-1] == '(' {
			col--
		}
		call := body[j-1][col:]
		if m := tsSourceCall.FindStringSubmatch(call); m != nil {
			return m[1], true
		}
		m := tsSerialCall.FindStringSubmatch(call)
		if m == nil {
			return "", false
		}
		for _, l := range body {
			if a := tsAttr.FindStringSubmatch(l); a != nil && a[1] == m[1] {
				return a[2], true
			}
			if a := tsGetattr.FindStringSubmatch(l); a != nil && a[1] == m[1] {
				return a[2], true
			}
		}
		return "", false
	}
	return "", false
}
