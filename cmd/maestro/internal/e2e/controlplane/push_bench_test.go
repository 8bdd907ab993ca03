package controlplane

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
	"github.com/maestro-ml/maestro/controlplane/server"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// pushNodes is the number of concurrent ADS streams of the push benchmark.
const pushNodes = 1000

// ack is one node's ACK of a route configuration version.
type ack struct {
	version string
	at      time.Time
}

// gatewayMesh is the sample mesh with the gateway's fraud split set to
// w/(100-w): a weight change, which re-sends the route configuration only.
func gatewayMesh(w uint32) *model.Mesh {
	m := modeltest.Sample(9000)
	g := m.Group(modeltest.GatewayGroup)
	routes := g.Listeners[0].Routes.VirtualHosts[0].Routes
	for i := range routes {
		if routes[i].Name == "fraud" {
			routes[i].Action.Clusters = []model.WeightedCluster{{Name: "fraud.v1", Weight: w}, {Name: "fraud.v2", Weight: 100 - w}}
		}
	}
	return m
}

// adsNode behaves like an Envoy gateway on one gRPC connection: it
// subscribes to clusters and listeners, then to their endpoints and route
// configuration, ACKs every response, and reports each route version it
// ACKs on acks.
func adsNode(ctx context.Context, b *testing.B, addr, id string, eds, rds []string, acks chan<- ack) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		b.Error(err)
		return
	}
	send := func(req *discoveryv3.DiscoveryRequest) bool {
		if err := stream.Send(req); err != nil {
			if ctx.Err() == nil {
				b.Error(err)
			}
			return false
		}
		return true
	}
	md := node(b, id, "gateway", "")
	if !send(&discoveryv3.DiscoveryRequest{Node: md, TypeUrl: resource.ClusterType}) ||
		!send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType}) {
		return
	}
	subscribed := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return // the benchmark ended
		}
		typ := resp.GetTypeUrl()
		names := map[string][]string{resource.EndpointType: eds, resource.RouteType: rds}[typ]
		if !send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names}) {
			return
		}
		if typ == resource.RouteType {
			acks <- ack{version: resp.GetVersionInfo(), at: time.Now()}
		}
		// Like Envoy, ask for endpoints once clusters arrive and for
		// route configurations once listeners do.
		next := map[string]string{resource.ClusterType: resource.EndpointType, resource.ListenerType: resource.RouteType}[typ]
		if next != "" && !subscribed[next] {
			subscribed[next] = true
			n := map[string][]string{resource.EndpointType: eds, resource.RouteType: rds}[next]
			if !send(&discoveryv3.DiscoveryRequest{TypeUrl: next, ResourceNames: n}) {
				return
			}
		}
	}
}

// waitAcks waits until every node ACKed version, returning each node's
// delay since start.
func waitAcks(b *testing.B, acks <-chan ack, version string, start time.Time) []time.Duration {
	var out []time.Duration
	timeout := time.After(2 * time.Minute)
	for len(out) < pushNodes {
		select {
		case a := <-acks:
			if a.version == version {
				out = append(out, a.at.Sub(start))
			}
		case <-timeout:
			b.Fatalf("%d of %d nodes ACKed version %s", len(out), pushNodes, version)
		}
	}
	return out
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkPushTo1000Streams pushes one policy change (a split weight) to
// 1,000 gateways on their own gRPC connections in this process, and
// reports how long until each ACKed it (p50, p99, and the slowest: all
// ACKed), the CPU time per push, and the heap per connected node. Clients
// and server share the process, so CPU and memory figures are upper
// bounds of the server's.
func BenchmarkPushTo1000Streams(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	defer func() {
		cancel()
		<-served //nolint:errcheck // after cancel, Serve returns the cancellation
	}()

	tr := snapshot.NewTranslator()
	apply := func(w uint32) string {
		m := gatewayMesh(w)
		set, err := tr.Translate(m)
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.Update(ctx, server.Set{Version: set.Version, Snapshots: set.Snapshots, Resolve: m.GroupFor}); err != nil {
			b.Fatal(err)
		}
		return set.Snapshots[modeltest.GatewayGroup].GetVersion(resource.RouteType)
	}
	version := apply(90)
	gw := srv.Current().Snapshots[modeltest.GatewayGroup]
	eds := slices.Sorted(maps.Keys(gw.GetResources(resource.EndpointType)))
	rds := slices.Sorted(maps.Keys(gw.GetResources(resource.RouteType)))

	before := heapInUse()
	acks := make(chan ack, 4*pushNodes)
	clientCtx, stopClients := context.WithCancel(ctx)
	done := make(chan struct{}, pushNodes)
	for i := range pushNodes {
		go func() {
			defer func() { done <- struct{}{} }()
			adsNode(clientCtx, b, lis.Addr().String(), "gw-"+strconv.Itoa(i), eds, rds, acks)
		}()
	}
	defer func() {
		stopClients()
		for range pushNodes {
			<-done
		}
	}()
	waitAcks(b, acks, version, time.Now())
	perNode := float64(heapInUse()-before) / pushNodes

	var all []time.Duration
	var slowest time.Duration
	cpuStart := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		w := uint32(80)
		if i%2 == 1 {
			w = 90
		}
		start := time.Now()
		v := apply(w)
		lat := waitAcks(b, acks, v, start)
		all = append(all, lat...)
		slowest = max(slowest, slices.Max(lat))
	}
	b.StopTimer()
	b.ReportMetric(ms(cpuTime(b)-cpuStart)/float64(b.N), "cpu-ms/push")
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(ms(all[len(all)/2]), "p50-ack-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ack-ms")
	b.ReportMetric(ms(slowest), "all-acked-ms")
	b.ReportMetric(perNode/1024, "heap-KiB/node")
	b.ReportMetric(float64(heapInUse())/(1<<20), "heap-MiB-total")
	b.ReportMetric(rssMiB(b), "rss-MiB-total")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime is the CPU time (user and system) this process has used: with
// clients and server in one process, an upper bound of the server's cost
// that, unlike wall time, does not grow when other processes load the
// machine.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMiB is this process's resident set (clients and server together).
func rssMiB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}
