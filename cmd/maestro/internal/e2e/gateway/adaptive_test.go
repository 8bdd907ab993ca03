package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/maestro-ml/maestro/controlplane/metricsource"
	"github.com/maestro-ml/maestro/inference/inferencetest"
	"github.com/maestro-ml/maestro/inference/pb"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/internal/e2etest"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// adaptiveInterval is the ensemble's evaluation interval, the shortest
// the policy allows.
const adaptiveInterval = time.Second

// adaptivePolicy is an ensemble of fraud v1, v2 and v3 behind gateway
// edge, its weights adaptive within [0.05, 1], re-evaluated every second
// with no smoothing; members time out after 300ms, two answers suffice.
func adaptivePolicy(wasm, v1, v2, v3 string) string {
	return adaptivePolicySmoothed(wasm, 1, v1, v2, v3)
}

// adaptivePolicySmoothed is adaptivePolicy with the given smoothing.
func adaptivePolicySmoothed(wasm string, smoothing float64, v1, v2, v3 string) string {
	return e2etest.FraudPolicy(wasm, []e2etest.FraudVersion{{Name: "v1", Addr: v1}, {Name: "v2", Addr: v2}, {Name: "v3", Addr: v3}},
		e2etest.FraudRoute{Name: "fraud-ensemble", Spec: fmt.Sprintf(`ensemble:
  strategy: weighted_mean
  weights: adaptive
  adaptive: {minWeight: 0.05, maxWeight: 1, interval: 1s, smoothing: %v}
  members:
    - {version: v1, model: fraud, weight: 1}
    - {version: v2, model: fraud, weight: 1}
    - {version: v3, model: fraud, weight: 1}
  quorum: 2
  timeout: 300ms
timeout: 2s
`, smoothing)})
}

// stallable is a model that, while stalled, answers only after its
// caller gave up (or 5s): a member that times out.
type stallable struct {
	runtime.Model
	stalled *atomic.Bool
}

