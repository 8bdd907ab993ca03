package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version is the release this binary was built as, set at link time:
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/maestro
//
// Without it, the module version recorded by `go install ...@version`, or
// "devel", is printed.
var version string

// runVersion prints the version and what the binary was built from, so a
// bug report can name exactly the code that ran.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr, "Prints the version of this binary, the commit it was built from and the Go toolchain.", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, describeBuild(version, bi))
	return nil
}

// describeBuild renders one line: the version (linked, else the module's,
// else devel), then the VCS revision, its time and whether the tree was
// modified, and the toolchain and platform. bi may be nil.
func describeBuild(linked string, bi *debug.BuildInfo) string {
	v := linked
	if v == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	if bi == nil {
		return "maestro " + v
	}
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	var parts []string
	if rev := s["vcs.revision"]; rev != "" {
		c := "commit " + rev[:min(12, len(rev))]
		if t := s["vcs.time"]; t != "" {
			c += " of " + t
		}
		if s["vcs.modified"] == "true" {
			c += ", modified"
		}
		parts = append(parts, c)
	}
	platform := strings.TrimSpace(s["GOOS"] + "/" + s["GOARCH"])
	if platform == "/" {
		platform = ""
	}
	parts = append(parts, strings.TrimSpace(bi.GoVersion+" "+platform))
	return fmt.Sprintf("maestro %s (%s)", v, strings.Join(parts, ", "))
}
