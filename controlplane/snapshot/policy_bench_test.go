package snapshot_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model"
	"github.com/maestro-ml/maestro/controlplane/policy"
	"github.com/maestro-ml/maestro/controlplane/snapshot"
)

// largePolicy writes a policy with routes Routes over 2*routes service
// versions (two per service), the first route split w/100-w, all behind one
// gateway: the 10,000 routes and 20,000 service versions.
func largePolicy(routes int, w uint32) []byte {
	var sb strings.Builder
	sb.WriteString("apiVersion: maestro.dev/v1alpha1\nkind: Mesh\nmetadata: {name: bench}\nspec: {mtls: {mode: DISABLE}}\n")
	names := make([]string, 0, routes)
	for i := 0; i < routes; i++ {
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Service\nmetadata: {name: svc%05d, namespace: ml}\n"+
			"spec:\n  versions:\n    - {name: v0, endpoints: [{address: 10.%d.%d.1, port: 9000}]}\n"+
			"    - {name: v1, endpoints: [{address: 10.%d.%d.2, port: 9000}]}\n", i, i/256%256, i%256, i/256%256, i%256)
		a, b := uint32(90), uint32(10)
		if i == 0 {
			a, b = w, 100-w
		}
		fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Route\nmetadata: {name: model%05d, namespace: ml}\n"+
			"spec:\n  service: svc%05d\n  match: {model: model%05d}\n  split: [{version: v0, weight: %d}, {version: v1, weight: %d}]\n  timeout: 1s\n", i, i, i, a, b)
		names = append(names, fmt.Sprintf("model%05d", i))
	}
	fmt.Fprintf(&sb, "---\napiVersion: maestro.dev/v1alpha1\nkind: Gateway\nmetadata: {name: edge, namespace: ml}\nspec:\n  port: 8080\n  routes: [%s]\n", strings.Join(names, ", "))
	return []byte(sb.String())
}

// fromPolicy is the control plane's path from policy bytes to the IR,
// through a Loader that keeps the documents it decoded before.
func fromPolicy(b *testing.B, l *policy.Loader, data []byte) *model.Mesh {
	pm, err := l.Parse("bench.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	m, err := model.Build(pm, model.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPolicyChange is one policy change (the first route's weights)
// in a mesh of 10,000 routes and 20,000 service versions, end to end as the
// running control plane does it: parse the policy (the Loader re-decodes
// only the changed document), build the IR, translate to consistent
// snapshots with the translator's history.
func BenchmarkPolicyChange(b *testing.B) {
	docs := [2][]byte{largePolicy(benchRoutes, 90), largePolicy(benchRoutes, 80)}
	var loader policy.Loader
	tr := snapshot.NewTranslator()
	if _, err := tr.Translate(fromPolicy(b, &loader, docs[0])); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 1
	for b.Loop() {
		set, err := tr.Translate(fromPolicy(b, &loader, docs[i%2]))
		if err != nil {
			b.Fatal(err)
		}
		// The route is on the gateway and, as an API listener, in the
		// proxyless group; nothing else may change.
		if !slices.Equal(set.Changed, []string{"gateway-edge", "proxyless"}) {
			b.Fatalf("changed groups %v, want the gateway and proxyless groups only", set.Changed)
		}
		i++
	}
	cpu.report(b)
}

// BenchmarkPolicyParseOnly isolates YAML parsing and validation of the
// policy, the largest share of BenchmarkPolicyChange.
func BenchmarkPolicyParseOnly(b *testing.B) {
	doc := largePolicy(benchRoutes, 90)
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := policy.Parse("bench.yaml", doc); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkBuildAndTranslateChange is BenchmarkPolicyChange without the
// parse (policies parsed beforehand, as a loader caching unchanged files
// would have them): IR build plus translation with history.
func BenchmarkBuildAndTranslateChange(b *testing.B) {
	var pms [2]*policy.Mesh
	for i, w := range []uint32{90, 80} {
		pm, err := policy.Parse("bench.yaml", largePolicy(benchRoutes, w))
		if err != nil {
			b.Fatal(err)
		}
		pms[i] = pm
	}
	tr := snapshot.NewTranslator()
	build := func(pm *policy.Mesh) *model.Mesh {
		m, err := model.Build(pm, model.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	if _, err := tr.Translate(build(pms[0])); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 1
	for b.Loop() {
		if _, err := tr.Translate(build(pms[i%2])); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b)
}

// BenchmarkBuildOnly isolates model.Build of the parsed large policy, the
// IR conversion's share of BenchmarkBuildAndTranslateChange.
func BenchmarkBuildOnly(b *testing.B) {
	pm, err := policy.Parse("bench.yaml", largePolicy(benchRoutes, 90))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := model.Build(pm, model.BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkLoaderChange isolates the Loader's share of
// BenchmarkPolicyChange: one changed document among 20,001.
func BenchmarkLoaderChange(b *testing.B) {
	docs := [2][]byte{largePolicy(benchRoutes, 90), largePolicy(benchRoutes, 80)}
	var loader policy.Loader
	if _, err := loader.Parse("bench.yaml", docs[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 1
	for b.Loop() {
		if _, err := loader.Parse("bench.yaml", docs[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b)
}

// BenchmarkTranslateChange isolates translation with history: the IR of
// both policies is built beforehand.
func BenchmarkTranslateChange(b *testing.B) {
	var ms [2]*model.Mesh
	for i, w := range []uint32{90, 80} {
		pm, err := policy.Parse("bench.yaml", largePolicy(benchRoutes, w))
		if err != nil {
			b.Fatal(err)
		}
		if ms[i], err = model.Build(pm, model.BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	translateAlternately(b, ms, func(*snapshot.Set) {})
}
