//go:build cgo

package main

import (
	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, func(root *cobra.Command) { root.AddCommand(newConfigCmd()) })
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration and where each value came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			yaml, _ := cmd.Flags().GetBool("yaml")
			js, _ := cmd.Flags().GetBool("json")
			switch {
			case yaml && js:
				return fail.Usagef("config: give --yaml or --json, not both")
			case yaml:
				return c.WriteYAML(cmd.OutOrStdout())
			case js:
				return c.WriteJSON(cmd.OutOrStdout())
			}
			return c.Print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().Bool("print", true, "print the effective configuration (the default)")
	cmd.Flags().Bool("yaml", false, "print it as a Pruning.yaml, sources as comments")
	cmd.Flags().Bool("json", false, "print it as JSON with sources")
	mustRegister(cmd)
	return cmd
}
