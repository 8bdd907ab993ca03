package xds

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// adsSource points a resource at the ADS stream it came from.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// anyOf packs m deterministically (maps in key order), so the enclosing
// resource's encoding, and version, is stable; it fails only on messages
// protobuf cannot encode (e.g. strings with invalid UTF-8).
func anyOf(m proto.Message) (*anypb.Any, error) {
	out := &anypb.Any{}
	if err := anypb.MarshalFrom(out, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return out, nil
}

// duration converts d, or returns nil for 0 (unset).
func duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// uint32Value wraps v, or returns nil for 0 (unset).
func uint32Value(v uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		return nil
	}
	return wrapperspb.UInt32(v)
}

// perMillion converts a percentage in [0, 100] to a fraction per million,
// Envoy's finest denominator.
func perMillion(percent float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{
		Numerator:   uint32(percent*10_000 + 0.5),
		Denominator: typev3.FractionalPercent_MILLION,
	}
}

// exact matches s exactly.
func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// prefix matches strings starting with s.
func prefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

// regex matches strings matching the RE2 expression s.
func regex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}

// nonZero returns v, or 1 for 0: gRPC rejects zero load-balancing weights.
func nonZero(v uint32) uint32 {
	if v == 0 {
		return 1
	}
	return v
}

// uint32ValueOr wraps v, or def when v is 0.
func uint32ValueOr(v, def uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		v = def
	}
	return wrapperspb.UInt32(v)
}
