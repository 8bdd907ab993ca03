package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribeBuild(t *testing.T) {
	t.Parallel()
	built := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-07T17:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	installed := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.0"}}
	for name, tc := range map[string]struct {
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		"linked version wins": {"v0.1.0", built, "maestro v0.1.0 (commit 0123456789ab of 2026-12-07T17:00:00Z, modified, go1.26.8 linux/amd64)"},
		"go install version":  {"", installed, "maestro v0.2.0 (go1.26.8)"},
		"work tree build":     {"", built, "maestro devel (commit 0123456789ab of 2026-12-07T17:00:00Z, modified, go1.26.8 linux/amd64)"},
		"no build info":       {"", nil, "maestro devel"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := describeBuild(tc.linked, tc.bi); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "maestro ") || strings.Count(stdout.String(), "\n") != 1 {
		t.Errorf("output %q, want one line starting with maestro", stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"version", "extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}
