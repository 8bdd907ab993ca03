package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// adaptiveExample is examples/mesh.yaml with the fraud-ensemble route's
// weights adaptive, evaluated every second.
func adaptiveExample(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The ensemble block of fraud-ensemble, whatever its weights say, up to
	// its quorum: the test sets its own bounds, interval and smoothing.
	block := regexp.MustCompile("(?s)  ensemble:\n    strategy: weighted_mean\n.*?\n    quorum: 2\n")
	if len(block.FindAllString(string(src), -1)) != 1 {
		t.Fatal("examples/mesh.yaml changed: it no longer has one weighted_mean ensemble with quorum 2 (fraud-ensemble)")
	}
	adaptive := block.ReplaceAllLiteralString(string(src), `  ensemble:
    strategy: weighted_mean
    weights: adaptive
    adaptive: {minWeight: 0.05, maxWeight: 1, interval: 1s, smoothing: 1}
    members:
      - {version: v1, model: fraud, weight: 1}
      - {version: v2, model: fraud, weight: 1}
      - {version: logistic, model: fraud-logistic, weight: 1}
    quorum: 2
`)
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	write(t, path, adaptive)
	return path
}

// fanoutWeights decodes the fanout filter's ECDS config and returns the
// member weights of the first Envoy route of policy route, by cluster.
func fanoutWeights(t *testing.T, res *discoveryv3.Resource, route string) map[string]float64 {
	t.Helper()
	var tec corev3.TypedExtensionConfig
	if err := res.GetResource().UnmarshalTo(&tec); err != nil {
		t.Fatal(err)
	}
	var wasm wasmfilterv3.Wasm
	if err := tec.GetTypedConfig().UnmarshalTo(&wasm); err != nil {
		t.Fatal(err)
	}
	var conf wrapperspb.StringValue
	if err := wasm.GetConfig().GetConfiguration().UnmarshalTo(&conf); err != nil {
		t.Fatal(err)
	}
	var f filterconfig.Fanout
	if err := json.Unmarshal([]byte(conf.GetValue()), &f); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Routes {
		if r.Route == route || strings.HasPrefix(r.Route, route+"_") {
			out := map[string]float64{}
			for _, m := range r.Members {
				out[m.Cluster] = m.Weight
			}
			return out
		}
	}
	t.Fatalf("no fanout route %s in %s", route, conf.GetValue())
	return nil
}

// TestAdaptiveWeightsReachTheFanoutFilter sends the control plane the
// members' answers and the labels of an ensemble whose v2 member is always
// wrong: within a few one-second intervals the fanout filter's config,
// pushed over ECDS to a gateway, gives v2 the minimum weight and the
// others the maximum.
func TestAdaptiveWeightsReachTheFanoutFilter(t *testing.T) {
	dir := t.TempDir()
	p := startLoopPlane(t, "cp-1", adaptiveExample(t), dir, filepath.Join(dir, "audit.jsonl"))
	ctx, cancel := context.WithTimeout(context.Background(), rolloutLimit)
	defer cancel()
	stream, err := adsConn(t, p.Addrs.XDS.String()).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(t, "gw-1", "gateway", ""),
		TypeUrl: resource.ExtensionConfigType, ResourceNamesSubscribe: []string{"edge.fanout"}}); err != nil {
		t.Fatal(err)
	}
	pushes := make(chan *discoveryv3.DeltaDiscoveryResponse, 16)
	go func() {
		defer close(pushes)
		for {
			res, err := stream.Recv()
			if err != nil {
				return
			}
			pushes <- res
			if stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ExtensionConfigType, ResponseNonce: res.GetNonce()}) != nil {
				return
			}
		}
	}()
	first := <-pushes
	if first == nil || len(first.GetResources()) != 1 {
		t.Fatalf("first ECDS push %v", first)
	}
	if w := fanoutWeights(t, first.GetResources()[0], "fraud-ensemble"); w["fraud.v2"] != 1 {
		t.Fatalf("starting weights %v, want the policy's 1", w)
	}

	admin := "http://" + p.Addrs.Admin.String()
	want := map[string]float64{"fraud.v1": 1, "fraud.v2": 0.05, "fraud.logistic": 1}
	var got map[string]float64
	for i := 0; ; i++ {
		// A batch of labelled requests, then whatever was pushed.
		for j := range 20 {
			id, truth := fmt.Sprintf("r%d-%d", i, j), j%2
			postJSON(t, admin+"/v1/observations", fmt.Sprintf(`{"route": "fraud-ensemble", "requestId": %q, "ensemble": %d, "answers": [
				{"member": "fraud.v1/fraud", "outcome": "answered", "value": %d},
				{"member": "fraud.v2/fraud", "outcome": "answered", "value": %d},
				{"member": "fraud.logistic/fraud-logistic", "outcome": "answered", "value": %d}]}`, id, truth, truth, 1-truth, truth),
				http.StatusNoContent)
			// 404 until the loop's first tick tracks the ensemble: the
			// tuner keeps no answers of routes it does not follow yet.
			postJSON(t, admin+"/v1/feedback", fmt.Sprintf(`{"requestId": %q, "value": %d}`, id, truth), http.StatusNoContent, http.StatusNotFound)
		}
		select {
		case res, ok := <-pushes:
			if !ok {
				t.Fatalf("ECDS stream ended; last weights %v", got)
			}
			got = fanoutWeights(t, res.GetResources()[0], "fraud-ensemble")
		case <-time.After(200 * time.Millisecond): // the next batch
		case <-ctx.Done():
			t.Fatalf("weights never reached %v; last pushed %v", want, got)
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
	}
	evs := 0
	for _, ev := range readAudit(t, filepath.Join(dir, "audit.jsonl")) {
		if ev == "ensemble_weight" {
			evs++
		}
	}
	if evs == 0 {
		t.Error("no ensemble_weight audit event")
	}
}

// postJSON posts body and fails unless the answer is one of codes.
func postJSON(t *testing.T, url, body string, codes ...int) {
	t.Helper()
	res, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range codes {
		if res.StatusCode == c {
			return
		}
	}
	t.Fatalf("POST %s: HTTP %d, want %v", url, res.StatusCode, codes)
}

// readAudit returns the kinds of an audit log's events.
func readAudit(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev struct {
			Kind string `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		kinds = append(kinds, ev.Kind)
	}
	return kinds
}
