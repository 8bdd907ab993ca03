package gateway_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
	"github.com/maestro-ml/maestro/wasmfilter/wasmtest"
)

// TestStrictDNSAndRemoteWasm resolves a STRICT_DNS cluster's name and
// loads a filter's remote code through a STATIC cluster, checking its
// digest: the cluster kinds and code source the k8s and remote-wasm
// examples emit.
func TestStrictDNSAndRemoteWasm(t *testing.T) {
	wasm := wasmtest.Build(t, "github.com/maestro-ml/maestro/wasmfilter/wasmhost/testdata/probe")
	sum := sha256.Sum256(wasm)
	store := startBackend(t, "store", func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/maestro/probe.wasm" {
			_, _ = w.Write(wasm)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	})
	app := startBackend(t, "app", func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-probe", r.Header.Get("x-probe"))
	})
	_, appPort, _ := net.SplitHostPort(app.addr)
	p, _ := strconv.Atoi(appPort)
	dns := &clusterv3.Cluster{Name: "app", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout: durationpb.New(time.Second), DnsLookupFamily: clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "app", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "localhost",
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}}}}}}}
	static := &clusterv3.Cluster{Name: "wasm-store", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(time.Second), LoadAssignment: endpoints(t, "wasm-store", store.addr)}
	l := edgeListener(t, &hcmv3.HttpFilter{Name: "edge.probe", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: ads(), TypeUrls: []string{xdsconfig.WasmTypeURL}}}})
	res := resources(l, routeTable(prefixRoute("app", "/", toCluster("app"))), []*clusterv3.Cluster{dns, static}, nil)
	res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType], &corev3.TypedExtensionConfig{Name: "edge.probe",
		TypedConfig: mustAny(t, &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{Name: "probe",
			Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{VmId: "probe", Runtime: "envoy.wasm.runtime.v8",
				Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
					HttpUri: &corev3.HttpUri{Uri: "http://wasm-store.internal/maestro/probe.wasm", Timeout: durationpb.New(10 * time.Second),
						HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "wasm-store"}},
					Sha256: hex.EncodeToString(sum[:])}}}}}}})})
	cp := startFakeCP(t)
	cp.set(t, "gw", res)
	gw := startGateway(t, "gw", cp.addr, nil)
	base := "http://" + gw.waitLive(t)

	deadline := time.Now().Add(waitLimit)
	for {
		res, _ := get(t, http.DefaultClient, base+"/hello")
		if res.StatusCode == http.StatusOK {
			if res.Header.Get("x-probe") != "seen" {
				t.Fatalf("the remote filter did not run: x-probe %q", res.Header.Get("x-probe"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the STRICT_DNS cluster never answered: %d", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // the first resolution is asynchronous; bounded poll
	}

	// A digest mismatch NACKs the filter config.
	bad := res[resource.ExtensionConfigType][0].(*corev3.TypedExtensionConfig)
	w := &wasmfilterv3.Wasm{}
	if err := bad.GetTypedConfig().UnmarshalTo(w); err != nil {
		t.Fatal(err)
	}
	// Flip the first byte: a fixed prefix would leave a digest that already
	// starts with it unchanged (1 build in 256).
	wrong := sum
	wrong[0] ^= 0xff
	w.Config.GetVmConfig().GetCode().GetRemote().Sha256 = hex.EncodeToString(wrong[:])
	w.Config.Name = "probe-2"
	res[resource.ExtensionConfigType] = append(res[resource.ExtensionConfigType][:0], &corev3.TypedExtensionConfig{Name: "edge.probe", TypedConfig: mustAny(t, w)})
	cp.set(t, "gw", res)
	select {
	case msg := <-cp.nacks:
		if want := `filter config "edge.probe": remote code http://wasm-store.internal/maestro/probe.wasm: sha256 ` + hex.EncodeToString(sum[:]); len(msg) < len(want) || msg[:len(want)] != want {
			t.Fatalf("NACK %q, want it to start with %q", msg, want)
		}
	case <-time.After(waitLimit):
		t.Fatal("no NACK for a digest mismatch")
	}
}
