// Package cptest holds what the control plane's own tests share: a model
// mesh for proxyless gRPC clients splitting one target between service
// versions, and a loader that reads a model.Mesh from a JSON file, so that
// the wiring and end-to-end tests can run the real snapshot, server and
// watch chain with a file they edit.
package cptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/maestro-ml/maestro/controlplane/model"
)

// Target is the xds:/// target (API listener name) of SplitMesh.
const Target = "fraud"

// Backend is one service version of SplitMesh.
type Backend struct {
	// Cluster is the cluster name, e.g. "fraud.v1".
	Cluster string
	// Addr is host:port of the instance.
	Host   string
	Port   uint32
	Weight uint32
}

// SplitMesh returns a normalized mesh whose proxyless group (role
// proxyless) routes every call to Target across backends by weight, and
// whose gateway group (role gateway) has one listener doing the same.
func SplitMesh(backends ...Backend) *model.Mesh {
	m := &model.Mesh{}
	var split []model.WeightedCluster
	for _, b := range backends {
		m.Clusters = append(m.Clusters, model.Cluster{
			Name: b.Cluster, Service: "fraud", Protocol: model.ProtocolGRPC,
			Localities: []model.Locality{{Region: "local", Zone: "a", Weight: 1,
				Endpoints: []model.Endpoint{{Address: b.Host, Port: b.Port}}}},
		})
		split = append(split, model.WeightedCluster{Name: b.Cluster, Weight: b.Weight})
	}
	routes := func(name string, domains ...string) model.RouteConfig {
		return model.RouteConfig{Name: name, VirtualHosts: []model.VirtualHost{{Name: name, Domains: domains, Routes: []model.Route{{
			Name:   name,
			Match:  model.RouteMatch{Prefix: "/"},
			Action: model.RouteAction{Clusters: split, Timeout: 5 * time.Second},
		}}}}}
	}
	m.Groups = []model.NodeGroup{
		{Name: "proxyless", Nodes: model.NodeSelector{Role: model.RoleProxyless}, Listeners: []model.Listener{{
			Name: Target, Kind: model.ListenerAPI, Protocol: model.ProtocolGRPC, Routes: routes(Target, Target),
		}}},
		{Name: "gateway", Nodes: model.NodeSelector{Role: model.RoleGateway}, Listeners: []model.Listener{{
			Name: "gateway-http", Kind: model.ListenerGateway, Address: "0.0.0.0", Port: 8080, Protocol: model.ProtocolGRPC,
			Routes: routes("gateway-http", "*"),
		}}},
	}
	m.Normalize()
	return m
}

// WriteMesh writes m as JSON to path, replacing it atomically (see
// ReplaceFile).
func WriteMesh(path string, m *model.Mesh) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode mesh: %w", err)
	}
	return ReplaceFile(path, b)
}

// ReplaceFile writes data to a hidden temporary file beside path and
// renames it over path, as an editor's save does. A watcher on path (or on
// its directory, which ignores hidden files) thus sees one change to the
// whole new content. An in-place write would not do: its truncation and
// its write are two changes, and on a loaded machine the watcher's
// debounce may run out between them and load the empty file.
func ReplaceFile(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadJSON is a controlplane.Loader reading a model.Mesh written by
// WriteMesh from the single path given; bad JSON or an invalid mesh is an
// error, as a bad policy would be.
func LoadJSON(_ context.Context, paths []string) (*model.Mesh, []string, error) {
	if len(paths) != 1 {
		return nil, nil, fmt.Errorf("load mesh json: want one path, got %d", len(paths))
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		return nil, nil, fmt.Errorf("load mesh json: %w", err)
	}
	var m model.Mesh
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("load mesh json %s: %w", paths[0], err)
	}
	m.Normalize()
	if err := m.Validate(); err != nil {
		return nil, nil, fmt.Errorf("load mesh json %s: %w", paths[0], err)
	}
	return &m, paths, nil
}
