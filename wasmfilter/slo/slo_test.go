package slo

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
	pw "github.com/maestro-ml/maestro/wasmfilter/proxywasm"
)

// memMetrics and memStore are native stand-ins for the host's stats and
// shared data, with the same semantics as wasmtest's.
type memMetrics struct{ values map[string]uint64 }

func (m *memMetrics) Define(kind pw.MetricType, name string) (Metric, error) {
	if m.values == nil {
		m.values = map[string]uint64{}
	}
	switch kind {
	case pw.MetricTypeGauge:
		return func(v uint64) { m.values[name] = v }, nil
	case pw.MetricTypeHistogram:
		return func(v uint64) { m.values[name]++ }, nil // sample count
	}
	return func(v uint64) { m.values[name] += v }, nil
}

type memStore struct {
	data     map[string][]byte
	cas      map[string]uint32
	next     uint32
	conflict int // fail this many CAS writes as if another worker won
}

func (s *memStore) Get(key string) ([]byte, uint32, error) {
	v, ok := s.data[key]
	if !ok {
		return nil, 0, pw.ErrNotFound
	}
	return bytes.Clone(v), s.cas[key], nil
}

func (s *memStore) Set(key string, value []byte, cas uint32) error {
	if s.data == nil {
		s.data, s.cas = map[string][]byte{}, map[string]uint32{}
	}
	if _, ok := s.data[key]; ok && cas != 0 {
		if s.conflict > 0 {
			s.conflict--
			s.next++
			s.cas[key] = s.next
			return pw.ErrCasMismatch
		}
		if cas != s.cas[key] {
			return pw.ErrCasMismatch
		}
	}
	s.next++
	s.data[key], s.cas[key] = bytes.Clone(value), s.next
	return nil
}

type logLines []string

func (l *logLines) log(level pw.LogLevel, msg string) { *l = append(*l, level.String()+" "+msg) }

func TestModelFromPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v2/models/fraud/infer":              "fraud",
		"/v2/models/fraud/versions/2/infer":   "fraud",
		"/v2/models/fraud":                    "fraud",
		"/v2/models/fraud/infer?x=1":          "fraud",
		"/v2/health/ready":                    "",
		"/v2/models/":                         "",
		"/inference.GRPCInferenceService/Foo": "",
	} {
		if got := ModelFromPath(in); got != want {
			t.Errorf("ModelFromPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func grpcFrame(msg []byte) []byte {
	n := len(msg)
	return append([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg...)
}

func TestModelFromGRPC(t *testing.T) {
	infer := protowire.AppendTag(nil, 1, protowire.BytesType)
	infer = protowire.AppendString(infer, "fraud")
	later := protowire.AppendTag(nil, 2, protowire.BytesType) // model_version first
	later = protowire.AppendString(later, "3")
	later = append(later, infer...)
	tests := map[string]struct {
		in   []byte
		want string
	}{
		"model_name":         {grpcFrame(infer), "fraud"},
		"after other fields": {grpcFrame(later), "fraud"},
		"compressed":         {append([]byte{1}, grpcFrame(infer)[1:]...), ""},
		"short":              {[]byte{0, 0}, ""},
		"garbage":            {grpcFrame([]byte{0xff, 0xff, 0xff}), ""},
		"truncated frame":    {grpcFrame(infer)[:8], ""},
	}
	for name, tc := range tests {
		if got := ModelFromGRPC(tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

func TestIsError(t *testing.T) {
	tests := []struct {
		status, grpc int
		want         bool
	}{
		{200, NoGRPCStatus, false}, {404, NoGRPCStatus, false}, {429, NoGRPCStatus, false},
		{500, NoGRPCStatus, true}, {503, NoGRPCStatus, true}, {0, NoGRPCStatus, true},
		{200, 0, false}, {200, 5, true}, {200, 14, true},
	}
	for _, tc := range tests {
		if got := IsError(tc.status, tc.grpc); got != tc.want {
			t.Errorf("IsError(%d, %d) = %v", tc.status, tc.grpc, got)
		}
	}
	if ParseGRPCStatus("") != NoGRPCStatus || ParseGRPCStatus("14") != 14 || ParseGRPCStatus("x") != 2 {
		t.Fatal("ParseGRPCStatus")
	}
}

func TestStatName(t *testing.T) {
	got := StatName("requests_total", "default/fraud.v2", "", targetTag(99.9, 250))
	want := "maestro_slo_requests_total.route.default/fraud_v2.model.none.target.p99_9_250ms"
	if got != want {
		t.Fatalf("StatName = %q, want %q", got, want)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	var r Record
	r.Add(Bucket{Index: 100, Total: 3, Errors: 1, Slow: []uint64{1, 0}})
	r.Add(Bucket{Index: 98, Total: 2})
	r.Add(Bucket{Index: 100, Total: 1, Slow: []uint64{1, 1}})
	r.Alerting = alertBit(1, true)
	b, _ := r.MarshalBinary()
	var got Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := Record{Buckets: []Bucket{{Index: 98, Total: 2}, {Index: 100, Total: 4, Errors: 1, Slow: []uint64{2, 1}}},
		Alerting: alertBit(1, true)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := got.Sum(99, 100, 2); s.Total != 4 || s.Errors != 1 || s.Slow[0] != 2 {
		t.Fatalf("sum = %+v", s)
	}
	got.Trim(99)
	if len(got.Buckets) != 1 || got.Buckets[0].Index != 100 {
		t.Fatalf("trim = %+v", got.Buckets)
	}
}

func FuzzRecordUnmarshal(f *testing.F) {
	var r Record
	r.Add(Bucket{Index: -5, Total: 1, Errors: 1, Slow: []uint64{1}})
	r.Add(Bucket{Index: 7, Total: 9})
	seed, _ := r.MarshalBinary()
	f.Add(seed)
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 0, 255, 255, 255, 255, 15})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			return
		}
		out, _ := r.MarshalBinary()
		var again Record
		if err := again.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-decode: %v %+v vs %+v", err, again, r)
		}
	})
}

func testConfig(t testing.TB) *filterconfig.SLO {
	t.Helper()
	cfg, err := filterconfig.ParseSLO([]byte(`{"objectives":[{"route":"r","availability":0.9,
	  "latency":[{"percentile":90,"thresholdMs":100}],
	  "shortWindowSeconds":60,"longWindowSeconds":600,"shortBurnThreshold":2,"longBurnThreshold":1.5,
	  "budgetHeader":"x-slo-budget"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMeterCountsAndBurnRates(t *testing.T) {
	metrics, store, logs := &memMetrics{}, &memStore{}, logLines{}
	m := NewMeter(testConfig(t), Env{Metrics: metrics, Store: store, Log: logs.log})
	now := time.Unix(1_000_000, 0)
	obs := func(status int, latency time.Duration) {
		if err := m.Observe(Observation{Route: "r", Model: "fraud", Status: status, GRPCStatus: NoGRPCStatus,
			Latency: latency, End: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		obs(200, 10*time.Millisecond)
	}
	obs(503, 10*time.Millisecond)
	obs(200, 150*time.Millisecond)
	// Requests on routes no objective names are not metered.
	if err := m.Observe(Observation{Route: "other", Status: 500, End: now}); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(now); err != nil {
		t.Fatal(err)
	}
	name := func(metric string, extra ...string) string { return StatName(metric, "r", "fraud", extra...) }
	want := map[string]uint64{
		name("requests_total"):                          10,
		name("errors_total"):                            1,
		name("latency_ms"):                              10,
		name("slow_requests_total", targetTag(90, 100)): 1,
		name("burn_rate_x1000", "window.short"):         1000, // 10% errors / 10% budget
		name("burn_rate_x1000", "window.long"):          1000,
	}
	if !reflect.DeepEqual(metrics.values, want) {
		t.Fatalf("metrics = %v\nwant %v", metrics.values, want)
	}
	if len(logs) != 0 {
		t.Fatalf("burn 1.0 is under both thresholds, got logs %q", logs)
	}
	if h, v, ok := m.BudgetHeader("r", "fraud"); !ok || h != "x-slo-budget" || v != "0.0000" {
		t.Fatalf("budget header = %q %q %v", h, v, ok)
	}

	// Four more errors: 5/14 errors is a burn of 3.57, over both thresholds.
	for i := 0; i < 4; i++ {
		obs(500, time.Millisecond)
	}
	if err := m.Flush(now); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || !strings.Contains(logs[0], `warn slo burn rate above threshold: route="r" model="fraud" sli="errors" window=short(1m0s) burn_rate=3.57 threshold=2.00 bad=5 total=14`) ||
		!strings.Contains(logs[1], "window=long(10m0s)") {
		t.Fatalf("logs = %q", logs)
	}
	// A flush with nothing new logs nothing more.
	if err := m.Flush(now); err != nil || len(logs) != 2 {
		t.Fatalf("repeat flush: %v %q", err, logs)
	}
	// Past the short window only the long one still burns.
	later := now.Add(2 * time.Minute)
	if err := m.Flush(later); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 3 || !strings.Contains(logs[2], "info slo burn rate back under threshold") || !strings.Contains(logs[2], "window=short") {
		t.Fatalf("logs = %q", logs)
	}
	// Past the long window everything has rolled off.
	if err := m.Flush(now.Add(11 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 4 || !strings.Contains(logs[3], "window=long") {
		t.Fatalf("logs = %q", logs)
	}
	if _, v, _ := m.BudgetHeader("r", "fraud"); v != "1.0000" {
		t.Fatalf("budget after roll-off = %q", v)
	}
}

func TestMeterRetriesCASConflicts(t *testing.T) {
	store := &memStore{conflict: 3}
	metrics := &memMetrics{}
	m := NewMeter(testConfig(t), Env{Metrics: metrics, Store: store})
	now := time.Unix(1_000_000, 0)
	if err := m.Observe(Observation{Route: "r", Status: 500, End: now}); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(now); err != nil {
		t.Fatal(err)
	}
	var rec Record
	v, _, _ := store.Get("maestro_slo\x00r\x00")
	if err := rec.UnmarshalBinary(v); err != nil {
		t.Fatal(err)
	}
	if s := rec.Sum(0, now.Unix(), 1); s.Total != 1 || s.Errors != 1 {
		t.Fatalf("merged record = %+v", rec)
	}
	store.conflict = casAttempts
	if err := m.Observe(Observation{Route: "r", Status: 200, End: now}); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(now); err == nil || !strings.Contains(err.Error(), "still contended") {
		t.Fatalf("err = %v", err)
	}
}

func TestMeterBoundsSeries(t *testing.T) {
	metrics := &memMetrics{}
	m := NewMeter(testConfig(t), Env{Metrics: metrics, Store: &memStore{}})
	for i := 0; i < maxSeries+50; i++ {
		if err := m.Observe(Observation{Route: "r", Model: "m" + strconv.Itoa(i), Status: 200, End: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.series) != maxSeries+1 {
		t.Fatalf("series = %d, want %d (bounded plus \"other\")", len(m.series), maxSeries+1)
	}
	if got := metrics.values[StatName("requests_total", "r", "other")]; got != 50 {
		t.Fatalf("other = %d", got)
	}
}

func TestMeterLatencyTargetBurn(t *testing.T) {
	logs := logLines{}
	m := NewMeter(testConfig(t), Env{Metrics: &memMetrics{}, Store: &memStore{}, Log: logs.log})
	now := time.Unix(2_000_000, 0)
	for i := 0; i < 10; i++ {
		latency := 10 * time.Millisecond
		if i < 3 {
			latency = 101 * time.Millisecond // over the 100ms target
		}
		if err := m.Observe(Observation{Route: "r", Model: "m", Status: 200, GRPCStatus: NoGRPCStatus,
			Latency: latency, End: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Flush(now); err != nil {
		t.Fatal(err)
	}
	// 3 slow of 10 against the 10% a p90 target allows: burn 3 on both
	// windows; no errors, so only the latency SLI alerts.
	if len(logs) != 2 || !strings.Contains(logs[0], `sli="latency p90<100ms" window=short(1m0s) burn_rate=3.00 threshold=2.00 bad=3 total=10`) ||
		!strings.Contains(logs[1], `sli="latency p90<100ms" window=long(10m0s) burn_rate=3.00 threshold=1.50`) {
		t.Fatalf("logs = %q", logs)
	}
}

// TestModelScanAgreesWithWholeRead: reading a short prefix of the body
// first must find exactly what reading all of it finds, for names that
// fit the prefix or not, bodies cut anywhere, frames that claim more or
// less than they hold, and bodies that name no model.
func TestModelScanAgreesWithWholeRead(t *testing.T) {
	field := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	long := strings.Repeat("m", 300)
	padding := field(5, strings.Repeat("x", 200))
	bodies := map[string][]byte{
		"first field":        grpcFrame(field(1, "fraud")),
		"after a long field": grpcFrame(append(slices.Clone(padding), field(1, "fraud")...)),
		"long name":          grpcFrame(field(1, long)),
		"no name":            grpcFrame(append(field(2, "3"), padding...)),
		"compressed":         append([]byte{1}, grpcFrame(field(1, "fraud"))[1:]...),
		"garbage":            grpcFrame(append([]byte{0xff, 0xff, 0xff}, padding...)),
		"frame says less":    append(grpcFrame(field(2, "3")), field(1, "fraud")...),
		"frame says more":    append([]byte{0, 0, 0, 0x10, 0}, field(1, long)...),
	}
	for name, body := range bodies {
		for n := 0; n <= len(body); n++ {
			reads := 0
			read := func(k int) ([]byte, error) {
				reads++
				return body[:k], nil
			}
			got, want := string(scanModel(n, read)), ModelFromGRPC(body[:n])
			if got != want {
				t.Fatalf("%s, %d bytes: scan found %q, a whole read %q", name, n, got, want)
			}
			if n <= modelPeek && reads != 1 {
				t.Fatalf("%s, %d bytes: %d reads of a body the first read covers", name, n, reads)
			}
		}
	}
}
