package verify

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// platformImage is an empty image whose config names a platform and a
// creation time.
func platformImage(t testing.TB, os, arch, variant string, created time.Time) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: os, Architecture: arch, Variant: variant, Created: v1.Time{Time: created}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushTo(t testing.TB, ref string, w remote.Taggable) name.Digest {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var d v1.Hash
	switch x := w.(type) {
	case v1.Image:
		err = remote.Write(tag, x)
		if err == nil {
			d, err = x.Digest()
		}
	case v1.ImageIndex:
		err = remote.WriteIndex(tag, x)
		if err == nil {
			d, err = x.Digest()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// fetchConfigFile: one image gives its platform's config; an index gives
// every platform's, keyed as policy-controller keys them; a second call is
// answered from the cache without a registry request.
func TestConfigFiles(t *testing.T) {
	reg := newTestRegistry(t)
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	single := pushTo(t, reg.host+"/config/single:1", platformImage(t, "linux", "amd64", "", created))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: platformImage(t, "linux", "amd64", "", created)},
		mutate.IndexAddendum{Add: platformImage(t, "linux", "arm64", "v8", created.Add(time.Hour))},
		mutate.IndexAddendum{Add: platformImage(t, "linux", "arm", "v7", created)},
	)
	multi := pushTo(t, reg.host+"/config/multi:1", idx)

	v := New(Options{})
	for _, tc := range []struct {
		name  string
		image string
		want  []string
	}{
		{"image", single.String(), []string{"linux/amd64"}},
		{"image by tag", reg.host + "/config/single:1", []string{"linux/amd64"}},
		{"index", multi.String(), []string{"linux/amd64", "linux/arm/v7", "linux/arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := v.ConfigFiles(context.Background(), tc.image, nil, LaneAdmission)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(cf.ByPlatform)); !slices.Equal(got, tc.want) {
				t.Fatalf("platforms %v, want %v", got, tc.want)
			}
			if c := cf.ByPlatform["linux/amd64"]; !c.Created.Equal(created) {
				t.Errorf("created %s, want %s", c.Created, created)
			}
		})
	}
	before := reg.requests.Load()
	cf, err := v.ConfigFiles(context.Background(), multi.String(), nil, LaneBackground)
	if err != nil || !cf.Cached {
		t.Fatalf("second call: cached %v, %v", cf != nil && cf.Cached, err)
	}
	if n := reg.requests.Load() - before; n != 0 {
		t.Errorf("a cached answer made %d registry requests", n)
	}

	missing := multi.Context().Digest("sha256:" + sixtyFour)
	_, err = v.ConfigFiles(context.Background(), missing.String(), nil, LaneAdmission)
	if ReasonOf(err) != ReasonNotFound || ReasonOf(err).Verdict() {
		t.Fatalf("missing image: %v, want a NotFound error", err)
	}
}

func TestPlatformKey(t *testing.T) {
	for _, tc := range []struct{ os, arch, variant, want string }{
		{"linux", "amd64", "", "linux/amd64"},
		{"linux", "x86_64", "", "linux/amd64"},
		{"linux", "arm64", "v8", "linux/arm64"},
		{"linux", "aarch64", "", "linux/arm64"},
		{"linux", "arm", "v7", "linux/arm/v7"},
		{"linux", "ppc64le", "", "linux/ppc64le"},
		{"windows", "amd64", "", "windows/amd64"},
	} {
		if got := platformKey(tc.os, tc.arch, tc.variant); got != tc.want {
			t.Errorf("platformKey(%q, %q, %q) = %q, want %q", tc.os, tc.arch, tc.variant, got, tc.want)
		}
	}
}
