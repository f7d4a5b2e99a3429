package manager

import (
	"strings"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// certRotationLogger is the name cert-controller's rotator logs under.
const certRotationLogger = "cert-rotation"

// QuietCertRotation returns l, but for two errors that cert-controller's
// rotator logs, with a stack trace, on nearly every start before it recovers
// by itself: a conflict writing the certificate Secret (its start-up refresh
// and its Secret reconciler both write it; the loser retries) and a Secret
// read before its first write has put ca.crt in. Those are logged at info
// level, with the error, and without a stack trace. Every other error, of the
// rotator included, is logged as it was.
func QuietCertRotation(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return l
	}
	return logr.New(&quietSink{LogSink: l.GetSink()})
}

type quietSink struct {
	logr.LogSink
	name string
}

// expectedAtStart says whether err is one of the rotator's passing errors.
func expectedAtStart(err error) bool {
	return apierrors.IsConflict(err) || (err != nil && strings.Contains(err.Error(), "not well-formed, missing ca.crt"))
}

func (s *quietSink) Init(info logr.RuntimeInfo) {
	info.CallDepth++ // this wrapper's frame
	s.LogSink.Init(info)
}

func (s *quietSink) Error(err error, msg string, kv ...any) {
	if s.name == certRotationLogger && expectedAtStart(err) {
		s.LogSink.Info(0, msg+" (retrying)", append(kv, "error", err.Error())...)
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s *quietSink) WithName(name string) logr.LogSink {
	full := name
	if s.name != "" {
		full = s.name + "." + name
	}
	return &quietSink{LogSink: s.LogSink.WithName(name), name: full}
}

func (s *quietSink) WithValues(kv ...any) logr.LogSink {
	return &quietSink{LogSink: s.LogSink.WithValues(kv...), name: s.name}
}
