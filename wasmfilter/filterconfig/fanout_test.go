package filterconfig

import (
	"encoding/json"
	"strings"
	"testing"
)

func validRoute() FanoutRoute {
	return FanoutRoute{
		Route: "fraud",
		Members: []FanoutMember{
			{Cluster: "fraud.v1", Model: "fraud", Version: "1", Weight: 2},
			{Cluster: "fraud.v2", Model: "fraud", Version: "2", Weight: 1},
			{Cluster: "fraud-logistic.v1", Model: "fraud-logistic", Weight: 1},
		},
		Strategy:  StrategyWeightedMean,
		Quorum:    2,
		TimeoutMs: 250,
		Primary:   "fraud.v2",
		Shadows:   []Shadow{{Cluster: "fraud.v3", Percent: 10}},
	}
}

// observed is validRoute posting observations.
func observed() FanoutRoute {
	r := validRoute()
	r.Route = "observed"
	r.Observe = &Observe{Cluster: "maestro|observer", Route: "fraud", Percent: 25,
		Members: []string{"fraud.v1/fraud", "fraud.v2/fraud", "fraud-logistic.v1/fraud-logistic"}}
	return r
}

func TestParseFanoutRoundTrip(t *testing.T) {
	in := Fanout{Routes: []FanoutRoute{validRoute(), observed(), {
		Route:    "stack",
		Members:  []FanoutMember{{Cluster: "a", Model: "m"}, {Cluster: "b", Model: "m"}},
		Strategy: StrategyStacking,
		Stacking: &Stacking{Weights: []float64{1.5, -0.5}, Bias: 0.1},
	}, {
		Route:    "seq",
		Members:  []FanoutMember{{Cluster: "a", Model: "m"}, {Cluster: "b", Model: "n", Inputs: map[string]string{"probability": "score"}}},
		Sequence: true,
	}}}
	data, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseFanout(data)
	if err != nil {
		t.Fatalf("ParseFanout: %v", err)
	}
	again, _ := json.Marshal(out)
	if string(again) != string(data) {
		t.Fatalf("round trip changed the config:\n%s\n%s", data, again)
	}
	if got := out.Route("fraud").PrimaryIndex(); got != 1 {
		t.Errorf("PrimaryIndex = %d, want 1", got)
	}
	if got := out.Route("seq").PrimaryIndex(); got != 1 {
		t.Errorf("sequence PrimaryIndex = %d, want the last member", got)
	}
	if got := out.Route("seq").EffectiveQuorum(); got != 2 {
		t.Errorf("sequence quorum = %d, want every member", got)
	}
	if out.Route("other") != nil {
		t.Errorf("unnamed route matched without a default entry")
	}
}

func TestRouteDefaults(t *testing.T) {
	f := Fanout{Routes: []FanoutRoute{{Route: "", Members: []FanoutMember{{Cluster: "a", Model: "m"}}}, {Route: "x", Members: []FanoutMember{{Cluster: "b", Model: "m"}}}}}
	if r := f.Route("x"); r == nil || r.Members[0].Cluster != "b" {
		t.Fatalf("named route not preferred: %+v", r)
	}
	r := f.Route("anything")
	if r == nil || r.Members[0].Cluster != "a" {
		t.Fatalf("default route not used: %+v", r)
	}
	if r.EffectiveStrategy() != StrategyMean || r.EffectiveTimeoutMs() != DefaultFanoutTimeoutMs ||
		r.EffectiveThreshold() != DefaultThreshold || r.EffectiveQuorum() != 1 {
		t.Errorf("defaults: %v %v %v %v", r.EffectiveStrategy(), r.EffectiveTimeoutMs(), r.EffectiveThreshold(), r.EffectiveQuorum())
	}
}

