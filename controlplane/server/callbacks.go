package server

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/controlplane/model"
)

// Stream kinds, as metric label values.
const (
	kindSotW  = "sotw"
	kindDelta = "delta"
)

// NodeStatus is what the server knows of one connected node.
type NodeStatus struct {
	ID      string `json:"id"`
	Role    string `json:"role,omitempty"`
	Service string `json:"service,omitempty"`
	// Identity is the SPIFFE ID of the node's client certificate (mTLS
	// only): what its group is checked against.
	Identity string `json:"identity,omitempty"`
	// Group is the node group the node is served from; empty if none
	// matches.
	Group   string `json:"group,omitempty"`
	Streams int    `json:"streams"`
	// Types are sorted by Type.
	Types []TypeStatus `json:"types"`
}

// TypeStatus is the state of one resource type on one node.
type TypeStatus struct {
	// Type is the short type name ("listener", "cluster", ...).
	Type    string `json:"type"`
	TypeURL string `json:"typeUrl"`
	// Sent is the version of the latest response sent; Acked the latest
	// version the node accepted.
	Sent  string `json:"sent,omitempty"`
	Acked string `json:"acked,omitempty"`
	// Nacked is the version the node rejected, with its error detail. A
	// NACK rejects only the resources its error names (Envoy and gRPC
	// clients apply the others of the response): those are
	// NackedResources, the rest AppliedResources. When the error names
	// none of the response's resources, all of them are counted
	// rejected and NackUnattributed is set. All stay set until the node
	// ACKs a later response.
	Nacked           string   `json:"nacked,omitempty"`
	NackError        string   `json:"nackError,omitempty"`
	NackedResources  []string `json:"nackedResources,omitempty"`
	AppliedResources []string `json:"appliedResources,omitempty"`
	NackUnattributed bool     `json:"nackUnattributed,omitempty"`
	Pushes           uint64   `json:"pushes"`
	ACKs             uint64   `json:"acks"`
	NACKs            uint64   `json:"nacks"`
}

// sent is the latest response of one type on one stream; an ACK or NACK
// refers to it by nonce.
type sent struct {
	nonce   string
	version string
	// names are the resources of a delta response. For SotW, snap is the
	// snapshot the response came from; names are taken from it only when
	// a NACK needs them, keeping the push path cheap.
	names []string
	snap  *cache.Snapshot
	// requested are the names a SotW request asked for; empty means all.
	requested []string
}

type streamState struct {
	kind string
	node *model.NodeInfo
	sent map[string]sent
	// peer is the SPIFFE ID of the stream's verified client certificate,
	// "" without mTLS; refused is set once the stream was refused for
	// claiming a group that is not its identity's.
	peer    string
	refused bool
}

type nodeState struct {
	info    model.NodeInfo
	peer    string
	streams int
	types   map[string]*TypeStatus
}

// tracker implements go-control-plane's callbacks: it follows every
// stream's responses and the ACKs/NACKs that answer them, per node and type.
type tracker struct {
	log     *slog.Logger
	m       *metrics
	groupOf func(model.NodeInfo) (string, bool)
	// snapshotAt returns group's current snapshot if its typeURL
	// resources are at version, else nil.
	snapshotAt func(group, typeURL, version string) *cache.Snapshot
	// guard, when set, decides who may receive which secrets.
	guard SecretGuard
	// identities returns the current binding of node groups to
	// identities; audit records refused nodes (nil discards).
	identities func() *identities
	audit      *audit.Log

	mu      sync.Mutex
	streams map[int64]*streamState
	nodes   map[string]*nodeState
}

func newTracker(log *slog.Logger, m *metrics, groupOf func(model.NodeInfo) (string, bool)) *tracker {
	return &tracker{
		log:     log,
		m:       m,
		groupOf: groupOf,
		streams: map[int64]*streamState{},
		nodes:   map[string]*nodeState{},
	}
}

func (t *tracker) open(id int64, kind, peer string) {
	t.mu.Lock()
	t.streams[id] = &streamState{kind: kind, sent: map[string]sent{}, peer: peer}
	t.mu.Unlock()
	t.m.streams.WithLabelValues(kind).Inc()
}

func (t *tracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	delete(t.streams, id)
	t.m.streams.WithLabelValues(st.kind).Dec()
	if st.node == nil {
		return
	}
	n := t.nodes[st.node.ID]
	if n == nil {
		return
	}
	n.streams--
	if n.streams > 0 {
		return
	}
	// The node is gone: its NACKs no longer describe a running proxy.
	for url, ts := range n.types {
		if ts.Nacked != "" {
			t.m.nacked.WithLabelValues(TypeName(url)).Dec()
			t.countRejected(url, ts.NackedResources, -1)
		}
	}
	delete(t.nodes, st.node.ID)
	t.m.connectedNodes.Dec()
	t.log.Info("node disconnected", "node", st.node.ID)
}

