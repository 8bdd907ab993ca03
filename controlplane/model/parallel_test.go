package model

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/policy"
)

// strictPolicy writes a STRICT mTLS mesh of n services, each with a
// sidecar calling the next services' routes, three gateways sharing
// routes, and proxyless workloads: the mTLS copies of clusters are made by
// several groups, so forks make the same ones and join must keep one.
func strictPolicy(n int) string {
	var sb strings.Builder
	sb.WriteString("apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: big}\nspec:\n  mtls: {mode: STRICT}\n")
	var names []string
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: svc%04d, namespace: ns%d}\n"+
			"spec:\n  versions:\n    - {name: v0, endpoints: [{address: 10.0.%d.1, port: 15006}, {address: 10.1.%d.1, port: 15006, zone: b}]}\n"+
			"    - {name: v1, endpoints: [{address: 10.0.%d.2, port: 15006}]}\n", i, i%3, i%250, i%250, i%250)
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: r%04d, namespace: ns%d}\n"+
			"spec:\n  service: svc%04d\n  match: {model: m%04d}\n  split: [{version: v0, weight: 70}, {version: v1, weight: 30}]\n", i, i%3, i, i)
		names = append(names, fmt.Sprintf("r%04d", i))
		inbound, proxyless := "{port: 15006, appPort: 9000}", i%7 == 3
		if proxyless {
			inbound = "{port: 15006}\n  mode: proxyless"
		}
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Sidecar\nmetadata: {name: svc%04d, namespace: ns%d}\n"+
			"spec:\n  service: svc%04d\n  inbound: %s\n", i, i%3, i, inbound)
		if !proxyless {
			fmt.Fprintf(&sb, "  outbound: {port: 15001, routes: [r%04d, r%04d]}\n", (i+1)%n, (i+2)%n)
		}
	}
	for g := 0; g < 3; g++ {
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: gw%d, namespace: ns0}\n"+
			"spec:\n  port: 8443\n  nodes: {service: gw%d}\n  routes: [%s]\n", g, g, strings.Join(names[g*n/4:(g+2)*n/4], ", "))
	}
	return sb.String()
}

// fakeSecretsFor returns placeholder TLS material for every secret pm
// needs.
func fakeSecretsFor(pm *policy.Mesh) []Secret {
	var out []Secret
	for _, n := range RequiredSecrets(pm) {
		if n == TrustBundleSecret {
			out = append(out, Secret{Name: n, TrustBundle: []byte("bundle")})
		} else {
			out = append(out, Secret{Name: n, Certificate: &Certificate{ChainPEM: []byte("c"), KeyPEM: []byte("k")}})
		}
	}
	return out
}

// TestParallelBuildIsSequentialBuild builds every example and large meshes
// with one goroutine and with several: the Meshes must be Equal, hash
// alike, and need the same secrets.
func TestParallelBuildIsSequentialBuild(t *testing.T) {
	files, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../examples/mesh.yaml")
	meshes := map[string]*policy.Mesh{}
	for _, f := range files {
		pm, err := policy.Load(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		meshes[filepath.Base(f)] = pm
	}
	for name, text := range map[string]string{"strict-120": strictPolicy(120), "plain-800": plainPolicy(800)} {
		pm, err := policy.Parse(name+".yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		meshes[name] = pm
	}
	for name, pm := range meshes {
		t.Run(name, func(t *testing.T) {
			opts := BuildOptions{Secrets: fakeSecretsFor(pm)}
			seq, err := buildWith(pm, opts, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []int{2, 3} {
				par, err := buildWith(pm, opts, w)
				if err != nil {
					t.Fatal(err)
				}
				if !par.Equal(seq) || par.Hash() != seq.Hash() {
					t.Errorf("%d workers: the Mesh differs from one goroutine's", w)
				}
				if got, want := secretsOf(pm, w), secretsOf(pm, 1); !slices.Equal(got, want) {
					t.Errorf("%d workers: secrets %v, want %v", w, got, want)
				}
			}
		})
	}
}

// plainPolicy writes a mesh without mTLS of n routes over n services,
// behind one gateway: the shape of the benchmarks, large enough that
// Build picks several workers itself.
func plainPolicy(n int) string {
	var sb strings.Builder
	sb.WriteString("apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: big}\nspec: {mtls: {mode: DISABLE}}\n")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%05d", i)
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: s%05d}\n"+
			"spec:\n  versions:\n    - {name: v0, endpoints: [{address: 10.0.0.1, port: 9000}]}\n"+
			"    - {name: v1, endpoints: [{address: 10.0.0.2, port: 9000}]}\n"+
			"---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: %s}\n"+
			"spec:\n  service: s%05d\n  match: {model: %s}\n  split: [{version: v0, weight: 90}, {version: v1, weight: 10}]\n",
			i, names[i], i, names[i])
	}
	fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  port: 8080\n  routes: [%s]\n",
		strings.Join(names, ", "))
	return sb.String()
}

