package cost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Target labels that, when a Prometheus scrape config sets them, say which
// policy service version an inference server belongs to.
const (
	LabelService        = "maestro_service"
	LabelServiceVersion = "maestro_service_version"
)

const byLabels = "job, instance, model, version, " + LabelService + ", " + LabelServiceVersion

// QueryPrometheus reads the window ending at end from a Prometheus HTTP
// API at base: counter increases, and memory as the share of the window's
// scrapes that saw each version loaded times its size. It also returns the
// whole-process CPU of every instance that has model rows.
func QueryPrometheus(ctx context.Context, client *http.Client, base string, window time.Duration, end time.Time) ([]Row, []Server, error) {
	if window < time.Second {
		return nil, nil, fmt.Errorf("window %v: want at least 1s", window)
	}
	w := strconv.FormatInt(int64(window.Seconds()), 10) + "s"
	q := func(expr string) ([]promSample, error) { return promQuery(ctx, client, base, expr, end) }
	cpu, err := q(fmt.Sprintf("sum by (%s) (increase(%s[%s]))", byLabels, metricCPU, w))
	if err != nil {
		return nil, nil, err
	}
	preds, err := q(fmt.Sprintf("sum by (%s) (increase(%s[%s]))", byLabels, metricPredictions, w))
	if err != nil {
		return nil, nil, err
	}
	// Byte-seconds: the mean over every scrape of the window, counting
	// scrapes without the series (version unloaded) as zero.
	mem, err := q(fmt.Sprintf("sum by (%s) (sum_over_time(%s[%s])) / on (job, instance) group_left () sum by (job, instance) (count_over_time(up[%s])) * %d",
		byLabels, metricMemory, w, w, int64(window.Seconds())))
	if err != nil {
		return nil, nil, err
	}
	resident, err := q(fmt.Sprintf("sum by (%s) (%s)", byLabels, metricMemory))
	if err != nil {
		return nil, nil, err
	}
	cores, err := q(fmt.Sprintf("max by (instance) (%s)", metricGOMAXPROCS))
	if err != nil {
		return nil, nil, err
	}
	procs, err := q(fmt.Sprintf("sum by (instance) (increase(%s[%s]))", metricProcessCPU, w))
	if err != nil {
		return nil, nil, err
	}
	rows := map[string]*Row{}
	row := func(s promSample) *Row {
		k := s.Metric["job"] + "\x00" + s.Metric["instance"] + "\x00" + s.Metric["model"] + "\x00" + s.Metric["version"] + "\x00" + s.Metric[LabelService] + "\x00" + s.Metric[LabelServiceVersion]
		r := rows[k]
		if r == nil {
			r = &Row{Service: s.Metric[LabelService], ServiceVersion: s.Metric[LabelServiceVersion], Instance: s.Metric["instance"],
				Model: s.Metric["model"], Version: s.Metric["version"]}
			rows[k] = r
		}
		return r
	}
	for _, s := range cpu {
		row(s).CoreSeconds = s.Value
	}
	for _, s := range preds {
		row(s).Predictions = s.Value
	}
	for _, s := range mem {
		row(s).GBSeconds = s.Value / bytesPerGB
	}
	for _, s := range resident {
		row(s).Resident = true
	}
	coresOf := map[string]float64{}
	for _, s := range cores {
		coresOf[s.Metric["instance"]] = s.Value
	}
	out := make([]Row, 0, len(rows))
	svcOf := map[string]*Row{}
	for _, r := range rows {
		r.Cores = coresOf[r.Instance]
		out = append(out, *r)
		svcOf[r.Instance] = r
	}
	var servers []Server
	for _, s := range procs {
		if r, ok := svcOf[s.Metric["instance"]]; ok {
			servers = append(servers, Server{Instance: r.Instance, Service: r.Service, ServiceVersion: r.ServiceVersion, ProcessCoreSeconds: s.Value})
		}
	}
	return out, servers, nil
}

type promSample struct {
	Metric map[string]string
	Value  float64
}

// promQuery runs an instant query and returns its vector.
func promQuery(ctx context.Context, client *http.Client, base, expr string, at time.Time) ([]promSample, error) {
	u := strings.TrimRight(base, "/") + "/api/v1/query?" + url.Values{
		"query": {expr}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", base, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", base, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMetricsBytes)).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus %s: query %q: status %s: decode answer: %w", base, expr, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus %s: query %q: %s", base, expr, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus %s: query %q: result type %q, want vector", base, expr, body.Data.ResultType)
	}
	out := make([]promSample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus %s: query %q: value %v: %w", base, expr, r.Value[1], err)
		}
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	return out, nil
}