// info is the stream's node: the one its first request named.
func (st *streamState) info(n *corev3.Node) model.NodeInfo {
	if st.node != nil {
		return *st.node
	}
	return NodeInfo(n)
}

// attach records the stream's node on its first request.
func (t *tracker) attach(st *streamState, n *corev3.Node) *nodeState {
	if st.node != nil {
		return t.nodes[st.node.ID]
	}
	info := NodeInfo(n)
	st.node = &info
	ns := t.nodes[info.ID]
	if ns == nil {
		ns = &nodeState{info: info, peer: st.peer, types: map[string]*TypeStatus{}}
		t.nodes[info.ID] = ns
		t.m.connectedNodes.Inc()
		if g, ok := t.groupOf(info); ok {
			t.log.Info("node connected", "node", info.ID, "role", info.Role, "service", info.Service, "group", g)
		} else {
			t.log.Warn("node connected but no node group matches it; it receives nothing until one does",
				"node", info.ID, "role", info.Role, "service", info.Service)
		}
	}
	ns.streams++
	return ns
}

func (ns *nodeState) typ(url string) *TypeStatus {
	ts := ns.types[url]
	if ts == nil {
		ts = &TypeStatus{Type: TypeName(url), TypeURL: url}
		ns.types[url] = ts
	}
	return ts
}

// answer handles the ACK or NACK in a request; it returns the NACKed
// version ("" for an ACK or a request answering nothing).
func (t *tracker) answer(st *streamState, ns *nodeState, url, nonce string, detail *rpcstatus.Status) string {
	if nonce == "" {
		return ""
	}
	last, ok := st.sent[url]
	if !ok || last.nonce != nonce {
		return "" // stale nonce: the server ignores it too
	}
	ts := ns.typ(url)
	typ := TypeName(url)
	if detail == nil {
		ts.ACKs++
		ts.Acked = last.version
		if ts.Nacked != "" {
			t.m.nacked.WithLabelValues(typ).Dec()
			t.countRejected(url, ts.NackedResources, -1)
			t.log.Info("node accepted a version after a NACK", "node", ns.info.ID, "type", typ, "version", last.version, "nacked", ts.Nacked)
			ts.Nacked, ts.NackError, ts.NackedResources, ts.AppliedResources, ts.NackUnattributed = "", "", nil, nil, false
		}
		t.m.acks.WithLabelValues(typ).Inc()
		return ""
	}
	ts.NACKs++
	if ts.Nacked == "" {
		t.m.nacked.WithLabelValues(typ).Inc()
	} else {
		t.countRejected(url, ts.NackedResources, -1)
	}
	names := last.names
	group, _ := t.groupOf(ns.info)
	if last.snap != nil {
		names = slices.Sorted(maps.Keys(last.snap.GetResources(url)))
		if len(last.requested) > 0 {
			names = intersect(names, last.requested)
		}
	}
	msg := detail.GetMessage()
	rejected, applied := splitNacked(msg, names)
	unattributed := len(rejected) == 0
	if unattributed {
		rejected, applied = names, nil
	}
	ts.Nacked, ts.NackError, ts.NackedResources, ts.AppliedResources, ts.NackUnattributed = last.version, msg, rejected, applied, unattributed
	t.countRejected(url, rejected, 1)
	t.m.nacks.WithLabelValues(typ).Inc()
	attrs := []any{"node", ns.info.ID, "group", group, "type", typ, "version", last.version,
		"acked", ts.Acked, "code", detail.GetCode(), "error", msg}
	if unattributed {
		t.log.Warn("node rejected a response (NACK) and its error names none of the response's resources; all are counted rejected",
			append(attrs, "resources", rejected)...)
	} else {
		t.log.Warn("node rejected resources of a response (NACK); it applied the others",
			append(attrs, "rejected", rejected, "applied", applied)...)
	}
	return last.version
}

// countRejected moves the per-resource rejection gauge by delta for each
// name.
func (t *tracker) countRejected(url string, names []string, delta float64) {
	typ := TypeName(url)
	for _, n := range names {
		t.m.rejected.WithLabelValues(typ, n).Add(delta)
	}
}

// splitNacked splits a NACKed response's resources (sorted) into those
// its error message names and the rest. gRPC clients write
// `resource "NAME": reason`, one per rejected resource; Envoy writes
// `Error adding/updating listener(s) NAME: reason` (clusters likewise,
// comma-separated). A name counts as named when it appears as a whole
// word followed by a colon or a closing quote.
func splitNacked(msg string, names []string) (rejected, applied []string) {
	for _, n := range names {
		if mentions(msg, n) {
			rejected = append(rejected, n)
		} else {
			applied = append(applied, n)
		}
	}
	return rejected, applied
}

func mentions(msg, name string) bool {
	if name == "" {
		return false
	}
	for from := 0; ; {
		i := strings.Index(msg[from:], name)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(name)
		before := i == 0 || strings.IndexByte(" \t\n,;([\"'", msg[i-1]) >= 0
		after := end < len(msg) && strings.IndexByte(":\"'", msg[end]) >= 0
		if before && after {
			return true
		}
		from = i + 1
	}
}

