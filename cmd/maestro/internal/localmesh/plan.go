package localmesh

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// Version labels that tell `maestro up` which models a backend serves. A
// version without them serves every model of the repository.
const (
	LabelModel        = "model"
	LabelModelVersion = "modelVersion"
	// LabelServer, on a version of an http service, names the server of
	// a gRPC service's version (<service>-<version>) whose REST port the
	// endpoint is: an inference server serves gRPC and REST on two ports,
	// so its REST side is a version of a service of its own.
	LabelServer = "server"
)

// backend is one inference server to start: a service version's local
// endpoint and the models it serves.
type backend struct {
	Service, Version string
	Addr             string // the gRPC endpoint's host:port from the policy; "" picks one
	HTTPAddr         string // the REST endpoint's host:port; "" picks one
	Model            string // "" serves every model
	ModelVersion     string // "" serves every version of Model
	server           string // the LabelServer label of an http version
}

// Name identifies the backend's server in responses (x-maestro-server).
func (b backend) Name() string { return b.Service + "-" + b.Version }

// plan lists the backends of mesh: every local endpoint of every version of
// a service that a route sends traffic to. Services only referenced in
// other ways (a tracing collector) are not inference servers.
func plan(mesh *policy.Mesh) ([]backend, error) {
	routed := map[string]bool{}
	for _, r := range mesh.Routes {
		routed[r.Spec.Service] = true
	}
	var out []backend
	var rest []backend // http versions that share a gRPC version's server
	for _, s := range mesh.Services {
		if !routed[s.Metadata.Name] {
			continue
		}
		for _, v := range s.Spec.Versions {
			for _, ep := range v.Endpoints {
				if !isLoopback(ep.Address) {
					return nil, fmt.Errorf("service %s version %s: endpoint %s is not on this machine: maestro up starts local servers only",
						s.Metadata.Name, v.Name, ep.Address)
				}
				b := backend{
					Service: s.Metadata.Name, Version: v.Name,
					Model:        v.Labels[LabelModel],
					ModelVersion: v.Labels[LabelModelVersion],
					server:       v.Labels[LabelServer],
				}
				addr := net.JoinHostPort(ep.Address, fmt.Sprint(ep.Port))
				if s.Spec.Protocol == policy.ProtocolHTTP {
					b.HTTPAddr = addr
					if b.server != "" {
						rest = append(rest, b)
						continue
					}
				} else {
					b.Addr = addr
				}
				out = append(out, b)
			}
		}
	}
	for _, r := range rest {
		i := slices.IndexFunc(out, func(b backend) bool { return b.Addr != "" && b.Name() == r.server })
		if i < 0 {
			return nil, fmt.Errorf("service %s version %s: label %s: %q names no gRPC version's server (<service>-<version>)",
				r.Service, r.Version, LabelServer, r.server)
		}
		if out[i].HTTPAddr != "" {
			return nil, fmt.Errorf("service %s version %s: label %s: server %s already has its REST port %s",
				r.Service, r.Version, LabelServer, r.server, out[i].HTTPAddr)
		}
		if out[i].Model != r.Model || out[i].ModelVersion != r.ModelVersion {
			return nil, fmt.Errorf("service %s version %s: label %s: %s serves model %q version %q, not %q version %q",
				r.Service, r.Version, LabelServer, r.server, out[i].Model, out[i].ModelVersion, r.Model, r.ModelVersion)
		}
		out[i].HTTPAddr = r.HTTPAddr
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the policy routes traffic to no service with endpoints")
	}
	return out, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// repository lays out the model repository of b under dir: copies of the
// models (and versions) it serves from src, so that a request without a
// version gets the backend's version.
func (b backend) repository(src, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	models, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read models: %w", err)
	}
	found := false
	for _, m := range models {
		if !m.IsDir() || (b.Model != "" && m.Name() != b.Model) {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(src, m.Name()))
		if err != nil {
			return err
		}
		for _, v := range versions {
			// Files (config.yaml) always come along; version directories
			// only when the backend serves them.
			if v.IsDir() && b.ModelVersion != "" && v.Name() != b.ModelVersion {
				continue
			}
			found = found || v.IsDir()
			if err := copyTree(filepath.Join(src, m.Name(), v.Name()), filepath.Join(dir, m.Name(), v.Name())); err != nil {
				return err
			}
		}
	}
	if !found {
		want := "any model"
		if b.Model != "" {
			want = "model " + b.Model
		}
		if b.ModelVersion != "" {
			want += " version " + b.ModelVersion
		}
		return fmt.Errorf("service %s version %s: its labels ask for %s, which %s does not have", b.Service, b.Version, want, src)
	}
	return nil
}

// copyTree copies the file or directory src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// extract writes the files of fsys under dir, keeping any file that is
// already there: a policy the user edited survives a restart.
func extract(fsys fs.FS, dir string) error {
	return fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if _, err := os.Stat(target); err == nil {
			return nil
		}
		data, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// routeSummary is one line of the start-up table.
func routeSummary(r *policy.Route) string {
	sp := &r.Spec
	var parts []string
	for _, s := range sp.Split {
		parts = append(parts, fmt.Sprintf("%s %d%%", s.Version, s.Weight))
	}
	desc := strings.Join(parts, " / ")
	if e := sp.Ensemble; e != nil {
		var ms []string
		for _, m := range e.Members {
			ms = append(ms, m.Version)
		}
		adaptive := ""
		if e.Weights == policy.WeightsAdaptive {
			adaptive = ", adaptive weights"
		}
		desc = fmt.Sprintf("ensemble %s of %s (quorum %d%s)", e.Strategy, strings.Join(ms, ", "), e.Quorum, adaptive)
	}
	if ro := sp.Rollout; ro != nil {
		steps := make([]string, len(ro.Steps))
		for i, w := range ro.Steps {
			steps[i] = fmt.Sprint(w)
		}
		desc += fmt.Sprintf(", rollout of %s at %s%% every %s", ro.Version, strings.Join(steps, "/"), ro.StepInterval.D())
	}
	if sh := sp.Shadow; sh != nil {
		desc += fmt.Sprintf(", shadow %g%% to %s", sh.Percentage, sh.Version)
	}
	for _, rule := range sp.Rules {
		desc += fmt.Sprintf(", rule %s", rule.Name)
	}
	return desc
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