// secretsOf is RequiredSecrets built by workers goroutines.
func secretsOf(pm *policy.Mesh, workers int) []string {
	b := newBuilder(pm, BuildOptions{}, workers)
	b.build()
	out := make([]string, 0, len(b.needSecrets))
	for n := range b.needSecrets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestWorkersForSize(t *testing.T) {
	if w := workersFor(10, 20); w != 1 {
		t.Errorf("a small mesh: %d workers, want 1", w)
	}
	if w := workersFor(10000, 20000); w < 1 {
		t.Errorf("a large mesh: %d workers", w)
	}
}

func TestSpans(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		k       int
		want    [][2]int
	}{
		{[]int{10001, 10000}, 2, [][2]int{{0, 1}, {1, 2}}},
		{[]int{1, 1, 1, 1}, 2, [][2]int{{0, 2}, {2, 4}}},
		{[]int{1, 1, 1}, 8, [][2]int{{0, 1}, {1, 2}, {2, 3}}},
		{[]int{5}, 3, [][2]int{{0, 1}}},
		{[]int{1, 1, 10, 1}, 2, [][2]int{{0, 3}, {3, 4}}},
		{nil, 2, [][2]int{}},
	} {
		if got := spans(len(tc.weights), func(i int) int { return tc.weights[i] }, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("spans(%v, %d) = %v, want %v", tc.weights, tc.k, got, tc.want)
		}
	}
}

// TestParallelValidateReportsInOrder breaks a listener in every group:
// checking the groups on several goroutines must report the very errors,
// in the order, that one goroutine does.
func TestParallelValidateReportsInOrder(t *testing.T) {
	pm, err := policy.Load(context.Background(), "../../examples/policies/mtls-authorization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := buildWith(pm, BuildOptions{Secrets: fakeSecretsFor(pm)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Groups) < 3 {
		t.Fatalf("%d groups: the example no longer tests several", len(m.Groups))
	}
	for gi := range m.Groups {
		m.Groups[gi].Listeners[0].Routes.Name = ""
	}
	want := m.validate(1)
	if want == nil || strings.Count(want.Error(), "route configuration without a name") != len(m.Groups) {
		t.Fatalf("one goroutine: %v, want an error per group", want)
	}
	for _, w := range []int{2, 3} {
		if got := m.validate(w); got == nil || got.Error() != want.Error() {
			t.Errorf("%d workers: %v, want %v", w, got, want)
		}
	}
}

// TestBuildWithoutGroups keeps a mesh with no node groups' Groups nil, as
// it was before the groups were built in parts.
func TestBuildWithoutGroups(t *testing.T) {
	pm, err := policy.Parse("m.yaml", []byte("apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec: {mtls: {mode: DISABLE}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 2} {
		m, err := buildWith(pm, BuildOptions{}, w)
		if err != nil {
			t.Fatal(err)
		}
		if m.Groups != nil {
			t.Errorf("%d workers: groups %#v, want nil", w, m.Groups)
		}
	}
}

// TestRequiredSecretsIsWhatBuildNeeds compares RequiredSecrets, which
// skips the build of a mesh without STRICT mTLS or sidecars, with the
// secrets a full build records, for every example and large meshes.
func TestRequiredSecretsIsWhatBuildNeeds(t *testing.T) {
	files, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../examples/mesh.yaml")
	var strict int
	check := func(name string, pm *policy.Mesh) {
		got, want := RequiredSecrets(pm), secretsOf(pm, 1)
		if !slices.Equal(got, want) || got == nil {
			t.Errorf("%s: RequiredSecrets %#v, want %#v", name, got, want)
		}
		if len(want) > 0 {
			strict++
		}
	}
	for _, f := range files {
		pm, err := policy.Load(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		check(filepath.Base(f), pm)
	}
	for name, text := range map[string]string{"strict": strictPolicy(20), "plain": plainPolicy(20),
		"strict-without-sidecars": strings.Replace(plainPolicy(20), "mode: DISABLE", "mode: STRICT", 1)} {
		pm, err := policy.Parse(name+".yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		check(name, pm)
	}
	if strict < 3 {
		t.Errorf("only %d meshes need secrets: the test no longer covers STRICT mTLS", strict)
	}
}
