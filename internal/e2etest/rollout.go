package e2etest

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-ml/maestro/certs/audit"
)

// AuditFile opens (appending) the audit trail at path for a closed loop,
// closed at the test's end.
func AuditFile(t testing.TB, path string) *audit.Log {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return audit.New(f, nil)
}

// RolloutDecisions reads the rollout events of the audit trail at path,
// named as "advance@25" (the decision and the weight after it).
func RolloutDecisions(t testing.TB, path string) ([]string, []audit.Event) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var evs []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if k := string(ev.Kind); strings.HasPrefix(k, "rollout_") {
			names = append(names, strings.TrimPrefix(k, "rollout_")+"@"+ev.Details["weight_now"])
			evs = append(evs, ev)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names, evs
}

// Without drops the decisions named with any of prefixes, e.g. "hold@".
func Without(names []string, prefixes ...string) []string {
	var out []string
	for _, n := range names {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(n, p)
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

// Traffic repeats one call until stopped, counting answers by the server
// that gave them and failures.
type Traffic struct {
	mu     sync.Mutex
	ok     map[string]int
	failed int
	first  error
	stop   func()
}

// SendTraffic calls call in a loop until Stop or the test's end. call
// returns the name of the server that answered; an error returned once
// the traffic is stopping is not counted.
func SendTraffic(t testing.TB, call func(context.Context) (string, error)) *Traffic {
	t.Helper()
	tr := &Traffic{ok: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			server, err := call(ctx)
			tr.mu.Lock()
			switch {
			case err != nil && ctx.Err() == nil:
				tr.failed++
				if tr.first == nil {
					tr.first = err
				}
			case err == nil && server != "":
				tr.ok[server]++
			}
			tr.mu.Unlock()
		}
	}()
	stopped := false
	tr.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(tr.stop)
	return tr
}

// Stop ends the traffic and waits for the call in flight.
func (tr *Traffic) Stop() { tr.stop() }

// Counts returns the answers per server and the failures so far.
func (tr *Traffic) Counts() (map[string]int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string]int, len(tr.ok))
	for k, v := range tr.ok {
		out[k] = v
	}
	return out, tr.failed
}

// FirstError is the first failure counted, or nil.
func (tr *Traffic) FirstError() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.first
}

// answered is the number of answers so far, of every server.
func (tr *Traffic) answered() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, v := range tr.ok {
		n += v
	}
	return n
}

// WaitAnswers waits until n more calls are answered, bounded by WaitLimit.
func (tr *Traffic) WaitAnswers(t testing.TB, n int) {
	t.Helper()
	start := tr.answered()
	deadline := time.Now().Add(WaitLimit)
	for tr.answered()-start < n {
		if time.Now().After(deadline) {
			_, failed := tr.Counts()
			t.Fatalf("%d answers in %v (want %d); %d failures", tr.answered()-start, WaitLimit, n, failed)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a bounded wait
	}
}
