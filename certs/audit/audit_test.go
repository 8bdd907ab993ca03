package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRecordWritesOneJSONLinePerEvent(t *testing.T) {
	var buf bytes.Buffer
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	l := New(&buf, func() time.Time { return fixed })
	ctx := context.Background()
	events := []Event{
		{Kind: Issued, Identity: "spiffe://td/ns/a/sa/b", Serial: "0a", NotAfter: fixed.Add(time.Hour), Issuer: "localca"},
		{Kind: Refused, Peer: "spiffe://td/ns/a/sa/x", Identity: "spiffe://td/ns/a/sa/b", Reason: "not entitled"},
		{Kind: Failed, Identity: "spiffe://td/ns/a/sa/b", Error: "vault sealed", Details: map[string]string{"attempt": "3"}},
	}
	for _, ev := range events {
		if err := l.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&buf)
	var got []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	if len(got) != len(events) {
		t.Fatalf("got %d lines, want %d", len(got), len(events))
	}
	if got[0]["event"] != "issued" || got[0]["time"] != "2026-01-02T02:04:05Z" || got[0]["not_after"] != "2026-01-02T03:04:05Z" {
		t.Errorf("first event = %v", got[0])
	}
	if _, ok := got[1]["not_after"]; ok {
		t.Errorf("zero not_after was written: %v", got[1])
	}
	if got[1]["reason"] != "not entitled" || got[1]["peer"] != "spiffe://td/ns/a/sa/x" {
		t.Errorf("refusal = %v", got[1])
	}
	if d, _ := got[2]["details"].(map[string]any); d["attempt"] != "3" {
		t.Errorf("details = %v", got[2])
	}
}

func TestNilLogDiscards(t *testing.T) {
	var l *Log
	if err := l.Record(context.Background(), Event{Kind: Issued}); err != nil {
		t.Fatal(err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRecordReportsWriteErrors(t *testing.T) {
	err := New(failWriter{}, nil).Record(context.Background(), Event{Kind: Failed})
	if err == nil {
		t.Fatal("want error")
	}
}

func TestConcurrentRecordsDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_ = l.Record(context.Background(), Event{Kind: Issued, Identity: fmt.Sprintf("spiffe://td/ns/n/sa/s%d", i)})
		})
	}
	wg.Wait()
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("interleaved line %q", sc.Text())
		}
		n++
	}
	if n != 50 {
		t.Fatalf("got %d lines, want 50", n)
	}
}
