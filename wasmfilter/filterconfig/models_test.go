package filterconfig

import (
	"strings"
	"testing"
)

// modelRouting is the routing of a gateway with a rule route before its
// model's own route, as the translator lists them (match order).
const modelRouting = `{"routes":[],"modelRouting":{"header":"x-maestro-model","routes":[
 {"route":"fraud-ensemble","model":"fraud-ensemble"},
 {"route":"fraud.beta","model":"fraud","headers":[{"name":"x-beta","present":true}]},
 {"route":"fraud.tenant","model":"fraud","headers":[{"name":"x-tenant","regex":"acme|initech"},{"name":"x-debug","exact":"1","invert":true}]},
 {"route":"fraud.eu","model":"fraud","headers":[{"name":"x-region","prefix":"eu-"}]},
 {"route":"fraud","model":"fraud"}]}}`

func TestModelRoutingRouteFor(t *testing.T) {
	f, err := ParseFanout([]byte(modelRouting))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		model   string
		headers map[string]string
		want    string
	}{
		"plain":              {"fraud", nil, "fraud"},
		"ensemble":           {"fraud-ensemble", nil, "fraud-ensemble"},
		"present rule":       {"fraud", map[string]string{"x-beta": ""}, "fraud.beta"},
		"regex whole value":  {"fraud", map[string]string{"x-tenant": "acme"}, "fraud.tenant"},
		"regex partial":      {"fraud", map[string]string{"x-tenant": "acme-corp"}, "fraud"},
		"inverted present":   {"fraud", map[string]string{"x-tenant": "initech", "x-debug": "1"}, "fraud"},
		"inverted other":     {"fraud", map[string]string{"x-tenant": "initech", "x-debug": "0"}, "fraud.tenant"},
		"prefix":             {"fraud", map[string]string{"x-region": "eu-west"}, "fraud.eu"},
		"prefix mismatch":    {"fraud", map[string]string{"x-region": "us-east"}, "fraud"},
		"unknown model":      {"churn", nil, ""},
		"model name case":    {"Fraud", nil, ""},
		"first rule applies": {"fraud", map[string]string{"x-beta": "1", "x-region": "eu-west"}, "fraud.beta"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := f.ModelRouting.RouteFor(tc.model, func(n string) (string, bool) { v, ok := tc.headers[n]; return v, ok })
			if got != tc.want {
				t.Errorf("RouteFor(%q) = %q, want %q", tc.model, got, tc.want)
			}
		})
	}
}

func TestModelRoutingErrors(t *testing.T) {
	tests := map[string]struct {
		json string
		want []string
	}{
		"header":    {`{"routes":[],"modelRouting":{"header":"X-Model","routes":[]}}`, []string{`modelRouting.header: a lower-case header name is required, got "X-Model"`}},
		"no header": {`{"routes":[],"modelRouting":{"routes":[]}}`, []string{`modelRouting.header: a lower-case header name is required, got ""`}},
		"route":     {`{"routes":[],"modelRouting":{"header":"m","routes":[{"model":""}]}}`, []string{"modelRouting.routes[0].route: a route name is required", "modelRouting.routes[0].model: a model name is required"}},
		"two kinds": {`{"routes":[],"modelRouting":{"header":"m","routes":[{"route":"r","model":"x","headers":[{"name":"h","exact":"1","present":true}]}]}}`,
			[]string{"modelRouting.routes[0].headers[0]: a name and exactly one of exact, prefix, regex and present are required"}},
		"regex": {`{"routes":[],"modelRouting":{"header":"m","routes":[{"route":"r","model":"x","headers":[{"name":"h","regex":"("}]}]}}`,
			[]string{"modelRouting.routes[0].headers[0].regex: error parsing regexp"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseFanout([]byte(tc.json))
			if err == nil {
				t.Fatal("ParseFanout accepted the configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}
