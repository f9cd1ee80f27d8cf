//go:build cgo

package main

import (
	"fmt"

	"github.com/gopruner/gopruner/torch"
	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print gopruner's version and the libtorch it runs on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tv, err := torch.Version()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "gopruner %s\n", version)
			fmt.Fprintf(w, "libtorch %s\n", tv)
			if torch.CUDAAvailable() {
				fmt.Fprintf(w, "cuda     yes, %d device(s)\n", torch.CUDADeviceCount())
			} else {
				fmt.Fprintln(w, "cuda     no")
			}
			fmt.Fprintf(w, "threads  %d\n", torch.NumThreads())
			return nil
		},
	}
}
