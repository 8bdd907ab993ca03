package xds

import (
	"context"
	"testing"

	"github.com/maestro-ml/maestro/controlplane/model/modeltest"
)

// TestSweepKeepsOnlyTables checks that, after two translations, the state
// kept for its tables references no mesh, group state or built resource
// (which would keep them alive for nothing), and that the next state still
// reuses its arrays.
func TestSweepKeepsOnlyTables(t *testing.T) {
	c := NewCache()
	for range 2 {
		m := modeltest.Sample(9000)
		_, errs := c.ForGroups(context.Background(), m)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		c.Sweep()
	}
	sp := c.spare
	if sp == nil {
		t.Fatal("no spare state after two translations")
	}
	if sp.mesh != nil || sp.groups != nil || sp.index != nil {
		t.Errorf("spare state keeps mesh %p, groups %d, index %d", sp.mesh, len(sp.groups), len(sp.index))
	}
	for f, tab := range sp.clusters {
		if len(tab) == 0 {
			t.Fatalf("flavour %d: no table kept", f)
		}
		for i, e := range tab {
			if e != nil {
				t.Fatalf("flavour %d: table keeps cluster %d", f, i)
			}
		}
	}
	first := &sp.clusters[0][0]
	st := c.state(modeltest.Sample(9000))
	if &st.clusters[0][0] != first {
		t.Error("the next state did not reuse the spare table")
	}
}

// TestFlavourFreeClustersShared checks that a cluster whose resources do
// not depend on the flavour is kept once for the Envoy and the proxyless
// groups, and that one with TLS or a health check is not.
func TestFlavourFreeClustersShared(t *testing.T) {
	m := modeltest.Sample(9000)
	c := NewCache()
	_, errs := c.ForGroups(context.Background(), m)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := c.cur
	var free, bound int
	for i := range m.Clusters {
		envoy, grpc := st.clusters[0][i], st.clusters[1][i]
		if envoy == nil || grpc == nil {
			continue // not used by groups of both flavours
		}
		if want := flavourFree(&m.Clusters[i]); (envoy == grpc) != want {
			t.Errorf("cluster %q: shared %v, want %v", m.Clusters[i].Name, envoy == grpc, want)
		}
		if envoy == grpc {
			free++
		} else {
			bound++
		}
	}
	if free == 0 || bound == 0 {
		t.Fatalf("sample mesh has %d shared and %d flavour-bound clusters used by both flavours; want some of each", free, bound)
	}
}
