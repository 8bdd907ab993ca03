// Command benchtable turns `go test -bench` output into one table: a row
// per benchmark with its package, and a column per reported unit (ns/op,
// B/op, allocs/op and every b.ReportMetric unit), so `make bench` ends
// with figures that can be read side by side.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// row is one benchmark result.
type row struct {
	pkg, name string
	values    map[string]string
}

// parse reads go test -bench output: "pkg: <path>" lines set the package,
// "Benchmark<Name>-<procs> <iterations> <value> <unit> ..." lines are results.
func parse(r io.Reader) ([]row, []string, error) {
	var rows []row
	units := map[string]bool{}
	var order []string
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/maestro-ml/maestro/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		rw := row{pkg: pkg, name: strings.TrimPrefix(f[0], "Benchmark"), values: map[string]string{}}
		for i := 2; i+1 < len(f); i += 2 {
			unit := f[i+1]
			rw.values[unit] = f[i]
			if !units[unit] {
				units[unit] = true
				order = append(order, unit)
			}
		}
		rows = append(rows, rw)
	}
	return rows, order, sc.Err()
}

// columns puts the standard units first and the rest in the order seen.
func columns(order []string) []string {
	std := []string{"ns/op", "B/op", "allocs/op"}
	var out []string
	for _, u := range std {
		if slices.Contains(order, u) {
			out = append(out, u)
		}
	}
	for _, u := range order {
		if !slices.Contains(std, u) {
			out = append(out, u)
		}
	}
	return out
}

func write(w io.Writer, rows []row, cols []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "package\tbenchmark\t%s\t\n", strings.Join(cols, "\t"))
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = r.values[c]
			if vals[i] == "" {
				vals[i] = "-"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", r.pkg, r.name, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func main() {
	rows, order, err := parse(os.Stdin)
	if err == nil {
		err = write(os.Stdout, rows, columns(order))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
