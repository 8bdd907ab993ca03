package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// identities binds node groups to the workload identities they are for.
// A group's configuration names its nodes' own certificates as SDS
// secrets (a sidecar's listener serves its service's certificate, a
// gateway's clusters present the gateway's), so the SPIFFE IDs among a
// snapshot's secret names are exactly the identities allowed in the group.
type identities struct {
	// byGroup holds the identities each group's snapshot uses.
	byGroup map[string]map[string]bool
	// bound holds every identity some group uses.
	bound map[string]bool
}

// spiffePrefix starts every certificate secret name (the trust bundle's
// name does not).
const spiffePrefix = "spiffe://"

func newIdentities(snaps map[string]*cache.Snapshot) *identities {
	ids := &identities{byGroup: map[string]map[string]bool{}, bound: map[string]bool{}}
	for g, snap := range snaps {
		for name := range snap.GetResources(resource.SecretType) {
			if !strings.HasPrefix(name, spiffePrefix) {
				continue
			}
			if ids.byGroup[g] == nil {
				ids.byGroup[g] = map[string]bool{}
			}
			ids.byGroup[g][name] = true
			ids.bound[name] = true
		}
	}
	return ids
}

// allows reports whether a peer proving identity peer may be served as a
// node of group. A group bound to identities admits only those; a group
// whose configuration uses no certificate admits any identity that no
// group is bound to, so a workload cannot leave its own group for one
// that is not its own by claiming another role in its node metadata.
func (ids *identities) allows(peer, group string) bool {
	if ids == nil {
		return true
	}
	if want := ids.byGroup[group]; len(want) > 0 {
		return want[peer]
	}
	return !ids.bound[peer]
}

// expected lists the identities a group admits, for messages.
func (ids *identities) expected(group string) string {
	if want := ids.byGroup[group]; len(want) > 0 {
		return strings.Join(slices.Sorted(maps.Keys(want)), ", ")
	}
	return "any identity not bound to another group"
}

// peerOf returns the verified SPIFFE ID of a stream's client certificate,
// or "" for a stream without one (plaintext development set-ups).
func peerOf(ctx context.Context) string {
	id, err := mtls.PeerIDFromContext(ctx)
	if err != nil {
		return ""
	}
	return id.String()
}

// Reasons a node is refused, as metric label values.
const refusedIdentity = "identity_mismatch"

// checkIdentity refuses a request whose node claims (through its
// metadata) a group its client certificate does not belong to. It is
// called with t.mu held.
func (t *tracker) checkIdentity(st *streamState, info model.NodeInfo) error {
	if st.peer == "" || t.identities == nil {
		return nil
	}
	group, ok := t.groupOf(info)
	if !ok {
		return nil // no group: the node receives nothing anyway
	}
	ids := t.identities()
	if ids.allows(st.peer, group) {
		return nil
	}
	if st.refused {
		return status.Error(codes.PermissionDenied, "node refused") // already reported
	}
	st.refused = true
	msg := fmt.Sprintf("node %q with identity %s claims node group %q (role %q, service %q), which is for %s",
		info.ID, st.peer, group, info.Role, info.Service, ids.expected(group))
	t.m.refusals.WithLabelValues(refusedIdentity).Inc()
	t.log.Warn("refused a node whose certificate does not match the node group it claims",
		"node", info.ID, "peer", st.peer, "group", group, "role", info.Role, "service", info.Service, "allowed", ids.expected(group))
	if err := t.audit.Record(context.Background(), audit.Event{Kind: audit.Refused, Peer: st.peer, Reason: refusedIdentity, Error: msg,
		Details: map[string]string{"node": info.ID, "group": group, "role": string(info.Role), "service": info.Service}}); err != nil {
		t.log.Error("audit", "error", err)
	}
	return status.Error(codes.PermissionDenied, msg)
}
