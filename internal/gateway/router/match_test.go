package router

import (
	"regexp"
	"testing"

	"github.com/maestro-ml/maestro/internal/gateway/xdsconfig"
)

func ptr[T any](v T) *T { return &v }

func TestSelect(t *testing.T) {
	infer := "/inference.GRPCInferenceService/ModelInfer"
	model := func(m string) xdsconfig.HeaderMatch {
		return xdsconfig.HeaderMatch{Name: "x-maestro-model", String: &xdsconfig.StringMatch{Exact: ptr(m)}}
	}
	rc := &xdsconfig.RouteConfig{VirtualHosts: []xdsconfig.VirtualHost{
		{Name: "api", Domains: []string{"api.example.com"}, Routes: []xdsconfig.Route{{Name: "api-only", Match: xdsconfig.Match{Prefix: "/"}}}},
		{Name: "any", Domains: []string{"*"}, Routes: []xdsconfig.Route{
			{Name: "churn.beta", Match: xdsconfig.Match{Path: infer, GRPC: true, Headers: []xdsconfig.HeaderMatch{
				model("churn"),
				{Name: "cookie", String: &xdsconfig.StringMatch{Regex: regexp.MustCompile(`^(?:.*canary=1.*)$`)}},
				{Name: "x-no-canary", Present: ptr(true), Invert: true},
			}}},
			{Name: "churn", Match: xdsconfig.Match{Path: infer, GRPC: true, Headers: []xdsconfig.HeaderMatch{model("churn")}}},
			{Name: "rest", Match: xdsconfig.Match{Regex: regexp.MustCompile(`^(?:/v2/models/churn(/.*)?)$`)}},
			{Name: "fraud-rest", Match: xdsconfig.Match{SeparatedPrefix: "/v2/models/fraud"}},
		}},
	}}
	grpcReq := func(h ...[2]string) *Message {
		return &Message{Headers: append([][2]string{{":path", infer}, {":authority", "gw:8080"}, {"content-type", "application/grpc"}}, h...)}
	}
	tests := map[string]struct {
		req  *Message
		want string
	}{
		"exact host wins":                         {&Message{Headers: [][2]string{{":path", "/x"}, {":authority", "api.example.com:443"}}}, "api-only"},
		"grpc by model":                           {grpcReq([2]string{"x-maestro-model", "churn"}), "churn"},
		"regex cookie":                            {grpcReq([2]string{"x-maestro-model", "churn"}, [2]string{"cookie", "a=b; canary=1"}), "churn.beta"},
		"inverted presence":                       {grpcReq([2]string{"x-maestro-model", "churn"}, [2]string{"cookie", "canary=1"}, [2]string{"x-no-canary", "1"}), "churn"},
		"not grpc content type":                   {&Message{Headers: [][2]string{{":path", infer}, {":authority", "gw"}, {"x-maestro-model", "churn"}}}, ""},
		"rest path regex":                         {&Message{Headers: [][2]string{{":path", "/v2/models/churn/infer?x=1"}, {":authority", "gw"}}}, "rest"},
		"no route":                                {grpcReq([2]string{"x-maestro-model", "fraud"}), ""},
		"regex is anchored whole":                 {&Message{Headers: [][2]string{{":path", "/v2/models/churner"}, {":authority", "gw"}}}, ""},
		"separated prefix itself":                 {&Message{Headers: [][2]string{{":path", "/v2/models/fraud?q=1"}, {":authority", "gw"}}}, "fraud-rest"},
		"separated prefix then slash":             {&Message{Headers: [][2]string{{":path", "/v2/models/fraud/infer"}, {":authority", "gw"}}}, "fraud-rest"},
		"separated prefix is not a string prefix": {&Message{Headers: [][2]string{{":path", "/v2/models/fraud-ensemble/infer"}, {":authority", "gw"}}}, ""},
	}
	for name, tc := range tests {
		got := ""
		if r := Select(rc, tc.req); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%s: selected %q, want %q", name, got, tc.want)
		}
	}
}
