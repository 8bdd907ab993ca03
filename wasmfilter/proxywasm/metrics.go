package proxywasm

import "strconv"

// Counter is a host counter defined by DefineCounter.
type Counter struct{ id uint32 }

// Gauge is a host gauge defined by DefineGauge.
type Gauge struct{ id uint32 }

// Histogram is a host histogram defined by DefineHistogram.
type Histogram struct{ id uint32 }

func defineMetric(t MetricType, name string) (uint32, error) {
	var id uint32
	if err := Status(proxyDefineMetric(uint32(t), strPtr(name), uint32(len(name)), &id)).Err(); err != nil {
		return 0, hostError("define "+t.String(), name, err)
	}
	return id, nil
}

// DefineCounter defines (or finds) the counter called name. Envoy exposes it
// under the "wasmcustom." namespace, which its Prometheus output strips.
func DefineCounter(name string) (Counter, error) {
	id, err := defineMetric(MetricTypeCounter, name)
	return Counter{id}, err
}

// DefineGauge defines (or finds) the gauge called name.
func DefineGauge(name string) (Gauge, error) {
	id, err := defineMetric(MetricTypeGauge, name)
	return Gauge{id}, err
}

// DefineHistogram defines (or finds) the histogram called name.
func DefineHistogram(name string) (Histogram, error) {
	id, err := defineMetric(MetricTypeHistogram, name)
	return Histogram{id}, err
}

// Increment adds n to the counter.
func (c Counter) Increment(n uint64) error {
	return Status(proxyIncrementMetric(c.id, int64(n))).Err()
}

// Value reads the counter.
func (c Counter) Value() (uint64, error) { return getMetric(c.id) }

// Add adds delta (which may be negative) to the gauge.
func (g Gauge) Add(delta int64) error { return Status(proxyIncrementMetric(g.id, delta)).Err() }

// Set sets the gauge.
func (g Gauge) Set(v uint64) error { return Status(proxyRecordMetric(g.id, v)).Err() }

// Value reads the gauge.
func (g Gauge) Value() (uint64, error) { return getMetric(g.id) }

// Record adds one sample to the histogram.
func (h Histogram) Record(v uint64) error { return Status(proxyRecordMetric(h.id, v)).Err() }

func getMetric(id uint32) (uint64, error) {
	var v uint64
	if err := Status(proxyGetMetric(id, &v)).Err(); err != nil {
		return 0, hostError("get metric", strconv.Itoa(int(id)), err)
	}
	return v, nil
}
