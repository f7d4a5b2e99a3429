package manager

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretFiles writes the certificate Secret's tls.crt and tls.key into the
// certificate directory whenever they change: what the kubelet's Secret
// volume does in a cluster, for `vigil dev`, which has no kubelet.
// cert-controller makes the certificate; this only copies it.
type secretFiles struct {
	reader client.Reader
	secret types.NamespacedName
	dir    string
}

func (s *secretFiles) NeedLeaderElection() bool { return false }

func (s *secretFiles) Start(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var sec corev1.Secret
		if err := s.reader.Get(ctx, s.secret, &sec); err == nil {
			for _, name := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				if err := writeIfChanged(filepath.Join(s.dir, name), sec.Data[name]); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// writeIfChanged replaces path with data atomically, unless data is empty or
// already there.
func writeIfChanged(path string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) { // #nosec G304 -- tls.crt or tls.key in the --cert-dir the operator chose
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
