package rotation

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/maestro-ml/maestro/certs"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// metrics are the maestro_certs_* series. Per-identity series exist only
// while the identity holds a certificate.
type metrics struct {
	expiry   *prometheus.GaugeVec
	failures *prometheus.CounterVec
	issued   *prometheus.CounterVec
	capped   *prometheus.CounterVec
	version  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "expiry_timestamp_seconds",
			Help: "Unix time at which the current certificate of each identity expires.",
		}, []string{"identity"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "issue_failures_total",
			Help: "Failed certificate issuance attempts.",
		}, []string{"issuer"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "issued_total",
			Help: "Certificates issued, by kind (first issuance or rotation).",
		}, []string{"issuer", "kind"}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "ttl_capped_total",
			Help: "Certificates granted a shorter lifetime than requested.",
		}, []string{"issuer"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "snapshot_version",
			Help: "Version of the latest published certificate snapshot.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.expiry, m.failures, m.issued, m.capped, m.version} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("rotation metrics: already registered (one manager per registry): %w", err)
			}
			return nil, fmt.Errorf("rotation metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) recordIssued(issuer string, id spiffe.ID, c *certs.Certificate, rotated bool) {
	kind := "issued"
	if rotated {
		kind = "rotated"
	}
	m.issued.WithLabelValues(issuer, kind).Inc()
	if c.Capped {
		m.capped.WithLabelValues(issuer).Inc()
	}
	m.expiry.WithLabelValues(id.String()).Set(float64(c.NotAfter().UnixNano()) / 1e9)
}

func (m *metrics) forget(id spiffe.ID) { m.expiry.DeleteLabelValues(id.String()) }
