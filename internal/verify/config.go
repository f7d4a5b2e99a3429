package verify

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const (
	// maxPlatforms bounds the manifests of an image index read for its
	// config files (a multi-platform image has a handful, plus attestation
	// manifests).
	maxPlatforms = 64
	// maxIndexDepth: an index of indexes is followed this deep.
	maxIndexDepth = 2
	// maxConfigCacheBytes bounds the config files kept in the cache.
	maxConfigCacheBytes = 64 << 20
)

// ConfigFiles are an image's config files, as policy-controller's
// `fetchConfigFile: true` puts them in a CIP-level policy's input under
// `config`: keyed "os/architecture[/variant]", every platform of an index.
type ConfigFiles struct {
	Image      name.Digest
	ByPlatform map[string]*v1.ConfigFile
	VerifiedAt time.Time
	RefreshAt  time.Time // as Evidence.RefreshAt
	ExpiresAt  time.Time // cached until then
	Cached     bool      // answered from the cache
	bytes      int64     // the raw config files' sizes
}

func (c *ConfigFiles) stamped(now, refresh, expires time.Time) *ConfigFiles {
	cp := *c
	cp.VerifiedAt, cp.RefreshAt, cp.ExpiresAt = now, refresh, expires
	return &cp
}

func (c *ConfigFiles) asCached(refresh time.Time) *ConfigFiles {
	cp := *c
	cp.Cached, cp.RefreshAt = true, refresh
	return &cp
}

// size: parsed config files take about twice their JSON.
func (c *ConfigFiles) size() int64 { return 256 + 2*c.bytes }

// configFiles stands for "no authority" in the cache flow: config files
// depend on the digest only.
var configFiles = &Authority{fingerprint: "config"}

// ConfigFiles fetches the image's config files (policy-controller's
// fetchConfigFile), following an image index to each platform's image.
// They are cached by digest, like verifications; errors are not cached as
// results. Errors name the image and the registry.
func (v *Verifier) ConfigFiles(ctx context.Context, image string, kc authn.Keychain, lane Lane) (*ConfigFiles, error) {
	return verifyCached(ctx, v, v.configs, "config", configFiles, Request{Image: image, Keychain: kc, Lane: lane}, v.fetchConfigFiles)
}

func (v *Verifier) fetchConfigFiles(ctx context.Context, _ *Authority, d name.Digest, req Request) (*ConfigFiles, error) {
	out := &ConfigFiles{Image: d, ByPlatform: map[string]*v1.ConfigFile{}}
	if err := v.collectConfigs(d, v.remoteOptions(ctx, req.Keychain), out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// collectConfigs adds the config file of ref, or of each image an index
// lists.
func (v *Verifier) collectConfigs(ref name.Digest, opts []remote.Option, out *ConfigFiles, depth int) error {
	reg := ref.RegistryStr()
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return registryFailure(reg, "get manifest "+ref.String(), err)
	}
	switch {
	case desc.MediaType.IsIndex():
		if depth >= maxIndexDepth {
			return failure(ReasonRegistryError, "image index %s nests indexes deeper than %d", ref, maxIndexDepth)
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			return registryFailure(reg, "read index "+ref.String(), err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return registryFailure(reg, "read index "+ref.String(), err)
		}
		if len(im.Manifests) > maxPlatforms {
			return failure(ReasonRegistryError, "image index %s lists %d manifests, more than the %d read", ref, len(im.Manifests), maxPlatforms)
		}
		for _, m := range im.Manifests {
			if err := v.collectConfigs(ref.Context().Digest(m.Digest.String()), opts, out, depth+1); err != nil {
				return err
			}
		}
		return nil
	case desc.MediaType.IsImage():
		return addConfig(ref, desc, out)
	}
	return failure(ReasonRegistryError, "unknown mime type for %s: %v", ref, desc.MediaType)
}

// addConfig reads one image's config file within the blob bound.
func addConfig(ref name.Digest, desc *remote.Descriptor, out *ConfigFiles) error {
	reg := ref.RegistryStr()
	img, err := desc.Image()
	if err != nil {
		return registryFailure(reg, "read image "+ref.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return registryFailure(reg, "read manifest "+ref.String(), err)
	}
	if m.Config.Size > maxBlobBytes {
		return failure(ReasonRegistryError, "config file of %s is %d bytes, more than the %d read", ref, m.Config.Size, maxBlobBytes)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return registryFailure(reg, "fetch config file of "+ref.String(), err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return failure(ReasonRegistryError, "config file of %s: %v", ref, err)
	}
	out.ByPlatform[platformKey(cf.OS, cf.Architecture, cf.Variant)] = cf
	out.bytes += int64(len(raw))
	return nil
}

// platformKey is "os/architecture[/variant]", the architecture normalized
// as container runtimes name it (x86_64 is amd64, aarch64 is arm64, arm64's
// default variant v8 is dropped).
func platformKey(os, arch, variant string) string {
	switch strings.ToLower(arch) {
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		if variant == "8" || variant == "v8" {
			variant = ""
		}
	case "i386":
		arch = "386"
	}
	if variant == "" {
		return os + "/" + arch
	}
	return os + "/" + arch + "/" + variant
}
