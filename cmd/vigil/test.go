package main

import "github.com/spf13/cobra"

func newTestCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "test --policy PATH... --resource PATH...",
		Short: "Judge resources in YAML files against policies offline, without a cluster",
		RunE: func(*cobra.Command, []string) error {
			return notBuiltYet("vigil test")
		},
	}
}
