package main

import "github.com/spf13/cobra"

func newDevCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Start a local cluster (etcd, kube-apiserver, kwok nodes) with Vigil in it",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return notBuiltYet("vigil dev")
		},
	}
}
