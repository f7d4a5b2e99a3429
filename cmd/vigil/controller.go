package main

import "github.com/spf13/cobra"

func newControllerCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "controller",
		Short: "Run the in-cluster manager: webhook, reconcilers, metrics, probes, leader election",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notBuiltYet("vigil controller")
		},
	}
}
