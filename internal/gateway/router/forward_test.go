package router

import (
	"regexp"
	"testing"
)

func TestRequestID(t *testing.T) {
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := requestID(&Message{Headers: [][2]string{{":path", "/"}}})
		if !uuid4.MatchString(id) {
			t.Fatalf("request id %q is not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
	if got := requestID(&Message{Headers: [][2]string{{"x-request-id", "client-1"}}}); got != "client-1" {
		t.Errorf("client's x-request-id replaced by %q", got)
	}
}
