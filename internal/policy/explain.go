package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	cueerrors "cuelang.org/go/cue/errors"
)

// finding is one reason a policy failed, in words.
type finding struct {
	// where names the container or volume, e.g. `container "app" (docker.io/ubuntu)`;
	// empty means the object itself.
	where string
	// phrase completes the sentence after where: " adds capability NET_ADMIN"
	// or ": securityContext.foo is \"bar\""; for custom findings it is the
	// policy author's own message.
	phrase string
	custom bool
}

// sentence renders a finding for policy policyName; subject names the object.
func (f finding) sentence(subject, policyName string) string {
	who := f.where
	if who == "" {
		who = subject
	}
	if f.custom {
		return who + " fails " + policyName + ": " + f.phrase
	}
	return who + f.phrase + ", which " + policyName + " does not allow"
}

// maxFindings bounds an explanation; the message has the full detail.
const maxFindings = 3

// explainFindings words the distinct findings, the first maxFindings of
// them, then "and N more" for the others and for omitted, findings left
// out before (see maxBodyFindings). It takes time linear in len(fs).
func explainFindings(fs []finding, omitted int, subject, policyName string) string {
	var out []string
	seen := make(map[string]struct{}, min(len(fs), 64))
	distinct := 0
	for _, f := range fs {
		s := f.sentence(subject, policyName)
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		if distinct++; distinct <= maxFindings {
			out = append(out, s)
		}
	}
	if more := distinct - len(out) + omitted; more > 0 {
		out = append(out, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(out, "; ")
}

var containerNouns = map[string]string{
	"containers":          "container",
	"initContainers":      "init container",
	"ephemeralContainers": "ephemeral container",
}

// cueErrorAt is a CUE error reduced to what explanations use: its path,
// unquoted, its text without the path and, for "conflicting values A and
// B", A and B as CUE prints them. It is plain data, so that an evaluation
// worker can send it (see worker.go).
type cueErrorAt struct {
	Path     []string `json:"path"`
	Message  string   `json:"message"`
	Conflict []string `json:"conflict,omitempty"`
}

func newCUEErrorAt(e cueerrors.Error) cueErrorAt {
	c := cueErrorAt{Path: unquotePath(e.Path()), Message: cueMessage(e)}
	if format, args := e.Msg(); strings.HasPrefix(format, "conflicting values") && len(args) == 2 {
		c.Conflict = []string{fmt.Sprint(args[0]), fmt.Sprint(args[1])}
	}
	return c
}

// maxBodyFindings bounds the CUE errors a body result keeps for
// explanations (which show maxFindings of them): an object of 10,000
// failing containers has 10,000 errors, and results are cached.
const maxBodyFindings = 64

// cueErrorsByPath lists the first CUE error of each path, at most
// maxBodyFindings of them; omitted counts the other paths.
func cueErrorsByPath(err error) (out []cueErrorAt, omitted int) {
	seen := map[string]bool{}
	for _, e := range cueerrors.Errors(err) {
		path := unquotePath(e.Path())
		key := strings.Join(path, "\x00")
		if seen[key] {
			continue
		}
		seen[key] = true
		if len(out) == maxBodyFindings {
			omitted++
			continue
		}
		out = append(out, newCUEErrorAt(e))
	}
	return out, omitted
}

// cueFindings explains CUE validation errors: each error path is located in
// the input (which container or volume, which field) and the offending
// value is read from the input document.
func cueFindings(errs []cueErrorAt, in evalInput) []finding {
	doc := in.document()
	out := make([]finding, 0, len(errs))
	for _, e := range errs {
		out = append(out, cueFinding(e, doc, in.podSpec))
	}
	return out
}

// unquotePath turns CUE's quoted labels ("authority-0") into plain keys.
func unquotePath(path []string) []string {
	out := make([]string, len(path))
	for i, p := range path {
		if s, err := strconv.Unquote(p); err == nil && strings.HasPrefix(p, `"`) {
			p = s
		}
		out[i] = p
	}
	return out
}

func cueFinding(e cueErrorAt, doc map[string]any, podSpec []string) finding {
	var f finding
	path := e.Path
	field := path
	podLevel := false
	if rel, ok := cutPrefix(path, podSpec); ok {
		field, podLevel = rel, true
		if len(rel) >= 2 && isIndex(rel[1]) {
			item, _ := lookup(doc, path[:len(podSpec)+2]...)
			itemName := stringAt(item, "name")
			if noun, ok := containerNouns[rel[0]]; ok {
				f.where = noun + " " + strconv.Quote(itemName) + " (" + stringAt(item, "image") + ")"
				field = rel[2:]
			} else if rel[0] == "volumes" {
				f.where = fmt.Sprintf("volume %q", itemName)
				field = rel[2:]
			}
		}
	}
	value, found := lookup(doc, path...)

	// The custom-message idiom: `if cond { name: "message" }` conflicts with
	// the container's real name; the message is the other value.
	if f.where != "" && slices.Equal(field, []string{"name"}) {
		if msg, ok := conflictingOther(e.Conflict, value); ok {
			f.phrase, f.custom = msg, true
			return f
		}
	}
	if phrase, ok := wellKnownPhrase(field, value, found, f.where != "", podLevel); ok {
		f.phrase = " " + phrase
		return f
	}
	fieldName := strings.Join(field, ".")
	switch {
	case len(field) == 0:
		f.phrase, f.custom = e.Message, true
	case !found:
		f.phrase, f.custom = fieldName+": "+e.Message, true
	case isScalar(value):
		f.phrase = fmt.Sprintf(": %s is %s", fieldName, jsonText(value))
	default:
		f.phrase = fmt.Sprintf(": %s is set", fieldName)
	}
	return f
}

// cueMessage is the error text without its path.
func cueMessage(e cueerrors.Error) string {
	format, args := e.Msg()
	return strings.TrimSuffix(fmt.Sprintf(format, args...), ":")
}

// conflictingOther returns, of the two values of a "conflicting values A
// and B" error, the string that is not actual.
func conflictingOther(conflict []string, actual any) (string, bool) {
	if len(conflict) != 2 {
		return "", false
	}
	actualText, _ := actual.(string)
	for _, a := range conflict {
		s, err := strconv.Unquote(a)
		if err == nil && s != actualText {
			return s, true
		}
	}
	return "", false
}

// phraseFunc words a well-known field given its value.
type phraseFunc func(v any) (string, bool)

func always(format string) phraseFunc {
	return func(v any) (string, bool) {
		if strings.Contains(format, "%") {
			return fmt.Sprintf(format, plainText(v)), true
		}
		return format, true
	}
}

func whenTrue(phrase string) phraseFunc {
	return func(v any) (string, bool) {
		if b, ok := v.(bool); ok && b {
			return phrase, true
		}
		return "", false
	}
}

// securityContextPhrases hold for pod and container security contexts.
var securityContextPhrases = map[string]phraseFunc{
	"securityContext.runAsUser":                       always("runs as user %s"),
	"securityContext.runAsGroup":                      always("runs as group %s"),
	"securityContext.runAsNonRoot":                    always("sets runAsNonRoot to %s"),
	"securityContext.seccompProfile.type":             always("uses seccomp profile %s"),
	"securityContext.appArmorProfile.type":            always("uses AppArmor profile %s"),
	"securityContext.seLinuxOptions.type":             always("sets SELinux type %s"),
	"securityContext.seLinuxOptions.user":             always("sets SELinux user %s"),
	"securityContext.seLinuxOptions.role":             always("sets SELinux role %s"),
	"securityContext.seLinuxOptions.level":            always("sets SELinux level %s"),
	"securityContext.windowsOptions.hostProcess":      whenTrue("runs as a Windows HostProcess container"),
	"securityContext.capabilities.add.*":              always("adds capability %s"),
	"securityContext.capabilities.add":                always("adds capabilities %s"),
	"securityContext.privileged":                      whenTrue("runs privileged"),
	"securityContext.allowPrivilegeEscalation":        whenTrue("allows privilege escalation"),
	"securityContext.procMount":                       always("uses procMount %s"),
	"securityContext.readOnlyRootFilesystem":          always("sets readOnlyRootFilesystem to %s"),
	"securityContext.windowsOptions.runAsUserName":    always("runs as Windows user %s"),
	"securityContext.seccompProfile.localhostProfile": always("uses seccomp profile %s"),
}

// containerPhrases are relative to a container.
var containerPhrases = map[string]phraseFunc{
	"ports.*.hostPort": always("uses host port %s"),
	"ports.*.hostIP":   always("binds host IP %s"),
}

// podPhrases are relative to the pod spec.
var podPhrases = map[string]phraseFunc{
	"hostNetwork":                    whenTrue("uses the host network"),
	"hostPID":                        whenTrue("shares the host PID namespace"),
	"hostIPC":                        whenTrue("shares the host IPC namespace"),
	"hostUsers":                      always("sets hostUsers to %s"),
	"securityContext.sysctls.*.name": always("sets sysctl %s"),
	"securityContext.sysctls.*":      sysctlPhrase,
}

// volumePhrases are relative to a volume.
var volumePhrases = map[string]phraseFunc{
	"hostPath":      hostPathPhrase,
	"hostPath.path": always("mounts host path %s"),
	"hostPath.type": always("mounts a host path of type %s"),
}

func sysctlPhrase(v any) (string, bool) {
	if n := stringAt(v, "name"); n != "" {
		return "sets sysctl " + n, true
	}
	return "", false
}

func hostPathPhrase(v any) (string, bool) {
	if p := stringAt(v, "path"); p != "" {
		return "mounts host path " + p, true
	}
	return "is a hostPath volume", true
}

// wellKnownPhrase words the pod-security fields people know by name.
func wellKnownPhrase(field []string, value any, found, inItem, podLevel bool) (string, bool) {
	if !found || !podLevel {
		return "", false
	}
	pattern := make([]string, len(field))
	for i, s := range field {
		if isIndex(s) {
			s = "*"
		}
		pattern[i] = s
	}
	key := strings.Join(pattern, ".")
	var fn phraseFunc
	if inItem {
		fn = containerPhrases[key]
		if fn == nil {
			fn = volumePhrases[key]
		}
	} else {
		fn = podPhrases[key]
	}
	if fn == nil {
		fn = securityContextPhrases[key]
	}
	if fn == nil {
		return "", false
	}
	return fn(value)
}

func cutPrefix(path, prefix []string) ([]string, bool) {
	if len(path) < len(prefix) || !slices.Equal(path[:len(prefix)], prefix) {
		return nil, false
	}
	return path[len(prefix):], true
}

// isIndex: s is a list index of an error path (decimal digits).
func isIndex(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func stringAt(v any, key string) string {
	s, _ := lookupString(v, key)
	return s
}

func lookupString(v any, key string) (string, bool) {
	x, ok := lookup(v, key)
	if !ok {
		return "", false
	}
	s, ok := x.(string)
	return s, ok
}

func isScalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

// plainText renders a value for a sentence: strings unquoted, lists comma-joined.
func plainText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []any:
		parts := make([]string, len(t))
		for i, x := range t {
			parts[i] = plainText(x)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		return jsonText(t)
	default:
		return fmt.Sprint(t)
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
