package closedloop

import (
	"fmt"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/rollout"
)

// Signal sets, by the name `maestro controlplane --signals` takes.
const (
	// SignalsEnvoy judges a version on its cluster's Envoy upstream stats
	// (rollout.DefaultSignals): for meshes of Envoy sidecars or gateways.
	SignalsEnvoy = "envoy"
	// SignalsInference judges it on the inference servers' own
	// maestro_inference_* series (InferenceSignals): for proxyless
	// clients, which report nothing, and to count gRPC errors Envoy sees
	// as HTTP 200.
	SignalsInference = "inference"
)

// SignalsByName returns the signal set name.
//
// # Errors
//
// An unknown name, listing the known ones.
func SignalsByName(name string) (rollout.SignalsFunc, error) {
	switch name {
	case "", SignalsEnvoy:
		return rollout.DefaultSignals, nil
	case SignalsInference:
		return InferenceSignals, nil
	}
	return nil, fmt.Errorf("signals %q: want %s or %s", name, SignalsEnvoy, SignalsInference)
}

// InferenceSignals judges a mesh version on the inference server's series
// of the route's model (match.model, else the service name) at the model
// repository version the mesh version names: the mesh version "v2" (or
// "2") is repository version "2". The inference server labels series with
// its repository's version, which the policy does not otherwise know, so
// this naming convention is what links the two.
func InferenceSignals(r *policy.Route, service, version string) metricsource.Signals {
	model := r.Spec.Match.Model
	if model == "" {
		model = service
	}
	return metricsource.InferenceSignals(model, strings.TrimPrefix(version, "v"))
}
