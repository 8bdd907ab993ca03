// Package archtest holds tests of the repository's structure: data flows one
// way (policy -> model -> xds -> snapshot -> server), so no package may import
// one downstream of it, and the parts of Maestro stay independent of each
// other where DESIGN.md says they are.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/maestro-ml/maestro"

// rule forbids packages under from importing packages under any of deny.
type rule struct {
	from string
	deny []string
	why  string
}

var rules = []rule{
	{"controlplane/policy", []string{"controlplane/model", "controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/watch", "controlplane/rollout", "controlplane/adaptive", "controlplane/metricsource"},
		"the policy API is the first step of the data flow"},
	{"controlplane/model", []string{"controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/watch", "controlplane/rollout", "controlplane/adaptive"},
		"the IR is plain Go and knows nothing of xDS"},
	{"controlplane/xds", []string{"controlplane/policy", "controlplane/snapshot", "controlplane/server", "controlplane/watch"},
		"builders read only the validated model"},
	{"controlplane/snapshot", []string{"controlplane/policy", "controlplane/server", "controlplane/watch"},
		"snapshots are built from the model, never from user input"},
	{"controlplane/metricsource", []string{"controlplane/policy", "controlplane/model", "controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/rollout", "controlplane/adaptive"},
		"metric sources only read numbers; what they mean is the controllers' business"},
	{"controlplane/rollout", []string{"controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/watch"},
		"rollouts change the policy's weights as an overlay applied before the model is built"},
	{"controlplane/adaptive", []string{"controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/watch", "controlplane/rollout"},
		"adaptive weights are an overlay applied before the model is built"},
	{"controlplane/closedloop", []string{"controlplane/xds", "controlplane/snapshot", "controlplane/server", "controlplane/watch"},
		"the closed loop hands the control plane an overlay on the policy; it never builds or serves resources"},
	{"inference", []string{"controlplane", "certs", "wasmfilter", "cmd"},
		"the inference server runs without the mesh"},
	{"certs", []string{"controlplane", "inference", "wasmfilter", "cmd"},
		"issuers and rotation are used by the control plane, not the other way round"},
	{"wasmfilter/proxywasm", []string{"controlplane", "inference", "certs", "internal", "cmd"},
		"the ABI binding is compiled into every filter; it must stay small"},
	{"wasmfilter/filterconfig", []string{"controlplane", "inference", "certs", "internal", "cmd", "wasmfilter/proxywasm"},
		"filter configs are shared by the control plane and the guests, so they depend on nothing"},
	{"internal/telemetry", []string{"controlplane", "inference", "certs", "wasmfilter", "cmd"},
		"shared set-up must not pull in any component"},
	{"internal/parallel", []string{"controlplane", "inference", "certs", "wasmfilter", "cmd", "internal/telemetry"},
		"the fan-out helper is used by every pipeline step, so it depends on none"},
	{"controlplane/istio", []string{"controlplane/snapshot", "controlplane/server", "controlplane/watch", "certs", "inference", "cmd"},
		"the Istio renderer is a pure function of the policy and the model, like the xDS builders"},
	{"controlplane/policy", []string{"controlplane/istio"}, "the pipeline does not depend on the Istio renderer"},
	{"controlplane/model", []string{"controlplane/istio"}, "the pipeline does not depend on the Istio renderer"},
	{"controlplane/xds", []string{"controlplane/istio"}, "the pipeline does not depend on the Istio renderer"},
	{"controlplane/snapshot", []string{"controlplane/istio"}, "the pipeline does not depend on the Istio renderer"},
	{"controlplane/server", []string{"controlplane/istio"}, "the pipeline does not depend on the Istio renderer"},
	{"controlplane", []string{"cmd", "inference", "wasmfilter/fanout", "wasmfilter/slo", "wasmfilter/proxywasm", "wasmfilter/wasmtest"},
		"the control plane configures the data plane; it never runs it"},
	{"tools", []string{"cmd"}, "developer tools stay apart from the product"},
}