func TestParseFanoutErrors(t *testing.T) {
	tests := map[string]struct {
		json string
		edit func(r *FanoutRoute)
		want []string
	}{
		"unknown field":     {json: `{"routes":[],"extra":1}`, want: []string{`unknown field "extra"`}},
		"syntax":            {json: "{\n\"routes\": [,]}", want: []string{"line 2 col"}},
		"type":              {json: `{"routes":[{"route":"a","quorum":"two"}]}`, want: []string{"line 1 col", "quorum"}},
		"trailing":          {json: `{"routes":[]} {}`, want: []string{"trailing data"}},
		"nothing to do":     {edit: func(r *FanoutRoute) { r.Members, r.Shadows = nil, nil }, want: []string{"routes[0].members: a route needs members or shadows"}},
		"empty cluster":     {edit: func(r *FanoutRoute) { r.Members[1].Cluster = "" }, want: []string{"routes[0].members[1].cluster: must not be empty"}},
		"empty model":       {edit: func(r *FanoutRoute) { r.Members[2].Model = "" }, want: []string{"routes[0].members[2].model: must not be empty"}},
		"negative weight":   {edit: func(r *FanoutRoute) { r.Members[0].Weight = -1 }, want: []string{"routes[0].members[0].weight: must be a finite number >= 0, got -1"}},
		"zero weights":      {edit: func(r *FanoutRoute) { r.Members[0].Weight, r.Members[1].Weight, r.Members[2].Weight = 0, 0, 0 }, want: []string{`routes[0].members: strategy "weighted_mean" needs at least one positive weight`}},
		"unknown strategy":  {edit: func(r *FanoutRoute) { r.Strategy = "median" }, want: []string{`routes[0].strategy: unknown strategy "median"`}},
		"quorum too big":    {edit: func(r *FanoutRoute) { r.Quorum = 4 }, want: []string{"routes[0].quorum: 4 is more than the 3 members"}},
		"stacking missing":  {edit: func(r *FanoutRoute) { r.Strategy = StrategyStacking; r.Quorum = 0 }, want: []string{`routes[0].stacking: strategy "stacking" needs a stacking meta-model`}},
		"stacking unwanted": {edit: func(r *FanoutRoute) { r.Stacking = &Stacking{Weights: []float64{1, 1, 1}} }, want: []string{`routes[0].stacking: set only with strategy "stacking"`}},
		"stacking weights": {edit: func(r *FanoutRoute) {
			r.Strategy, r.Quorum, r.Stacking = StrategyStacking, 0, &Stacking{Weights: []float64{1}}
		}, want: []string{"routes[0].stacking.weights: 1 weights for 3 members"}},
		"stacking quorum": {edit: func(r *FanoutRoute) {
			r.Strategy, r.Stacking = StrategyStacking, &Stacking{Weights: []float64{1, 2, 3}}
		}, want: []string{"routes[0].quorum: stacking needs every member's score; quorum 2 is below the 3 members"}},
		"primary not member": {edit: func(r *FanoutRoute) { r.Primary = "other" }, want: []string{`routes[0].primary: "other" is not a member cluster`}},
		"threshold":          {edit: func(r *FanoutRoute) { r.Threshold = 1.5 }, want: []string{"routes[0].threshold: must be in [0, 1], got 1.5"}},
		"shadow":             {edit: func(r *FanoutRoute) { r.Shadows[0].Cluster, r.Shadows[0].Percent = "", 101 }, want: []string{"routes[0].shadows[0].cluster: must not be empty", "routes[0].shadows[0].percent: must be in [0, 100], got 101"}},
		"sequence strategy": {edit: func(r *FanoutRoute) { r.Sequence = true }, want: []string{
			"routes[0].strategy: a sequence combines nothing", "routes[0].quorum: every step of a sequence must answer",
			`routes[0].primary: "fraud.v2" must be the last member of a sequence ("fraud-logistic.v1")`,
		}},
		"duplicate label":  {edit: func(r *FanoutRoute) { r.Members[1].Name = "fraud.v1" }, want: []string{`routes[0].members[1].name: duplicate member label "fraud.v1"`}},
		"duplicate shadow": {edit: func(r *FanoutRoute) { r.Shadows = append(r.Shadows, r.Shadows[0]) }, want: []string{`routes[0].shadows[1].name: duplicate shadow label "fraud.v3"`}},
		"observe": {edit: func(r *FanoutRoute) {
			o := observed().Observe
			o.Cluster, o.Route, o.Path, o.Percent, o.Members = "", "", "v1", 0, o.Members[:2]
			r.Observe = o
		}, want: []string{"routes[0].observe.cluster: must not be empty", "routes[0].observe.route: must not be empty",
			`routes[0].observe.path: must start with '/', got "v1"`, "routes[0].observe.percent: must be in (0, 100], got 0",
			"routes[0].observe.members: 2 names for 3 members"}},
		"observe a sequence": {edit: func(r *FanoutRoute) {
			r.Strategy, r.Quorum, r.Primary, r.Sequence, r.Observe = "", 0, "", true, observed().Observe
		}, want: []string{"routes[0].observe.cluster: only an ensemble's members are observed"}},
		"inputs outside sequence": {edit: func(r *FanoutRoute) { r.Members[1].Inputs = map[string]string{"a": "b"} }, want: []string{"routes[0].members[1].inputs: only members after the first of a sequence"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data := []byte(tc.json)
			if tc.edit != nil {
				r := validRoute()
				tc.edit(&r)
				var err error
				if data, err = json.Marshal(Fanout{Routes: []FanoutRoute{r}}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ParseFanout(data)
			if err == nil {
				t.Fatalf("ParseFanout accepted %s", data)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestDuplicateRoutes(t *testing.T) {
	f := Fanout{Routes: []FanoutRoute{validRoute(), validRoute()}}
	err := f.Validate()
	if err == nil || !strings.Contains(err.Error(), `routes[1].route: duplicate route "fraud"`) {
		t.Fatalf("Validate = %v", err)
	}
}

func FuzzParseFanout(f *testing.F) {
	good, _ := json.Marshal(Fanout{Routes: []FanoutRoute{validRoute()}})
	f.Add(good)
	f.Add([]byte(`{"routes":[{"route":"","members":[{"cluster":"a","model":"m"}],"sequence":true}]}`))
	f.Add([]byte(`{"routes":[{"stacking":{"weights":[1e400]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseFanout(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config fails Validate: %v", err)
		}
		for i := range cfg.Routes {
			r := &cfg.Routes[i]
			if q := r.EffectiveQuorum(); q > len(r.Members) {
				t.Fatalf("quorum %d above %d members", q, len(r.Members))
			}
			if p := r.PrimaryIndex(); p >= len(r.Members) {
				t.Fatalf("primary index %d out of range", p)
			}
		}
	})
}
