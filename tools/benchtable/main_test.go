package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/maestro-ml/maestro/inference/server
BenchmarkInfer/fraud-2   	   10000	    150000 ns/op	  6000 req/s	  2048 B/op	  11 allocs/op
BenchmarkEmpty-2         	   20000	     90000 ns/op	  1024 B/op	   9 allocs/op
PASS
pkg: github.com/maestro-ml/maestro/controlplane/snapshot
BenchmarkTranslate-2     	      10	  90000000 ns/op	  88.5 MB/op
ok  	github.com/maestro-ml/maestro/controlplane/snapshot	1.0s
`

func TestTableHasARowPerBenchmarkAndAColumnPerUnit(t *testing.T) {
	rows, order, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	cols := columns(order)
	want := []string{"ns/op", "B/op", "allocs/op", "req/s", "MB/op"}
	if strings.Join(cols, " ") != strings.Join(want, " ") {
		t.Errorf("columns %v, want %v", cols, want)
	}
	var out strings.Builder
	if err := write(&out, rows, cols); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", out.String())
	}
	if f := strings.Fields(lines[1]); f[0] != "inference/server" || f[1] != "Infer/fraud-2" || f[5] != "6000" {
		t.Errorf("first row %q", lines[1])
	}
	if f := strings.Fields(lines[3]); f[0] != "controlplane/snapshot" || f[3] != "-" || f[6] != "88.5" {
		t.Errorf("last row %q", lines[3])
	}
}
