// Command vigil judges pods against Sigstore ClusterImagePolicies: at
// admission (a validating webhook), continuously (reconcilers writing
// PolicyReports, events and metrics) and offline (`vigil test`).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit codes shared by every subcommand.
const (
	exitOK       = 0
	exitDenied   = 1 // vigil test: something would be denied
	exitBadInput = 2 // bad input or usage, or a feature not built yet
	// exitCrash: vigil test crashed (a panic, or a fatal error of the Go
	// runtime such as running out of memory): a bug, never a verdict.
	exitCrash = 3
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Continuous verification of pods against Sigstore ClusterImagePolicies",
		Long: `Vigil judges pods against the ClusterImagePolicies (policy.sigstore.dev) of the
Sigstore policy-controller, with the same decision code in three places:

  controller  runs in the cluster: an admission webhook that denies or warns
              exactly like policy-controller, and reconcilers that re-judge running
              pods whenever they or a policy change, writing PolicyReports
              (wgpolicyk8s.io/v1alpha2), events and Prometheus metrics
  test        judges YAML files offline, without a cluster
  dev         starts a complete local cluster (etcd, kube-apiserver, controller
              manager, scheduler, kwok nodes) with Vigil running in it`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newControllerCommand(), newTestCommand(), newDevCommand())
	return root
}

func main() {
	if code, ok := superviseTest(os.Args[1:]); ok {
		os.Exit(code)
	}
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	code := exitBadInput
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if code != exitDenied || ee == nil || ee.err.Error() != "" {
		fmt.Fprintln(os.Stderr, "vigil:", err)
	}
	os.Exit(judgeExitCode(code))
}

// notBuiltYet is what a subcommand whose feature does not exist yet returns.
func notBuiltYet(what string) error {
	return &exitError{code: exitBadInput, err: fmt.Errorf("%s is not built yet; see README.md, \"What is not done yet\"", what)}
}
