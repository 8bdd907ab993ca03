package upstream

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// startHealthChecks runs the cluster's active health check, if any: every
// interval each host is checked; unhealthy_threshold failures in a row mark
// it failing, healthy_threshold successes mark it healthy again.
func (m *Manager) startHealthChecks(c *Cluster) {
	hc := c.Config().HealthCheck
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc == nil || c.stopHC != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	c.stopHC = cancel
	go func() {
		streaks := make(map[*Host]int) // >0 successes, <0 failures in a row
		t := time.NewTicker(hc.Interval)
		defer t.Stop()
		for {
			hosts := c.Hosts()
			results := make([]bool, len(hosts))
			var wg sync.WaitGroup
			for i, h := range hosts {
				wg.Go(func() { results[i] = c.check(ctx, h) })
			}
			wg.Wait()
			seen := make(map[*Host]int, len(hosts))
			for i, h := range hosts {
				s := streaks[h]
				if results[i] {
					s = max(s, 0) + 1
					if s >= hc.HealthyThreshold || !h.hcFailed.Load() {
						h.hcFailed.Store(false)
					}
				} else {
					s = min(s, 0) - 1
					if -s >= hc.UnhealthyThreshold {
						h.hcFailed.Store(true)
					}
				}
				seen[h] = s
			}
			streaks = seen
			c.countHealthy()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// check sends one health check to h through the cluster's pool.
func (c *Cluster) check(ctx context.Context, h *Host) bool {
	hc := c.Config().HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	var req *http.Request
	var err error
	if hc.GRPC {
		msg, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: hc.GRPCService})
		frame := make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
		copy(frame[5:], msg)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+h.Addr+"/grpc.health.v1.Health/Check", bytes.NewReader(frame))
		if err != nil {
			return false
		}
		req.Header.Set("content-type", "application/grpc")
		req.Header.Set("te", "trailers")
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+h.Addr+hc.HTTPPath, nil)
		if err != nil {
			return false
		}
	}
	req.Host = c.Name
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	if !hc.GRPC {
		return true
	}
	if st := resp.Trailer.Get("grpc-status"); st != "0" && resp.Header.Get("grpc-status") != "0" {
		return false
	}
	if len(body) < 5 {
		return false
	}
	var out healthpb.HealthCheckResponse
	if err := proto.Unmarshal(body[5:], &out); err != nil {
		return false
	}
	return out.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
