package policy

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
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
	Level   level
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

// merged unions the paths of entries with equal level, message and details,
// and sorts entries by message, then details, then level.
func (fe fieldErrors) merged() fieldErrors {
	var out fieldErrors
	for _, e := range fe {
		i := slices.IndexFunc(out, func(o fieldError) bool {
			return o.Level == e.Level && o.Message == e.Message && o.Details == e.Details
		})
		if i < 0 {
			out = append(out, fieldError{Message: e.Message, Details: e.Details, Level: e.Level, Paths: slices.Clone(e.Paths)})
			continue
		}
		out[i].Paths = append(out[i].Paths, e.Paths...)
	}
	for i := range out {
		slices.Sort(out[i].Paths)
		out[i].Paths = slices.Compact(out[i].Paths)
	}
	slices.SortFunc(out, func(a, b fieldError) int {
		return cmp.Or(cmp.Compare(a.Message, b.Message), cmp.Compare(a.Details, b.Details), cmp.Compare(a.Level, b.Level))
	})
	return out
}

// String renders one entry: "<message>: <paths>" and "\n<details>" when set.
// An entry without paths prints "<message>: ", as knative does.
func (e fieldError) String() string {
	s := e.Message + ": " + strings.Join(e.Paths, ", ")
	if e.Details != "" {
		s += "\n" + e.Details
	}
	return s
}

// lines renders every merged entry.
func (fe fieldErrors) lines() []string {
	var out []string
	for _, e := range fe.merged() {
		out = append(out, e.String())
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
