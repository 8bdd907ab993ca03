package localmesh

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/inference/oipclient"
	"github.com/maestro-ml/maestro/inference/repository"
	"github.com/maestro-ml/maestro/inference/runtime"
	"github.com/maestro-ml/maestro/inference/tensor"
	"github.com/maestro-ml/maestro/internal/telemetry"
)

// demoTraffic sends cfg.Rate requests a second to every route a proxyless
// client can use on its own: routes matching a model, to gRPC services, and
// without an ensemble (combining members is the fanout filter's job, in
// Envoy). The connections resolve xds:///<target>, so the control plane's
// weights decide which version answers.
func demoTraffic(ctx context.Context, cfg Config, mesh *policy.Mesh, bootstrap []byte) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range mesh.Routes {
		sp := &r.Spec
		if sp.Ensemble != nil || sp.Match.Model == "" {
			continue
		}
		if s := mesh.Service(sp.Service); s == nil || s.Spec.Protocol != policy.ProtocolGRPC {
			continue
		}
		req, err := demoRequest(cfg.Models, sp.Match.Model)
		if err != nil {
			return fmt.Errorf("demo traffic for route %s: %w", r.Metadata.Name, err)
		}
		conn, err := dialXDS(sp.Target, bootstrap, cfg.Tracing)
		if err != nil {
			return fmt.Errorf("demo traffic for route %s: dial xds:///%s: %w", r.Metadata.Name, sp.Target, err)
		}
		client := oipclient.NewGRPC(conn)
		name := r.Metadata.Name
		g.Go(func() error {
			defer conn.Close()
			return send(ctx, cfg, name, client, req, nil)
		})
	}
	return g.Wait()
}

// send calls client at cfg.Rate until ctx is done. Failures are logged, not
// fatal: a policy edit may point a route at a version that is still
// starting, and the demo should ride through it.
// Answers are recorded in rec when it is not nil.
func send(ctx context.Context, cfg Config, route string, client oipclient.Client, req demo, rec *routeAnswers) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	var failures int
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := client.Infer(callCtx, req.model, "", req.body)
		cancel()
		rec.record(resp, err)
		if err != nil && ctx.Err() == nil {
			failures++
			if failures == 1 || failures%1000 == 0 {
				cfg.Logger.Warn("demo request failed", "route", route, "failures", failures, "error", err)
			}
		}
	}
}

// demo is one route's demo request.
type demo struct {
	model string
	body  tensor.JSONRequest
}

// demoRequest builds a one-row request for model from its config.yaml,
// with inputs of the declared types and shapes.
func demoRequest(models, model string) (demo, error) {
	path := filepath.Join(models, model, repository.ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return demo{}, err
	}
	c, err := repository.ParseConfig(path, model, data)
	if err != nil {
		return demo{}, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	req := demo{model: model}
	id := int64(1)
	if c.Runtime == "embedding" {
		// An embedding model answers only the users it knows.
		if id, err = knownUser(filepath.Join(models, model)); err != nil {
			return demo{}, err
		}
	}
	for _, in := range c.Inputs {
		shape := in.Shape
		if c.MaxBatchSize > 0 {
			shape = append([]int64{1}, shape...)
		}
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		t := runtime.Tensor{Name: in.Name, Datatype: in.Datatype, Shape: shape}
		switch in.Datatype {
		case runtime.FP32:
			t.Data = fill(n, rng.Float32)
		case runtime.FP64:
			t.Data = fill(n, rng.Float64)
		case runtime.Int64:
			t.Data = fill(n, func() int64 { return id })
		case runtime.Int32:
			t.Data = fill(n, func() int32 { return 1 })
		default:
			return demo{}, fmt.Errorf("input %s: demo traffic does not generate %s tensors", in.Name, in.Datatype)
		}
		ji, err := tensor.EncodeJSONInput(t)
		if err != nil {
			return demo{}, fmt.Errorf("input %s: %w", in.Name, err)
		}
		req.body.Inputs = append(req.body.Inputs, ji)
	}
	return req, nil
}

// knownUser is the first user id of the first version of the embedding
// model in dir.
func knownUser(dir string) (int64, error) {
	versions, err := filepath.Glob(filepath.Join(dir, "[0-9]*", "embeddings.json"))
	if err != nil || len(versions) == 0 {
		return 0, fmt.Errorf("no embeddings.json under %s", dir)
	}
	data, err := os.ReadFile(versions[0])
	if err != nil {
		return 0, err
	}
	var e struct {
		UserIDs []int64 `json:"user_ids"`
	}
	if err := json.Unmarshal(data, &e); err != nil || len(e.UserIDs) == 0 {
		return 0, fmt.Errorf("%s: no user_ids: %v", versions[0], err)
	}
	return e.UserIDs[0], nil
}

// fill returns n values of next.
func fill[T any](n int, next func() T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = next()
	}
	return out
}

