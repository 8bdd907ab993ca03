package adaptive

// ObserveCounts records calls of one member of an adaptive route known
// only by their counts, as the data plane's per-member counters give them
// (the fanout filter's answers, timeouts and failures): they carry no
// answers, so they measure only the share of calls the member answered.
// In an interval without enough labels or comparisons for a member, its
// measured quality is that share: a member that answers everything counts
// as good, one that times out on every call as worthless, and it comes
// back as soon as it answers again.
// Routes the Tuner does not track, unknown members and negative counts are
// ignored.
func (t *Tuner) ObserveCounts(route, member string, answered, timeouts, failures int) {
	if answered < 0 || timeouts < 0 || failures < 0 || answered+timeouts+failures == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.routes[route]
	if rs == nil {
		return
	}
	i, ok := rs.index[member]
	if !ok {
		return
	}
	c := &rs.counts[i]
	c.requests += answered + timeouts + failures
	c.timeouts += timeouts
	c.failures += failures
	c.counted += answered + timeouts + failures
}