// allowRules list everything packages under from (but not under an
// exception) may import from this module; anything else is an error.
var allowRules = []struct {
	from, except []string
	allow        []string
	why          string
}{
	{
		from:   []string{"wasmfilter/fanout", "wasmfilter/slo"},
		except: []string{"wasmfilter/fanout/fanouttest"},
		allow:  []string{"wasmfilter/filterconfig", "wasmfilter/proxywasm", "wasmfilter/fanout", "wasmfilter/slo"},
		why:    "a filter is compiled to .wasm with only the ABI binding and its config; anything more grows every module and may not build for wasip1",
	},
}

// rootOnly rules concern exactly one package, not its subtree: no step of
// the pipeline imports the wiring that assembles it.
var rootOnly = []struct{ pkg, why string }{
	{"controlplane", "the controlplane root wires the steps together; none of them may import it"},
}

// imports maps each package directory (relative to the module root) to the
// module packages its non-test files import.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "build") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		dir = filepath.ToSlash(dir)
		if _, ok := graph[dir]; !ok {
			graph[dir] = nil
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if rel, ok := strings.CutPrefix(p, module+"/"); ok {
				graph[dir] = append(graph[dir], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return graph
}

func under(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

func TestImportGraphFlowsOneWay(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	graph := imports(t, root)
	if _, ok := graph["cmd/maestro"]; !ok {
		t.Fatal("cmd/maestro not found: the walk is broken")
	}
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		for _, r := range rules {
			if !under(pkg, r.from) {
				continue
			}
			for _, imp := range graph[pkg] {
				for _, d := range r.deny {
					if under(imp, d) {
						t.Errorf("%s imports %s: %s", pkg, imp, r.why)
					}
				}
			}
		}
	}
}

func TestFiltersImportOnlyTheirBindingAndConfig(t *testing.T) {
	graph := moduleGraph(t)
	for pkg, imps := range graph {
		for _, r := range allowRules {
			if !underAny(pkg, r.from) || underAny(pkg, r.except) {
				continue
			}
			for _, imp := range imps {
				if !underAny(imp, r.allow) {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
	}
}

func TestNoStepImportsTheControlPlaneRoot(t *testing.T) {
	graph := moduleGraph(t)
	for pkg, imps := range graph {
		for _, r := range rootOnly {
			if !under(pkg, r.pkg) || pkg == r.pkg {
				continue
			}
			for _, imp := range imps {
				if imp == r.pkg {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
	}
}

// moduleGraph is imports over the module root, checked to have found the
// packages the rules are about.
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	graph := imports(t, root)
	for _, want := range []string{"cmd/maestro", "controlplane", "controlplane/istio", "wasmfilter/fanout", "wasmfilter/slo"} {
		if _, ok := graph[want]; !ok {
			t.Fatalf("%s not found: the walk is broken", want)
		}
	}
	return graph
}

func underAny(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

func TestRulesSeeViolations(t *testing.T) {
	// The rule matcher itself must catch a downstream import, or the test
	// above passes vacuously.
	if !under("controlplane/model/sub", "controlplane/model") || under("controlplane/modelx", "controlplane/model") {
		t.Fatal("under() matches the wrong packages")
	}
}

// testHelpers are packages written for tests: product code never imports
// them, so a test's shortcuts (plaintext control planes, fixed meshes) stay
// out of the binary.
var testHelpers = []string{"internal/cptest", "internal/e2etest", "internal/fakes", "internal/promtest", "internal/syncbuf"}

func TestTestHelpersStayInTests(t *testing.T) {
	graph := moduleGraph(t)
	for _, h := range testHelpers {
		if _, ok := graph[h]; !ok {
			t.Fatalf("test helper %s not found: the list is stale", h)
		}
	}
	for pkg, imps := range graph {
		if underAny(pkg, testHelpers) {
			continue
		}
		for _, imp := range imps {
			if underAny(imp, testHelpers) {
				t.Errorf("%s imports the test helper %s outside its tests", pkg, imp)
			}
		}
	}
}
