package devenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The binaries a cluster runs, all built by `make tools` into bin/.
const (
	binEtcd              = "etcd"
	binAPIServer         = "kube-apiserver"
	binControllerManager = "kube-controller-manager"
	binScheduler         = "kube-scheduler"
	binKwok              = "kwok"
)

var requiredBinaries = []string{binEtcd, binAPIServer, binControllerManager, binScheduler, binKwok}

// MissingBinaryError says which binaries are missing from which directory.
// `vigil dev` turns it into a usage error (exit 2).
type MissingBinaryError struct {
	Binaries []string // the missing ones, in start order
	Dir      string   // the directory searched, absolute
}

func (e *MissingBinaryError) Error() string {
	noun := "binary"
	if len(e.Binaries) > 1 {
		noun = "binaries"
	}
	return fmt.Sprintf("%s %s not found in %s: run `make tools` to build %s into bin/, "+
		"or point --assets (or $KUBEBUILDER_ASSETS) at a directory that has %s",
		noun, strings.Join(e.Binaries, ", "), e.Dir, pronoun(len(e.Binaries)), pronoun(len(e.Binaries)))
}

func pronoun(n int) string {
	if n > 1 {
		return "them"
	}
	return "it"
}

// defaultAssetsDir is $KUBEBUILDER_ASSETS (which the Makefile exports) or
// bin/ in the working directory.
func defaultAssetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	return "bin"
}

// findBinaries returns the absolute path of every required binary in dir, or
// a *MissingBinaryError naming each one that is missing or not executable.
func findBinaries(dir string) (map[string]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("assets directory %q: %w", dir, err)
	}
	paths := make(map[string]string, len(requiredBinaries))
	var missing []string
	for _, name := range requiredBinaries {
		path := filepath.Join(abs, name)
		info, err := os.Stat(path)
		if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
			continue
		}
		paths[name] = path
	}
	if len(missing) > 0 {
		return nil, &MissingBinaryError{Binaries: missing, Dir: abs}
	}
	return paths, nil
}
