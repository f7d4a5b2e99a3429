package policy

import (
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// compileGlob turns an image glob into an anchored regular expression with
// policy-controller's rules: `**` matches anything, `*` anything but `/`,
// `.` is literal, and the globs `*` and `*/*` mean Docker Hub images.
func compileGlob(glob string) (*regexp.Regexp, error) {
	switch glob {
	case "*":
		glob = "index.docker.io/library/*"
	case "*/*":
		glob = "index.docker.io/*/*"
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case glob[i] == '*':
			b.WriteString("[^/]*")
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// matchName is the string globs are matched against: the fully qualified
// reference without its tag (repository@digest for a digest reference, the
// repository for a tag reference).
func matchName(ref name.Reference) string {
	if d, ok := ref.(name.Digest); ok {
		return d.Context().Name() + "@" + d.DigestStr()
	}
	return ref.Context().Name()
}

// imageGlobs is the compiled images list of a policy.
type imageGlobs []*regexp.Regexp

// matchAll is the expression of the glob `**`.
const matchAll = "^.*$"

// matches reports whether any glob matches the qualified name or, as
// policy-controller's deprecated fallback, the image as written; ok is
// false when the budget ran out first.
func (g imageGlobs) matches(qualified, original string, b *budget) (hit, ok bool) {
	for _, re := range g {
		if b.spent() {
			return false, false
		}
		if re.String() == matchAll { // `**`, the common case: no newline
			if (qualified != "" && !strings.Contains(qualified, "\n")) || !strings.Contains(original, "\n") {
				return true, true
			}
			continue
		}
		if (qualified != "" && re.MatchString(qualified)) || re.MatchString(original) {
			return true, true
		}
	}
	return false, true
}
