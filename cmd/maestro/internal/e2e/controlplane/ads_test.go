package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/maestro-ml/maestro/controlplane/server"
)

// repoRoot is the module root, relative to this package's directory.
const repoRoot = "../../../../.."

// examplePolicy copies examples/mesh.yaml with mTLS STRICT (so sidecars
// get SDS secrets) into a temporary file and returns its path.
func examplePolicy(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(src), "mode: PERMISSIVE", "mode: STRICT", 1)
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	write(t, path, strict)
	return path
}

func adsConn(t testing.TB, addr string) discoveryv3.AggregatedDiscoveryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
}

func node(t testing.TB, id, role, service string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"maestro.role": role, "maestro.service": service})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Metadata: md}
}

func nodeStatus(t *testing.T, admin, id, typ string) server.TypeStatus {
	t.Helper()
	res, err := http.Get("http://" + admin + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Nodes []server.NodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		for _, ts := range n.Types {
			if n.ID == id && ts.Type == typ {
				return ts
			}
		}
	}
	t.Fatalf("no %s status for node %s in %s", typ, id, b)
	return server.TypeStatus{}
}

// TestDeltaECDSNackStaysReported drives a gateway's wasm filter configs
// (ECDS) over delta ADS: a NACKed config stays reported on the admin page
// across the next push, until the node ACKs.
func TestDeltaECDSNackStaysReported(t *testing.T) {
	path := examplePolicy(t)
	p := startPlane(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := adsConn(t, p.addrs.XDS.String()).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"edge.fanout", "edge.slo"}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(t, "gw-1", "gateway", ""),
		TypeUrl: resource.ExtensionConfigType, ResourceNamesSubscribe: names}); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range first.GetResources() {
		got = append(got, r.GetName())
		if r.GetVersion() == "" {
			t.Errorf("%s has no per-resource version", r.GetName())
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("got filter configs %v, want %v", got, names)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ExtensionConfigType, ResponseNonce: first.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "wasm: failed to load module"}}); err != nil {
		t.Fatal(err)
	}

	// Changing one route's SLO re-sends only the slo filter's config.
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.edit(t, path, strings.Replace(string(src), "availability: 99.9", "availability: 99.95", 1)); err != nil {
		t.Fatalf("edit rejected: %v", err)
	}
	second, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(second.GetResources()) != 1 || second.GetResources()[0].GetName() != "edge.slo" {
		t.Fatalf("second push carries %v, want only edge.slo", second.GetResources())
	}
	st := nodeStatus(t, p.addrs.Admin.String(), "gw-1", "extension_config")
	if st.Nacked != first.GetSystemVersionInfo() || st.NackError != "wasm: failed to load module" || !slices.Equal(st.NackedResources, names) {
		t.Fatalf("NACK not reported: %+v", st)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ExtensionConfigType, ResponseNonce: second.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// The ACK is processed before the stream's next response; make one.
	if err := p.edit(t, path, strings.Replace(string(src), "availability: 99.9", "availability: 99.99", 1)); err != nil {
		t.Fatalf("edit rejected: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if st := nodeStatus(t, p.addrs.Admin.String(), "gw-1", "extension_config"); st.Nacked != "" || st.Acked != second.GetSystemVersionInfo() {
		t.Fatalf("after ACK: %+v", st)
	}
}

// TestSotWSecretsForStrictSidecar fetches a STRICT sidecar's certificate
// and trust bundle over SotW ADS (SDS).
func TestSotWSecretsForStrictSidecar(t *testing.T) {
	p := startPlane(t, examplePolicy(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stream, err := adsConn(t, p.addrs.XDS.String()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"spiffe://maestro.local/ns/ml/sa/churn", "trust-bundle"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node(t, "churn-1", "sidecar", "churn"),
		TypeUrl: resource.SecretType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, a := range resp.GetResources() {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		found[s.GetName()] = true
		switch {
		case s.GetTlsCertificate() != nil:
			if !strings.Contains(string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()), "BEGIN CERTIFICATE") {
				t.Errorf("%s: no PEM chain", s.GetName())
			}
		case s.GetValidationContext() != nil:
			if !strings.Contains(string(s.GetValidationContext().GetTrustedCa().GetInlineBytes()), "BEGIN CERTIFICATE") {
				t.Errorf("%s: no PEM bundle", s.GetName())
			}
		default:
			t.Errorf("%s: neither certificate nor bundle", s.GetName())
		}
	}
	for _, n := range names {
		if !found[n] {
			t.Errorf("secret %s not served (got %v)", n, found)
		}
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.SecretType, ResourceNames: names,
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
}

// TestEndpointsFileNamedLaterIsWatched starts with inline endpoints only;
// once an edit names an endpoints file, changes to that file reload too.
func TestEndpointsFileNamedLaterIsWatched(t *testing.T) {
	dir := t.TempDir()
	meshPath, epPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "v2-endpoints.yaml")
	inline := strings.Replace(meshPolicy(9001, 50, 50), "endpointsFile: v2-endpoints.yaml", "endpoints: [{address: 127.0.0.1, port: 9002}]", 1)
	write(t, meshPath, inline)
	p := startPlane(t, meshPath)
	write(t, epPath, endpointsFile(9003))
	if err := p.edit(t, meshPath, meshPolicy(9001, 50, 50)); err != nil {
		t.Fatalf("edit naming the endpoints file rejected: %v", err)
	}
	if err := p.edit(t, epPath, endpointsFile(9004)); err != nil {
		t.Fatalf("endpoints edit rejected: %v", err)
	}
	if err := p.edit(t, epPath, "endpoints: ["); err == nil {
		t.Fatal("broken endpoints file accepted")
	}
}
