package adaptive

import (
	"errors"
	"sync"
	"time"
)

// ErrUnknownRequest is returned for a label whose request the store does
// not hold: never seen, already labelled, expired or evicted.
var ErrUnknownRequest = errors.New("unknown request id")

// StoreConfig bounds the feedback store.
type StoreConfig struct {
	// TTL is how long members' answers wait for their label; default 10m.
	// Labels that come later are refused (ErrUnknownRequest).
	TTL time.Duration
	// MaxEntries bounds the requests held; the oldest go first. Default
	// 100,000: with three members and 36-byte request ids, about 25 MB.
	MaxEntries int
}

// entry is one request's answers, waiting for its label.
type entry struct {
	id      string
	route   string
	at      time.Time
	answers []Answer
	done    bool
}

// store keeps the members' answers of recent requests by request id until
// the application sends the true value (Tuner.Label) or they expire. It is
// a FIFO: entries arrive in time order, so expiry and eviction both take
// from the front. Memory is bounded by MaxEntries whatever the label rate:
// labelled entries are dropped from the map at once and from the FIFO at
// the next compaction, so the FIFO holds at most about twice MaxEntries.
type store struct {
	cfg StoreConfig
	mu  sync.Mutex
	by  map[string]*entry
	// fifo holds entries in arrival order from head; labelled (done) ones
	// stay until expired or compacted away.
	fifo []*entry
	head int
	dead int // done entries in fifo[head:]
}

func newStore(cfg StoreConfig) *store {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	return &store{cfg: cfg, by: map[string]*entry{}}
}

// put records e, replacing an earlier request with the same id.
func (s *store) put(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(e.at)
	if old, dup := s.by[e.id]; dup {
		s.finish(old)
	}
	for s.head < len(s.fifo) && len(s.by) >= s.cfg.MaxEntries {
		s.drop()
	}
	s.by[e.id] = e
	s.fifo = append(s.fifo, e)
	s.compact()
}

// take removes and returns the entry of id, if it is held and not expired.
func (s *store) take(id string, now time.Time) (*entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	e, ok := s.by[id]
	if !ok {
		return nil, false
	}
	out := *e
	s.finish(e)
	s.compact()
	return &out, true
}

// len is the number of entries held.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// finish removes e from the map and frees its answers; its FIFO slot goes
// later.
func (s *store) finish(e *entry) {
	delete(s.by, e.id)
	e.answers, e.done = nil, true
	s.dead++
}

func (s *store) expire(now time.Time) {
	cut := now.Add(-s.cfg.TTL)
	for s.head < len(s.fifo) && !s.fifo[s.head].at.After(cut) {
		s.drop()
	}
}

// drop removes the front of the FIFO.
func (s *store) drop() {
	e := s.fifo[s.head]
	s.fifo[s.head] = nil
	s.head++
	if e.done {
		s.dead--
		return
	}
	delete(s.by, e.id)
}

// compact rebuilds the FIFO without its consumed front and done entries
// once either is the majority.
func (s *store) compact() {
	front := s.head > 1024 && s.head*2 > len(s.fifo)
	done := s.dead > 1024 && s.dead*2 > len(s.fifo)-s.head
	if !front && !done {
		return
	}
	live := make([]*entry, 0, len(s.by))
	for _, e := range s.fifo[s.head:] {
		if !e.done {
			live = append(live, e)
		}
	}
	s.fifo, s.head, s.dead = live, 0, 0
}
