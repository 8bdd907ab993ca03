package gateway

import (
	"encoding/json"
	"net/http"

	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/maestro-ml/maestro/internal/gateway/xdsclient"
	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

// adminMux serves Envoy's admin endpoints the gateway has.
func (g *Gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain; version=0.0.4; charset=utf-8")
		_ = g.stats.WritePrometheus(w)
		_ = g.wasm.writeStats(w)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if state := g.readiness(); state != "LIVE" {
			http.Error(w, state, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("LIVE\n"))
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		g.configDump(w)
	})
	return mux
}

// readiness is LIVE once listeners and clusters arrived, every EDS
// cluster has its endpoints and every TLS cluster its secrets (Envoy's
// cluster warming), and every listener its route table and filter
// configs; INITIALIZING before.
//
// Like Envoy's server state it stays LIVE once reached: later warming
// clusters do not take the node out of service.
func (g *Gateway) readiness() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.live {
		return "LIVE"
	}
	if g.state == nil || len(g.listeners) == 0 || g.client == nil {
		return "INITIALIZING"
	}
	// Envoy initialises clusters (CDS, then their EDS) before listeners.
	if _, versions := g.client.Accepted(); versions[resource.ClusterType] == "" {
		return "INITIALIZING"
	}
	for _, r := range g.state[resource.ClusterType] {
		c := r.Value.(*xdsconfig.Cluster)
		if _, ok := g.state[resource.EndpointType][c.EDSName]; c.Kind == xdsconfig.ClusterEDS && !ok {
			return "INITIALIZING" // warming: no endpoints yet
		}
		if t := c.TLS; t != nil {
			for _, n := range []string{t.CertSecret, t.CASecret} {
				if _, ok := g.state[resource.SecretType][n]; n != "" && !ok {
					return "INITIALIZING"
				}
			}
		}
	}
	for _, l := range g.listeners {
		snap := l.snap.Load()
		if snap == nil || snap.Routes == nil || len(snap.Filters) < wasmFilters(snap.Listener.Filters) {
			return "INITIALIZING"
		}
	}
	g.live = true
	return "LIVE"
}

// configDump writes the accepted resources as JSON, by type, with the
// accepted version of each type.
func (g *Gateway) configDump(w http.ResponseWriter) {
	if g.client == nil {
		http.Error(w, "not started", http.StatusServiceUnavailable)
		return
	}
	res, versions := g.client.Accepted()
	type typeDump struct {
		TypeURL   string            `json:"type_url"`
		Version   string            `json:"version_info"`
		Resources []json.RawMessage `json:"resources"`
	}
	var out struct {
		Configs []typeDump `json:"configs"`
	}
	for _, t := range xdsclient.Types {
		d := typeDump{TypeURL: t, Version: versions[t], Resources: []json.RawMessage{}}
		for _, a := range res[t] {
			b, err := protojson.Marshal(a)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			d.Resources = append(d.Resources, b)
		}
		out.Configs = append(out.Configs, d)
	}
	w.Header().Set("content-type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func wasmFilters(fs []xdsconfig.HTTPFilter) int {
	n := 0
	for _, f := range fs {
		if f.Kind == xdsconfig.FilterWasm {
			n++
		}
	}
	return n
}