// OnStreamOpen implements sotw.Callbacks.
func (t *tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	if err := t.guardOpen(ctx, id); err != nil {
		return err
	}
	t.open(id, kindSotW, peerOf(ctx))
	return nil
}

// OnStreamClosed implements sotw.Callbacks.
func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.guardClose(id); t.closed(id) }

// OnStreamRequest implements sotw.Callbacks. After a NACK the request
// names the node's previous version; it is rewritten to the rejected one
// so the cache waits for a new snapshot instead of sending the rejected
// one again (which the node would reject again, in a tight loop).
func (t *tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	url := req.GetTypeUrl()
	if err := t.guardRequest(id, req.GetNode().GetId(), url, req.GetResourceNames(), true); err != nil {
		return err
	}
	t.m.requests.WithLabelValues(TypeName(url)).Inc()
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return nil
	}
	if err := t.checkIdentity(st, st.info(req.GetNode())); err != nil {
		return err
	}
	ns := t.attach(st, req.GetNode())
	if v := t.answer(st, ns, url, req.GetResponseNonce(), req.GetErrorDetail()); v != "" {
		req.VersionInfo = v
	}
	return nil
}

// OnStreamResponse implements sotw.Callbacks.
func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.pushed(id, resp.GetTypeUrl(), sent{nonce: resp.GetNonce(), version: resp.GetVersionInfo(), requested: req.GetResourceNames()})
}

func (t *tracker) pushed(id int64, url string, s sent) {
	t.m.pushes.WithLabelValues(TypeName(url)).Inc()
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	if st.node == nil {
		st.sent[url] = s
		return
	}
	if s.names == nil && t.snapshotAt != nil {
		if g, ok := t.groupOf(*st.node); ok {
			s.snap = t.snapshotAt(g, url, s.version)
		}
	}
	st.sent[url] = s
	if ns := t.nodes[st.node.ID]; ns != nil {
		ts := ns.typ(url)
		ts.Pushes++
		ts.Sent = s.version
	}
}

// OnDeltaStreamOpen implements delta.Callbacks.
func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	if err := t.guardOpen(ctx, id); err != nil {
		return err
	}
	t.open(id, kindDelta, peerOf(ctx))
	return nil
}

// OnDeltaStreamClosed implements delta.Callbacks.
func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.guardClose(id); t.closed(id) }

// OnStreamDeltaRequest implements delta.Callbacks.
func (t *tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	url := req.GetTypeUrl()
	if err := t.guardRequest(id, req.GetNode().GetId(), url, req.GetResourceNamesSubscribe(), req.GetResponseNonce() == ""); err != nil {
		return err
	}
	t.m.requests.WithLabelValues(TypeName(url)).Inc()
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return nil
	}
	if err := t.checkIdentity(st, st.info(req.GetNode())); err != nil {
		return err
	}
	ns := t.attach(st, req.GetNode())
	t.answer(st, ns, url, req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

// OnStreamDeltaResponse implements delta.Callbacks.
func (t *tracker) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	names := make([]string, 0, len(resp.GetResources())+len(resp.GetRemovedResources()))
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	names = append(names, resp.GetRemovedResources()...)
	slices.Sort(names)
	t.pushed(id, resp.GetTypeUrl(), sent{nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo(), names: names})
}

// OnFetchRequest implements rest.Callbacks.
func (t *tracker) OnFetchRequest(_ context.Context, req *discoveryv3.DiscoveryRequest) error {
	t.m.requests.WithLabelValues(TypeName(req.GetTypeUrl())).Inc()
	return t.guardFetch(req)
}

// OnFetchResponse implements rest.Callbacks.
func (t *tracker) OnFetchResponse(_ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.m.pushes.WithLabelValues(TypeName(resp.GetTypeUrl())).Inc()
}

// status returns a copy of every connected node's status, sorted by ID.
func (t *tracker) status() []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]NodeStatus, 0, len(t.nodes))
	for _, ns := range t.nodes {
		st := NodeStatus{ID: ns.info.ID, Role: string(ns.info.Role), Service: ns.info.Service, Identity: ns.peer, Streams: ns.streams}
		st.Group, _ = t.groupOf(ns.info)
		for _, url := range slices.Sorted(maps.Keys(ns.types)) {
			ts := *ns.types[url]
			ts.NackedResources = slices.Clone(ts.NackedResources)
			ts.AppliedResources = slices.Clone(ts.AppliedResources)
			st.Types = append(st.Types, ts)
		}
		slices.SortFunc(st.Types, func(a, b TypeStatus) int { return cmp.Compare(a.Type, b.Type) })
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// intersect returns the sorted names present in both lists.
func intersect(have, want []string) []string {
	var out []string
	for _, n := range want {
		if slices.Contains(have, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
