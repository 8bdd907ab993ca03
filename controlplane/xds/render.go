package xds

import (
	"encoding/json"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
)

// RenderJSON returns items as an indented JSON array in the proto3 JSON
// mapping, byte-for-byte stable across runs (protojson alone is not).
func RenderJSON(items []types.Resource) ([]byte, error) {
	raw := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := protojson.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("render %T: %w", it, err)
		}
		raw = append(raw, b)
	}
	return json.MarshalIndent(raw, "", "  ")
}

// JSON returns every resource of r as one indented JSON object keyed by
// type name ("listener", "route", ...), each an array sorted by name: what
// `maestro validate --output json` prints.
func (r *Resources) JSON() ([]byte, error) {
	out := map[string]json.RawMessage{}
	for _, t := range Types() {
		if len(r.Items[t]) == 0 {
			continue
		}
		b, err := RenderJSON(r.Items[t])
		if err != nil {
			return nil, err
		}
		out[typeName(t)] = b
	}
	return json.MarshalIndent(out, "", "  ")
}
