//go:build unix

package devenv

import "syscall"

// signalGroup sends sig to every process of the group whose leader is pgid.
func signalGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}
