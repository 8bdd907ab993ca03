package closedloop

import (
	"fmt"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// Signal sets, by the name Config.Signals and `maestro controlplane
// --signals` take.
const (
	// SignalsEnvoy judges a version on its cluster's Envoy upstream stats
	// (rollout.DefaultSignals): for meshes of Envoy sidecars or gateways.
	SignalsEnvoy = "envoy"
	// SignalsInference judges it on the inference servers' own
	// maestro_inference_* series: for proxyless clients, which report
	// nothing, and to count gRPC errors Envoy sees as HTTP 200.
	SignalsInference = "inference"
)

// Version labels naming what a mesh version serves, as `maestro up` reads
// them too.
const (
	LabelModel        = "model"
	LabelModelVersion = "modelVersion"
)

// ValidSignals checks a signal set name.
//
// # Errors
//
// An unknown name, listing the known ones.
func ValidSignals(name string) error {
	switch name {
	case "", SignalsEnvoy, SignalsInference:
		return nil
	}
	return fmt.Errorf("signals %q: want %s or %s", name, SignalsEnvoy, SignalsInference)
}

// signals returns the SignalsFunc of cfg.
func (l *Loop) signals() rollout.SignalsFunc {
	switch {
	case l.cfg.SignalsFunc != nil:
		return l.cfg.SignalsFunc
	case l.cfg.Signals == SignalsInference:
		return l.inferenceSignals
	}
	return rollout.DefaultSignals
}

// inferenceSignals judges a mesh version on the inference server's series
// of its model at its repository version. The inference server labels
// series with the repository's model and version, which the policy links
// to the mesh version through the version's labels: model (else the
// route's match.model, else the service name) and modelVersion (else the
// mesh version's name without a leading "v": mesh version v2 is
// repository version 2).
func (l *Loop) inferenceSignals(r *policy.Route, service, version string) metricsource.Signals {
	model := r.Spec.Match.Model
	if model == "" {
		model = service
	}
	repo := strings.TrimPrefix(version, "v")
	l.mu.Lock()
	pm := l.current
	l.mu.Unlock()
	var s *policy.Service
	if pm != nil {
		s = pm.Service(service)
	}
	if s != nil {
		for _, v := range s.Spec.Versions {
			if v.Name != version {
				continue
			}
			if m := v.Labels[LabelModel]; m != "" {
				model = m
			}
			if mv := v.Labels[LabelModelVersion]; mv != "" {
				repo = mv
			}
		}
	}
	return metricsource.InferenceSignals(model, repo)
}
