package xdsconfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// goldenKinds maps a golden file's kind to a new resource message.
var goldenKinds = map[string]func() proto.Message{
	"listener":         func() proto.Message { return &listenerv3.Listener{} },
	"route":            func() proto.Message { return &routev3.RouteConfiguration{} },
	"cluster":          func() proto.Message { return &clusterv3.Cluster{} },
	"endpoint":         func() proto.Message { return &endpointv3.ClusterLoadAssignment{} },
	"extension_config": func() proto.Message { return &corev3.TypedExtensionConfig{} },
	"secret":           func() proto.Message { return &tlsv3.Secret{} },
}

// TestGoldenGatewayOutputsAccepted feeds every resource the translator's
// golden files give a gateway node to the gateway's config validation.
func TestGoldenGatewayOutputsAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "controlplane", "xds", "testdata", "out", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	checked := 0
	for _, f := range files {
		parts := strings.Split(filepath.Base(f), ".")
		newMsg, ok := goldenKinds[parts[len(parts)-2]]
		if !ok {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var nodes map[string][]json.RawMessage
		if err := json.Unmarshal(b, &nodes); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for node, resources := range nodes {
			if !strings.HasPrefix(node, "gateway") {
				continue
			}
			for i, raw := range resources {
				msg := newMsg()
				if err := protojson.Unmarshal(raw, msg); err != nil {
					t.Fatalf("%s %s[%d]: %v", filepath.Base(f), node, i, err)
				}
				if _, err := DecodeMessage(msg); err != nil {
					t.Errorf("%s %s: %v", filepath.Base(f), node, err)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no gateway resources in the golden files")
	}
	t.Logf("%d gateway resources accepted", checked)
}
