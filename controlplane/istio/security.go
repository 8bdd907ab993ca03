package istio

import (
	"slices"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// peerAuthentication is the mesh-wide mTLS mode, in the root namespace.
func (r *renderer) peerAuthentication() Resource {
	mode := security.PeerAuthentication_MutualTLS_STRICT
	switch r.pm.Config.Spec.MTLS.Mode {
	case policy.MTLSPermissive:
		mode = security.PeerAuthentication_MutualTLS_PERMISSIVE
	case policy.MTLSDisable:
		mode = security.PeerAuthentication_MutualTLS_DISABLE
	}
	return Resource{APIVersion: SecurityAPIVersion, Kind: "PeerAuthentication", Name: "default", Namespace: r.opts.RootNamespace,
		Spec: &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: mode}}}
}

// authorizationPolicies renders each policy AuthorizationPolicy for the
// workloads of its service (selected by Options.AppLabel).
func (r *renderer) authorizationPolicies() []Resource {
	var out []Resource
	for _, az := range r.pm.Authorizations {
		ap := &security.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{r.opts.AppLabel: az.Spec.Service}},
			Action:   security.AuthorizationPolicy_ALLOW,
		}
		if az.Spec.Action == policy.ActionDeny {
			ap.Action = security.AuthorizationPolicy_DENY
		}
		for _, rule := range az.Spec.Rules {
			ap.Rules = append(ap.Rules, r.authzRules(rule)...)
		}
		ns := namespaceOf(az.Metadata)
		if s := r.pm.Service(az.Spec.Service); s != nil {
			ns = namespaceOf(s.Metadata)
		}
		out = append(out, Resource{APIVersion: SecurityAPIVersion, Kind: "AuthorizationPolicy", Name: az.Metadata.Name, Namespace: ns, Spec: ap})
	}
	sortResources(out)
	return out
}

// authzRules renders one policy rule. Istio's conditions apply to a whole
// rule, so a rule naming models becomes two: gRPC ModelInfer with the
// model header, and everything matched by path (REST model paths, paths,
// path prefixes); both keep the rule's callers.
func (r *renderer) authzRules(rule policy.AuthzRule) []*security.Rule {
	from := r.authzFrom(rule.From)
	models, paths, any := r.authzTargets(rule.To)
	if any {
		return []*security.Rule{{From: from}}
	}
	var out []*security.Rule
	if len(models) > 0 {
		out = append(out, &security.Rule{
			From: from,
			To:   []*security.Rule_To{{Operation: &security.Operation{Paths: []string{policy.OIPInferPath}}}},
			When: []*security.Condition{{Key: "request.headers[" + r.pm.Config.Spec.ModelHeader + "]", Values: models}},
		})
		for _, m := range models {
			paths = append(paths, "/v2/models/"+m+"/*")
		}
	}
	if len(paths) > 0 {
		out = append(out, &security.Rule{From: from, To: []*security.Rule_To{{Operation: &security.Operation{Paths: paths}}}})
	}
	return out
}

// authzFrom lists a rule's callers: principals (SPIFFE IDs of identities,
// services and gateways) and namespaces. No callers means any caller.
func (r *renderer) authzFrom(f policy.AuthzFrom) []*security.Rule_From {
	var principals []string
	td := r.pm.Config.Spec.TrustDomain
	for _, id := range f.Identities {
		principals = append(principals, principal(id))
	}
	for _, name := range f.Services {
		if s := r.pm.Service(name); s != nil {
			principals = append(principals, principal(s.Spec.Identity.SPIFFEID(td)))
		}
	}
	for _, name := range f.Gateways {
		if g := r.pm.Gateway(name); g != nil {
			principals = append(principals, principal(g.Spec.Identity.SPIFFEID(td)))
		}
	}
	slices.Sort(principals)
	principals = slices.Compact(principals)
	if len(principals) == 0 && len(f.Namespaces) == 0 {
		return nil
	}
	// Separate sources are ORed: a caller in a listed namespace need not
	// also be a listed principal.
	var out []*security.Rule_From
	if len(principals) > 0 {
		out = append(out, &security.Rule_From{Source: &security.Source{Principals: principals}})
	}
	if len(f.Namespaces) > 0 {
		out = append(out, &security.Rule_From{Source: &security.Source{Namespaces: slices.Sorted(slices.Values(f.Namespaces))}})
	}
	return out
}

// authzTargets resolves a rule's requests into model names and Istio paths
// (a trailing * is a prefix); any is true when the rule names no request
// or a route that matches every request.
func (r *renderer) authzTargets(to policy.AuthzTo) (models, paths []string, any bool) {
	models = slices.Clone(to.Models)
	paths = slices.Clone(to.Paths)
	for _, p := range to.PathPrefixes {
		paths = append(paths, p+"*")
	}
	for _, name := range to.Routes {
		rt := r.pm.Route(name)
		if rt == nil {
			continue
		}
		switch m := rt.Spec.Match; {
		case m.Model != "":
			models = append(models, m.Model)
		case m.PathPrefix != "":
			paths = append(paths, m.PathPrefix+"*")
		case m.Path != "":
			paths = append(paths, m.Path)
		default:
			return nil, nil, true
		}
	}
	if len(models) == 0 && len(paths) == 0 {
		return nil, nil, true
	}
	slices.Sort(models)
	return slices.Compact(models), paths, false
}