// dialXDS connects to xds:///target with an xDS client of its own, built
// from bootstrap. gRPC's process-wide xDS client reads its bootstrap from
// the environment when the process starts, too early for a bootstrap that
// names a port chosen at run time; a per-connection resolver is the only
// way grpc-go offers, under a name that marks it as meant for tests.
// With tracing, each demo call is the root of a trace that reaches the
// server the xDS routing picked.
func dialXDS(target string, bootstrap []byte, tracing *telemetry.Tracing) (*grpc.ClientConn, error) {
	r, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials())}
	if tracing != nil {
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tracing.Provider), otelgrpc.WithPropagators(tracing.Propagator))))
	}
	return grpc.NewClient("xds:///"+target, opts...)
}

// gatewayTraffic sends cfg.Rate requests a second to every model route of
// every gateway, as a standard OIP client would: model_name in the body
// (or the REST path) and no Maestro header, over gRPC and REST as the
// route's match protocol allows. Answers are counted by the server that
// gave them (its maestro_server response parameter) for the live view.
func gatewayTraffic(ctx context.Context, cfg Config, mesh *policy.Mesh, gateways []*startedGateway, seen *answers) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, gw := range gateways {
		pg := mesh.Gateway(gw.name)
		if pg == nil {
			continue
		}
		conn, err := grpc.NewClient(gw.listener, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("demo traffic through gateway %s: %w", gw.name, err)
		}
		g.Go(func() error {
			<-ctx.Done()
			return conn.Close()
		})
		grpcClient := oipclient.NewGRPC(conn)
		restClient := oipclient.NewHTTP("http://"+gw.listener, &http.Client{Timeout: 5 * time.Second})
		for _, name := range pg.Spec.Routes {
			r := mesh.Route(name)
			if r == nil || r.Spec.Match.Model == "" {
				continue
			}
			req, err := demoRequest(cfg.Models, requestModel(r))
			if err != nil {
				return fmt.Errorf("demo traffic for route %s: %w", name, err)
			}
			req.model = r.Spec.Match.Model
			p := r.Spec.Match.Protocol
			if p == policy.MatchAny || p == policy.MatchGRPC || p == "" {
				g.Go(func() error { return send(ctx, cfg, name+" (gRPC)", grpcClient, req, seen.of(name)) })
			}
			if p == policy.MatchAny || p == policy.MatchHTTP {
				g.Go(func() error { return send(ctx, cfg, name+" (REST)", restClient, req, seen.of(name)) })
			}
		}
	}
	return g.Wait()
}

// requestModel is the model whose inputs a route's demo request carries:
// an ensemble's first member's model when it names one, else the route's.
func requestModel(r *policy.Route) string {
	if e := r.Spec.Ensemble; e != nil && len(e.Members) > 0 && e.Members[0].Model != "" {
		return e.Members[0].Model
	}
	return r.Spec.Match.Model
}