func (m stallable) Predict(ctx context.Context, in []runtime.Tensor) ([]runtime.Tensor, error) {
	if m.stalled.Load() {
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return m.Model.Predict(ctx, in)
}

// gatewayFanoutWeights reads the fanout filter config the gateway accepted
// over ECDS (its /config_dump) and returns the member weights of route by
// cluster.
func gatewayFanoutWeights(t *testing.T, gw *e2etest.Gateway, route string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + gw.Admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var dump struct {
		Configs []struct {
			TypeURL   string            `json:"type_url"`
			Resources []json.RawMessage `json:"resources"`
		} `json:"configs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&dump); err != nil {
		t.Fatal(err)
	}
	for _, c := range dump.Configs {
		if c.TypeURL != resource.ExtensionConfigType {
			continue
		}
		for _, raw := range c.Resources {
			var a anypb.Any
			if err := protojson.Unmarshal(raw, &a); err != nil {
				t.Fatalf("config_dump resource: %v", err)
			}
			var tec corev3.TypedExtensionConfig
			if err := a.UnmarshalTo(&tec); err != nil {
				t.Fatal(err)
			}
			var wasm wasmfilterv3.Wasm
			if err := tec.GetTypedConfig().UnmarshalTo(&wasm); err != nil {
				continue // not a wasm filter
			}
			var conf wrapperspb.StringValue
			if err := wasm.GetConfig().GetConfiguration().UnmarshalTo(&conf); err != nil {
				t.Fatal(err)
			}
			var f filterconfig.Fanout
			if err := json.Unmarshal([]byte(conf.GetValue()), &f); err != nil {
				continue // the slo filter's config
			}
			for _, r := range f.Routes {
				if r.Route == route || strings.HasPrefix(r.Route, route+"_") {
					out := map[string]float64{}
					for _, m := range r.Members {
						out[m.Cluster] = m.Weight
					}
					if len(out) > 0 {
						return out
					}
				}
			}
		}
	}
	return nil
}

// waitWeight polls the gateway's fanout config until member's weight
// satisfies ok, and returns when it did.
func waitWeight(t *testing.T, gw *e2etest.Gateway, member string, ok func(float64) bool) (map[string]float64, time.Time) {
	t.Helper()
	deadline := time.Now().Add(loopLimit)
	for {
		w := gatewayFanoutWeights(t, gw, "fraud-ensemble")
		if v, found := w[member]; found && ok(v) {
			return w, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's weight in the gateway's fanout filter never changed as wanted within %v: %v", member, loopLimit, w)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}

// TestAdaptiveWeightsFromGatewayFanoutCounters degrades one member of an
// ensemble behind the gateway so that it times out: the control plane,
// reading the fanout filter's member counters from the gateway's own
// /stats/prometheus, lowers its weight to the bound; the new weights reach
// the gateway's fanout filter over ECDS while a client keeps calling, with
// no request failing; the weight comes back when the member recovers.
func TestAdaptiveWeightsFromGatewayFanoutCounters(t *testing.T) {
	wasm := e2etest.WasmDir(t)
	repo := e2etest.ModelRepo(t)
	var stalled atomic.Bool
	reg := inferencetest.Registry()
	load := reg[inferencetest.RuntimeName]
	reg[inferencetest.RuntimeName] = func(ctx context.Context, spec runtime.Spec) (runtime.Model, error) {
		m, err := load(ctx, spec)
		return stallable{Model: m, stalled: &stalled}, err
	}
	v1 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v1", ModelDir: repo})
	v2 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v2", ModelDir: repo, Registry: reg})
	v3 := inferencetest.Start(t, inferencetest.Options{Name: "fraud-v3", ModelDir: repo})

	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")
	e2etest.ReplaceFile(t, path, adaptivePolicy(wasm, v1.GRPCAddr, v2.GRPCAddr, v3.GRPCAddr))
	scraper := gatewayScraper(t)
	cp := startLoopCP(t, path, dir, filepath.Join(dir, "audit.jsonl"), scraper)
	gw := e2etest.StartGateway(t, "gw-1", cp.xds, nil)
	scraper.SetTargets([]metricsource.Target{{Name: "gateway-edge", URL: "http://" + gw.Admin + "/stats/prometheus"}})
	conn, err := grpc.NewClient(gw.WaitLive(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tr := sendEnsemble(t, pb.NewGRPCInferenceServiceClient(conn))

	if w, _ := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v == 1 }); w["fraud.v1"] != 1 || w["fraud.v3"] != 1 {
		t.Fatalf("starting weights %v, want the policy's 1 each", w)
	}
	tr.WaitAnswers(t, 20)

	stalled.Store(true)
	since := time.Now()
	low, at := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v <= 0.05 })
	fell := at.Sub(since)
	timeouts := gw.Metric(t, `maestro_fanout_member_timeouts_total{route="fraud-ensemble",member="fraud_v2"}`)
	t.Logf("v2 stalled: its weight reached %v in the gateway's filter %v later (interval %v); weights %v; %v member timeouts counted",
		low["fraud.v2"], fell, adaptiveInterval, low, timeouts)
	if fell > 3*adaptiveInterval {
		t.Errorf("the stalled member's weight took %v to reach the bound, want within three intervals (%v)", fell, 3*adaptiveInterval)
	}
	if low["fraud.v2"] != 0.05 || low["fraud.v1"] != 1 || low["fraud.v3"] != 1 {
		t.Errorf("weights %v, want v2 at the 0.05 bound and the others at 1", low)
	}
	if timeouts == 0 {
		t.Error("the gateway counted no member timeout of fraud.v2: the weight fell for another reason")
	}
	// Requests keep being answered across the ECDS change.
	tr.WaitAnswers(t, 20)

	stalled.Store(false)
	since = time.Now()
	back, at := waitWeight(t, gw, "fraud.v2", func(v float64) bool { return v == 1 })
	t.Logf("v2 recovered: its weight came back to %v %v later; weights %v", back["fraud.v2"], at.Sub(since), back)
	tr.WaitAnswers(t, 20)
	tr.Stop()
	got, failed := tr.Counts()
	answered := got["fraud-ensemble"]
	t.Logf("through the gateway: %d ensemble answers, %d failures", answered, failed)
	if failed != 0 {
		t.Errorf("%d of %d ensemble requests failed while the weights changed, want none; first: %v",
			failed, answered+failed, tr.FirstError())
	}
}

// sendEnsemble calls the ensemble through the gateway until stopped,
// counting its answers (as those of "fraud-ensemble") and failures.
func sendEnsemble(t *testing.T, c pb.GRPCInferenceServiceClient) *e2etest.Traffic {
	t.Helper()
	return e2etest.SendTraffic(t, func(ctx context.Context) (string, error) {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-maestro-model", "fraud-ensemble")
		if _, err := c.ModelInfer(ctx, e2etest.InferRequest("fraud-ensemble")); err != nil {
			return "", err
		}
		return "fraud-ensemble", nil
	})
}
