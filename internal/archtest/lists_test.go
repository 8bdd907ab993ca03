package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/wasmfilter/fanout/combine"
	"github.com/maestro-ml/maestro/wasmfilter/filterconfig"
)

// TestStrategyNamesAgree ties together the lists of ensemble strategies that
// nothing else connects: the policy field's enum tag (which validation and
// the JSON schema use), the policy's Strategy constants, the filter's
// filterconfig.Strategies() (which its config validation uses), the combine
// switch, and the strategy row of docs/filters.md. A strategy added to one
// and not the others fails here, not when a policy using it is translated
// or an ensemble answers.
func TestStrategyNamesAgree(t *testing.T) {
	var want []string
	for _, s := range filterconfig.Strategies() {
		want = append(want, string(s))
	}
	slices.Sort(want)

	f, ok := reflect.TypeFor[policy.Ensemble]().FieldByName("Strategy")
	if !ok {
		t.Fatal("policy.Ensemble has no Strategy field")
	}
	check(t, "the enum tag of policy.Ensemble.Strategy", strings.Split(f.Tag.Get("enum"), ","), want)
	check(t, "the Strategy constants of controlplane/policy", stringConsts(t, "../../controlplane/policy/types.go", "Strategy"), want)
	check(t, "the strategy row of docs/filters.md", docRow(t, "../../docs/filters.md", "| `strategy` |"), want)

	// Every listed strategy is one combine knows; a name it does not know
	// is refused, so the check below can tell the two apart.
	answers := []combine.Answer{
		{Member: 0, Label: "a", Weight: 1, Rows: 1, Width: 1, Scores: []float64{0.2}},
		{Member: 1, Label: "b", Weight: 1, Rows: 1, Width: 1, Scores: []float64{0.9}},
	}
	opts := combine.Options{Threshold: 0.5, Members: 2, Stacking: &filterconfig.Stacking{Weights: []float64{1, 1}}}
	for _, s := range filterconfig.Strategies() {
		if _, err := combine.Combine(s, answers, opts); err != nil {
			t.Errorf("combine refuses strategy %q of filterconfig.Strategies(): %v", s, err)
		}
	}
	if _, err := combine.Combine("no_such_strategy", answers, opts); err == nil {
		t.Error("combine accepts an unknown strategy: the check above proves nothing")
	}
}

func check(t *testing.T, where string, got, want []string) {
	t.Helper()
	got = slices.Clone(got)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s lists %v; filterconfig.Strategies() lists %v", where, got, want)
	}
}

// stringConsts returns the values of the string constants in file whose
// names start with prefix.
func stringConsts(t *testing.T, file, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// docRow returns the back-quoted names in the second cell of the table row
// of file that starts with start.
func docRow(t *testing.T, file, start string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, start) {
			continue
		}
		cells := strings.Split(line, "|")
		var out []string
		for _, part := range strings.Split(cells[2], ",") {
			out = append(out, strings.Trim(strings.TrimSpace(part), "`"))
		}
		return out
	}
	t.Fatalf("%s: no table row starting %q", file, start)
	return nil
}
