package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// level of a field error: policy-controller (through knative) reports
// enforce-mode failures as errors and warn-mode failures as warnings.
type level int

const (
	levelError level = iota
	levelWarning
)

// fieldError is one entry of a knative-style FieldError: a message, the field
// paths it applies to and optional details printed on the next line.
type fieldError struct {
	Message string
	Paths   []string
	Details string
	// Reason, when set, follows Details after a space. It is kept apart
	// so that the one reason shared by every image of an object (a policy
	// body's error) is stored once, not once per image.
	Reason string
	Level  level
}

// fieldErrors formats like knative's apis.FieldError, which is what
// policy-controller users see in denials, warnings and validation errors.
type fieldErrors []fieldError

func (fe fieldErrors) also(more ...fieldError) fieldErrors { return append(fe, more...) }

// filter keeps the entries of one level.
func (fe fieldErrors) filter(l level) fieldErrors {
	var out fieldErrors
	for _, e := range fe {
		if e.Level == l {
			out = append(out, e)
		}
	}
	return out
}

// mergeKey is what merged entries have in common.
type mergeKey struct {
	message, details, reason string
	level                    level
}

// merged unions the paths of entries with equal level, message and details,
// and sorts entries by message, then details, then level. It takes time
// n log n in the number of entries and paths.
func (fe fieldErrors) merged() fieldErrors {
	var out fieldErrors
	at := make(map[mergeKey]int, len(fe))
	for _, e := range fe {
		k := mergeKey{e.Message, e.Details, e.Reason, e.Level}
		i, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, fieldError{Message: e.Message, Details: e.Details, Reason: e.Reason, Level: e.Level, Paths: slices.Clone(e.Paths)})
			continue
		}
		out[i].Paths = append(out[i].Paths, e.Paths...)
	}
	for i := range out {
		slices.Sort(out[i].Paths)
		out[i].Paths = slices.Compact(out[i].Paths)
	}
	slices.SortFunc(out, func(a, b fieldError) int {
		return cmp.Or(cmp.Compare(a.Message, b.Message), compareDetails(a, b), cmp.Compare(a.Level, b.Level))
	})
	return out
}

// compareDetails orders entries by their rendered details, building them
// only when a Reason is set.
func compareDetails(a, b fieldError) int {
	if a.Reason == "" && b.Reason == "" {
		return cmp.Compare(a.Details, b.Details)
	}
	return cmp.Compare(a.details(), b.details())
}

func (e fieldError) details() string {
	if e.Reason == "" {
		return e.Details
	}
	return e.Details + " " + e.Reason
}

// Bounds on what a message shows, so that an object of 40,000 containers
// gets a denial of a few kilobytes, not megabytes: at most maxShownErrors
// merged entries and maxShownBytes in all (but always the first entry),
// each with at most maxShownPaths paths and maxShownDetails bytes of
// details, followed by how many more exist.
const (
	maxShownErrors  = 10
	maxShownBytes   = 8 << 10
	maxShownPaths   = 10
	maxShownDetails = 2048
)

// String renders one entry: "<message>: <paths>" and "\n<details>" when set.
// An entry without paths prints "<message>: ", as knative does. Past
// maxShownPaths paths it ends with ", and N more"; details past
// maxShownDetails bytes are cut, saying how much more there is.
func (e fieldError) String() string {
	var b strings.Builder
	b.WriteString(e.Message)
	b.WriteString(": ")
	for i, p := range e.Paths[:min(len(e.Paths), maxShownPaths)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	if more := len(e.Paths) - maxShownPaths; more > 0 {
		fmt.Fprintf(&b, ", and %d more", more)
	}
	if d := e.details(); d != "" {
		b.WriteString("\n")
		b.WriteString(truncateUTF8(d, maxShownDetails))
	}
	return b.String()
}

// truncateUTF8 cuts s to at most n bytes at a character boundary, saying
// how many bytes were left out.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d more bytes)", s[:cut], len(s)-cut)
}

// lines renders the merged entries, at most maxShownErrors of them and
// maxShownBytes in all, then a line saying how many more there are.
func (fe fieldErrors) lines() []string {
	m := fe.merged()
	var out []string
	size := 0
	for _, e := range m[:min(len(m), maxShownErrors)] {
		line := e.String()
		if size += len(line); len(out) > 0 && size > maxShownBytes {
			break
		}
		out = append(out, line)
	}
	if more := len(m) - len(out); more > 0 {
		out = append(out, fmt.Sprintf("and %d more errors (%d of %d shown)", more, len(out), len(m)))
	}
	return out
}

// Error renders all merged entries joined by newlines.
func (fe fieldErrors) Error() string { return strings.Join(fe.lines(), "\n") }

// Constructors named after knative's, with the same message texts.

func errMissingField(paths ...string) fieldError {
	return fieldError{Message: "missing field(s)", Paths: paths}
}

func errInvalidValue(value, path string, details ...string) fieldError {
	return fieldError{Message: "invalid value: " + value, Paths: []string{path}, Details: strings.Join(details, "\n")}
}

func errMultipleOneOf(paths ...string) fieldError {
	return fieldError{Message: "expected exactly one, got both", Paths: paths}
}

func errMissingOneOf(paths ...string) fieldError {
	return fieldError{Message: "expected exactly one, got neither", Paths: paths}
}

func errDisallowedFields(paths ...string) fieldError {
	return fieldError{Message: "must not set the field(s)", Paths: paths}
}

// Path builders: child("spec", "images") is "spec.images" and
// index("spec.images", 0) is "spec.images[0]".

func child(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func index(parent string, i int) string { return parent + "[" + strconv.Itoa(i) + "]" }
