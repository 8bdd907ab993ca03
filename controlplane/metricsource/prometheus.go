package metricsource

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prometheus asks a Prometheus server's HTTP query API
// (GET /api/v1/query) for the numbers: increase() and histogram_quantile()
// over the window. The server's scrape interval must be well below the
// windows asked for, as increase() needs two samples inside one.
type Prometheus struct {
	base   *url.URL
	client *http.Client
}

// NewPrometheus returns a client of the server at rawURL (e.g.
// http://prometheus:9090, or with a path prefix); client nil uses one
// with a 10s timeout.
func NewPrometheus(rawURL string, client *http.Client) (*Prometheus, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus url %q: want http(s)://host[:port][/prefix]", rawURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Prometheus{base: u, client: client}, nil
}

// Sample is one element of a query's result.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// apiResponse is the body of every query answer.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// Query evaluates an instant query at the server's current time.
//
// # Errors
//
// ErrDown (wrapped) when the server cannot be reached or answers 5xx; the
// server's error type and message for a refused query; a decoding error
// for a body that is not the API's.
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	u := p.base.JoinPath("api/v1/query")
	u.RawQuery = url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w: %w", q, ErrDown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("query %q: %w: read: %w", q, ErrDown, err)
	}
	var r apiResponse
	decodeErr := json.Unmarshal(body, &r)
	if resp.StatusCode >= 500 {
		msg := strings.TrimSpace(string(body))
		if decodeErr == nil && r.Error != "" {
			msg = r.ErrorType + ": " + r.Error
		}
		return nil, fmt.Errorf("query %q: %w: HTTP %d: %s", q, ErrDown, resp.StatusCode, truncate(msg))
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("query %q: HTTP %d: not a Prometheus API response: %w", q, resp.StatusCode, decodeErr)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: HTTP %d: %s: %s", q, resp.StatusCode, r.ErrorType, r.Error)
	}
	return decodeResult(q, r.Data.ResultType, r.Data.Result)
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func decodeResult(q, typ string, raw json.RawMessage) ([]Sample, error) {
	switch typ {
	case "vector":
		var vs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(raw, &vs); err != nil {
			return nil, fmt.Errorf("query %q: vector: %w", q, err)
		}
		out := make([]Sample, 0, len(vs))
		for _, v := range vs {
			f, err := sampleValue(v.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", q, err)
			}
			out = append(out, Sample{Labels: v.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("query %q: scalar: %w", q, err)
		}
		f, err := sampleValue(v)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		return []Sample{{Value: f}}, nil
	}
	return nil, fmt.Errorf("query %q: result type %q, want vector or scalar", q, typ)
}

// sampleValue reads [time, "value"]; Prometheus writes values as strings
// so NaN and Inf survive JSON.
func sampleValue(v [2]any) (float64, error) {
	s, ok := v[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v[1])
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %q: %w", s, err)
	}
	return f, nil
}

// promRange formats a window as a PromQL range: whole seconds, or
// milliseconds below that precision.
func promRange(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// Increase implements Source with sum(increase(sel[window])); no matching
// series is 0.
func (p *Prometheus) Increase(ctx context.Context, sel Selector, window time.Duration) (float64, error) {
	if window <= 0 {
		return 0, fmt.Errorf("increase of %s: window %v is not positive", sel, window)
	}
	q := fmt.Sprintf("sum(increase(%s[%s]))", sel, promRange(window))
	res, err := p.Query(ctx, q)
	if err != nil {
		return 0, err
	}
	if len(res) == 0 {
		return 0, nil
	}
	return res[0].Value, nil
}

// Quantile implements Source with histogram_quantile over the increase of
// the buckets summed by le.
func (p *Prometheus) Quantile(ctx context.Context, q float64, hist Selector, window time.Duration) (float64, error) {
	if !(q > 0 && q < 1) {
		return 0, fmt.Errorf("quantile %v is outside (0, 1)", q)
	}
	if window <= 0 {
		return 0, fmt.Errorf("quantile of %s: window %v is not positive", hist, window)
	}
	b := hist
	b.Metric = hist.Metric + "_bucket"
	query := fmt.Sprintf("histogram_quantile(%s, sum by (le) (increase(%s[%s])))", strconv.FormatFloat(q, 'g', -1, 64), b, promRange(window))
	res, err := p.Query(ctx, query)
	if err != nil {
		return 0, err
	}
	if len(res) == 0 || math.IsNaN(res[0].Value) {
		return 0, fmt.Errorf("query %q: %w: no observations in the window", query, ErrNoData)
	}
	return res[0].Value, nil
}
