//go:build cgo && leakcheck

package main

import (
	"fmt"
	"os"

	"github.com/gopruner/gopruner/torch"
)

// Built with -tags leakcheck, gopruner reports the libtorch handles still
// alive when it exits: each should have been closed deterministically.
func init() {
	atExit = append(atExit, func() {
		t, m := torch.LiveHandles()
		fmt.Fprintf(os.Stderr, "gopruner: leakcheck: %d tensor and %d module handles live at exit\n", t, m)
	})
}
