package policy

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestGlobs(t *testing.T) {
	tests := []struct {
		image, glob string
		want        bool
	}{
		// The examples of policy-controller's glob tests.
		{"foo", "index.docker.io/library/*", true},
		{"foo", "index.docker.io/**", true},
		{"foo", "**", true},
		{"ghcr.io/foo", "ghcr.io/foo*", true},
		{"ghcr.io/foo", "ghcr.io/*/*", false},
		{"prefix-ghcr.io/foo", "ghcr.io/foo", false},
		// `*` and `*/*` mean Docker Hub.
		{"ubuntu", "*", true},
		{"ghcr.io/ubuntu", "*", false},
		{"someone/app", "*/*", true},
		{"ghcr.io/someone/app", "*/*", false},
		// `*` stays within a path segment, `**` crosses them.
		{"ghcr.io/a/b/c", "ghcr.io/*", false},
		{"ghcr.io/a/b/c", "ghcr.io/**", true},
		// `.` is literal.
		{"ghcrxio/foo", "ghcr.io/foo", false},
		// Tag references match on the repository, without the tag.
		{"docker.io/ubuntu:22.04", "index.docker.io/library/ubuntu", true},
		{"ghcr.io/foo/bar:v1", "ghcr.io/foo/bar:v1*", true}, // fallback to the image as written
		// Digest references match on repository@digest, so `*` crosses `@`.
		{"ghcr.io/foo/bar@sha256:" + sha, "ghcr.io/foo/bar*", true},
		{"ghcr.io/foo/bar@sha256:" + sha, "ghcr.io/foo/bar", false},
		{"ghcr.io/foo/bar:v1@sha256:" + sha, "ghcr.io/foo/bar@sha256:" + sha, true},
	}
	for _, tc := range tests {
		re, err := compileGlob(tc.glob)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tc.glob, err)
		}
		ref, err := name.ParseReference(tc.image, name.WeakValidation)
		if err != nil {
			t.Fatal(err)
		}
		if got := globsMatch(imageGlobs{re}, matchName(ref), tc.image); got != tc.want {
			t.Errorf("glob %q on %q (%s) = %v, want %v", tc.glob, tc.image, matchName(ref), got, tc.want)
		}
	}
}

const sha = "2adf22367284330af9f832ffefb717c78239f6251d9d0f58de50b86229ed1427"

func TestMatchName(t *testing.T) {
	for image, want := range map[string]string{
		"ubuntu":                      "index.docker.io/library/ubuntu",
		"docker.io/ubuntu:22.04":      "index.docker.io/library/ubuntu",
		"ghcr.io/a/b@sha256:" + sha:   "ghcr.io/a/b@sha256:" + sha,
		"ghcr.io/a/b:1@sha256:" + sha: "ghcr.io/a/b@sha256:" + sha,
	} {
		ref, err := name.ParseReference(image, name.WeakValidation)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchName(ref); got != want {
			t.Errorf("matchName(%q) = %q, want %q", image, got, want)
		}
	}
}

// TestMatchAllIsItsExpression: the `**` shortcut agrees with the regular
// expression it stands for, newlines included.
func TestMatchAllIsItsExpression(t *testing.T) {
	re, err := compileGlob("**")
	if err != nil {
		t.Fatal(err)
	}
	for _, qualified := range []string{"", "a", "a\nb", "\n"} {
		for _, original := range []string{"", "x", "x\ny"} {
			want := (qualified != "" && re.MatchString(qualified)) || re.MatchString(original)
			if got := globsMatch(imageGlobs{re}, qualified, original); got != want {
				t.Errorf("matches(%q, %q) = %v, want %v", qualified, original, got, want)
			}
		}
	}
}

// globsMatch is g.matches without a bound.
func globsMatch(g imageGlobs, qualified, original string) bool {
	hit, ok := g.matches(qualified, original, &budget{ctx: context.Background()})
	if !ok {
		panic("an unbounded match ran out of time")
	}
	return hit
}
