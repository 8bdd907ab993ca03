package server

import (
	"slices"
	"testing"
)

// TestSplitNacked reads the error details real clients send. The gRPC
// one is the format of grpc-go's xDS client (one `resource "NAME": ...`
// per rejected resource, joined by ";\n"); the Envoy ones are LDS's and
// CDS's.
func TestSplitNacked(t *testing.T) {
	names := []string{"fraud", "fraud-scoring", "fraud.v1", "fraud.v2", "spiffe://mesh.local/ns/ml/sa/fraud"}
	tests := map[string]struct {
		msg      string
		rejected []string
	}{
		"grpc one resource": {
			msg:      `error parsing "ListenerResource" response: resource "fraud-scoring": no RouteSpecifier: route config missing`,
			rejected: []string{"fraud-scoring"},
		},
		"grpc two resources": {
			msg:      "error parsing \"ClusterResource\" response: resource \"fraud.v2\": unsupported lb policy;\nresource \"fraud.v1\": bad outlier detection",
			rejected: []string{"fraud.v1", "fraud.v2"},
		},
		"envoy listeners": {
			msg:      "Error adding/updating listener(s) fraud-scoring: unknown filter\nfraud: duplicate address\n",
			rejected: []string{"fraud", "fraud-scoring"},
		},
		"envoy clusters": {
			msg:      "Error adding/updating cluster(s) fraud.v1: bad config, fraud.v2: bad lb",
			rejected: []string{"fraud.v1", "fraud.v2"},
		},
		"secret name with colons": {
			msg:      `resource "spiffe://mesh.local/ns/ml/sa/fraud": no private key`,
			rejected: []string{"spiffe://mesh.local/ns/ml/sa/fraud"},
		},
		"prefix of another name is not named": {
			msg:      "resource \"fraud.v1\": bad",
			rejected: []string{"fraud.v1"},
		},
		"grpc top-level error names nothing": {
			msg: `error parsing "ListenerResource" response: top level errors: proto: cannot parse invalid wire-format data`,
		},
		"a name inside a word is not named": {
			msg: "wasm: fraudulent module",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rejected, applied := splitNacked(tc.msg, names)
			if !slices.Equal(rejected, tc.rejected) {
				t.Errorf("rejected %v, want %v", rejected, tc.rejected)
			}
			if len(rejected)+len(applied) != len(names) {
				t.Errorf("rejected %v and applied %v do not cover %v", rejected, applied, names)
			}
			for _, a := range applied {
				if slices.Contains(rejected, a) {
					t.Errorf("%s both rejected and applied", a)
				}
			}
		})
	}
}
