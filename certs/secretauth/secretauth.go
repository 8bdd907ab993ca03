// Package secretauth decides which SDS secrets a connected node may
// receive. Secrets carry private keys, so a node gets only the certificate of
// its own identity (the SPIFFE ID of its mTLS client certificate, or the
// identities a bootstrap token is mapped to) and the shared trust bundle.
// Every refusal is audited and counted.
//
// The xDS server calls Open when a stream starts, Check on every secret
// request and Close when the stream ends; the methods mirror
// go-control-plane's stream callbacks.
package secretauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"

	"github.com/maestro-ml/maestro/certs/audit"
	"github.com/maestro-ml/maestro/certs/mtls"
	"github.com/maestro-ml/maestro/certs/spiffe"
)

// ErrRefused is wrapped by every refusal; servers map it to
// PERMISSION_DENIED.
var ErrRefused = errors.New("secret request refused")

// ErrUnauthenticated means a stream carries neither a verified client
// certificate nor a known bootstrap token.
var ErrUnauthenticated = errors.New("no verified identity")

// TokenHeader is the gRPC metadata key carrying a bootstrap token, as
// "Bearer <token>".
const TokenHeader = "authorization"

// Config configures a Guard.
type Config struct {
	// TrustDomain bounds client certificate identities; others are refused.
	TrustDomain string
	// Tokens maps bootstrap tokens to the identities whose secrets they
	// may fetch, for nodes that cannot present a certificate yet. Keep the
	// tokens themselves out of logs and config files in the clear.
	Tokens map[string][]spiffe.ID
	// Shared are secret names every authenticated node may fetch (the
	// trust bundle).
	Shared []string
	// Reviewer, when set, checks bearer tokens that are not bootstrap
	// tokens as Kubernetes service-account tokens (certs/tokenreview):
	// the account's namespace and name, in TrustDomain, is the stream's
	// identity, as Istio's CA names workloads.
	Reviewer TokenReviewer
	// Available, when set, is asked about every entitled secret before it
	// is served; an error refuses it (reason "unavailable"). The control
	// plane refuses a certificate that expired while its issuer was down
	// and is still in the last good configuration, rather than hand out an
	// expired key to a stream that asks for it anew.
	Available func(name string) error
	// Anonymous admits streams with neither a certificate nor a token
	// (plaintext xDS, where nothing can be verified) instead of refusing
	// them: they receive configuration and the shared secrets, never a
	// certificate and its private key.
	Anonymous bool
	// Registerer receives maestro_certs_secret_refusals_total when not nil.
	Registerer prometheus.Registerer
	Audit      *audit.Log
	Logger     *slog.Logger
}

// TokenReviewer says which Kubernetes service account a token belongs to
// (tokenreview.Reviewer).
type TokenReviewer interface {
	Review(ctx context.Context, token string) (namespace, serviceAccount string, err error)
}

// Principal is who a stream authenticated as.
type Principal struct {
	// Peer is the client certificate's ID, zero for token streams.
	Peer spiffe.ID
	// Identities are the identities whose secrets it may fetch.
	Identities []spiffe.ID
	// Via is "mtls", "token" (bootstrap), "k8s" (reviewed
	// service-account token) or "anonymous".
	Via string
}

// String names the principal for logs and audit (never the token).
func (p Principal) String() string {
	switch p.Via {
	case "mtls":
		return p.Peer.String()
	case "", viaAnonymous:
		return "unauthenticated"
	}
	ids := make([]string, len(p.Identities))
	for i, id := range p.Identities {
		ids[i] = id.String()
	}
	return p.Via + "(" + strings.Join(ids, ",") + ")"
}

// Guard tracks the principal of every open stream.
type Guard struct {
	cfg      Config
	log      *slog.Logger
	shared   map[string]bool
	refusals *prometheus.CounterVec

	mu      sync.Mutex
	streams map[int64]*stream
}

// stream is an open stream's principal and the secrets it was granted.
type stream struct {
	p Principal
	// granted are names that passed Available on this stream: a request
	// naming them again (an ACK) makes the server send nothing old, so
	// they are not checked again.
	granted map[string]bool
}

// New returns a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.TrustDomain == "" {
		return nil, errors.New("secretauth: trust domain is required")
	}
	for tok, ids := range cfg.Tokens {
		if len(tok) < 16 {
			return nil, errors.New("secretauth: bootstrap tokens must be at least 16 characters")
		}
		for _, id := range ids {
			if err := id.Validate(); err != nil {
				return nil, fmt.Errorf("secretauth: token identity: %w", err)
			}
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "secretauth"),
		shared:  map[string]bool{},
		streams: map[int64]*stream{},
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "maestro", Subsystem: "certs", Name: "secret_refusals_total",
			Help: "Secret requests and streams refused for lack of entitlement, by reason.",
		}, []string{"reason"}),
	}
	for _, s := range cfg.Shared {
		g.shared[s] = true
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(g.refusals); err != nil {
			return nil, fmt.Errorf("secretauth metrics: %w", err)
		}
	}
	return g, nil
}

// Authenticate returns the principal of a gRPC call or stream context: the
// client certificate's SPIFFE ID, else a known bootstrap token. The
// certificate is trusted as verified by the handshake, so the server must
// use mtls.ServerConfig (or equivalent chain verification).
func (g *Guard) Authenticate(ctx context.Context) (Principal, error) {
	if id, err := mtls.PeerIDFromContext(ctx); err == nil {
		if id.TrustDomain != g.cfg.TrustDomain {
			return Principal{}, fmt.Errorf("%w: %s is not in trust domain %q", ErrUnauthenticated, id, g.cfg.TrustDomain)
		}
		return Principal{Peer: id, Identities: []spiffe.ID{id}, Via: "mtls"}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var bearer []string
	for _, v := range md.Get(TokenHeader) {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		bearer = append(bearer, tok)
		for known, ids := range g.cfg.Tokens {
			if subtle.ConstantTimeCompare([]byte(known), []byte(tok)) == 1 {
				return Principal{Identities: ids, Via: "token"}, nil
			}
		}
	}
	if g.cfg.Reviewer != nil && len(bearer) > 0 {
		ns, sa, err := g.cfg.Reviewer.Review(ctx, bearer[0])
		if err != nil {
			return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		id, err := spiffe.New(g.cfg.TrustDomain, ns, sa)
		if err != nil {
			return Principal{}, fmt.Errorf("%w: service account %s/%s: %w", ErrUnauthenticated, ns, sa, err)
		}
		return Principal{Identities: []spiffe.ID{id}, Via: "k8s"}, nil
	}
	return Principal{}, ErrUnauthenticated
}

// viaAnonymous marks a stream admitted under Config.Anonymous.
const viaAnonymous = "anonymous"

// hasPeerCert reports whether the stream presented a certificate, which
// then must be valid: a bad one is never downgraded to anonymous.
func hasPeerCert(ctx context.Context) bool {
	_, err := mtls.PeerIDFromContext(ctx)
	return err == nil
}

// hasBearer reports whether the stream presented a bearer token, which
// then must be good: a bad one is never downgraded to anonymous.
func hasBearer(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(TokenHeader) {
		if strings.HasPrefix(v, "Bearer ") {
			return true
		}
	}
	return false
}

// Open records the principal of a new stream.
//
// # Errors
// ErrUnauthenticated (audited and counted) when the stream has no identity.
func (g *Guard) Open(ctx context.Context, streamID int64) error {
	p, err := g.Authenticate(ctx)
	switch {
	case errors.Is(err, ErrUnauthenticated) && g.cfg.Anonymous && !hasPeerCert(ctx) && !hasBearer(ctx):
		p = Principal{Via: viaAnonymous}
	case err != nil:
		g.refuse(ctx, "unauthenticated", Principal{}, "", "", err)
		return err
	}
	g.mu.Lock()
	g.streams[streamID] = &stream{p: p, granted: map[string]bool{}}
	g.mu.Unlock()
	return nil
}

// Close forgets a stream.
func (g *Guard) Close(streamID int64) {
	g.mu.Lock()
	delete(g.streams, streamID)
	g.mu.Unlock()
}

// Check decides a secret request on a stream: every name must be a shared
// secret or the SPIFFE ID of one of the principal's identities. A request
// naming no secret would be a wildcard (every secret) and is refused.
//
// # Errors
// ErrRefused (audited and counted), naming the first secret refused.
func (g *Guard) Check(ctx context.Context, streamID int64, node string, names []string) error {
	g.mu.Lock()
	st, ok := g.streams[streamID]
	var p Principal
	if ok {
		p = st.p
	}
	g.mu.Unlock()
	if !ok {
		err := fmt.Errorf("%w: stream %d was not opened through the guard", ErrRefused, streamID)
		g.refuse(ctx, "unknown_stream", p, node, "", err)
		return err
	}
	if len(names) == 0 || len(names) == 1 && names[0] == "*" {
		err := fmt.Errorf("%w: %s asked for every secret (wildcard); name the secrets", ErrRefused, p)
		g.refuse(ctx, "wildcard", p, node, "*", err)
		return err
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for _, name := range sorted {
		if !g.entitled(p, name) {
			err := fmt.Errorf("%w: %s may not receive secret %q", ErrRefused, p, name)
			g.refuse(ctx, "not_entitled", p, node, name, err)
			return err
		}
	}
	if g.cfg.Available == nil {
		return nil
	}
	var err error
	name := ""
	g.mu.Lock()
	for _, name = range sorted {
		if st.granted[name] {
			continue
		}
		if aerr := g.cfg.Available(name); aerr != nil {
			err = fmt.Errorf("%w: secret %q: %w", ErrRefused, name, aerr)
			break
		}
		st.granted[name] = true
	}
	g.mu.Unlock()
	if err != nil {
		g.refuse(ctx, "unavailable", p, node, name, err)
	}
	return err
}

func (g *Guard) entitled(p Principal, name string) bool {
	if g.shared[name] {
		return true
	}
	for _, id := range p.Identities {
		if id.String() == name {
			return true
		}
	}
	return false
}

func (g *Guard) refuse(ctx context.Context, reason string, p Principal, node, secret string, err error) {
	g.refusals.WithLabelValues(reason).Inc()
	g.log.WarnContext(ctx, "refused secret request", "reason", reason, "peer", p.String(), "node", node, "secret", secret)
	details := map[string]string{"reason": reason}
	if node != "" {
		details["node"] = node
	}
	peer := ""
	if p.Via != "" {
		peer = p.String()
	}
	if aerr := g.cfg.Audit.Record(ctx, audit.Event{Kind: audit.Refused, Peer: peer, Identity: secret, Error: err.Error(), Details: details}); aerr != nil {
		g.log.ErrorContext(ctx, "audit", "error", aerr)
	}
}

// ParseTokens reads a bootstrap token file: one token a line followed by
// the SPIFFE IDs whose secrets it may fetch, separated by spaces; blank
// lines and lines starting with '#' are skipped. name is the file's name
// for errors, which give its line but never the token.
//
// # Errors
// A short token, a line without an ID, an invalid ID or a token given
// twice, naming the file and line.
func ParseTokens(name string, data []byte) (map[string][]spiffe.ID, error) {
	out := map[string][]spiffe.ID{}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		at := fmt.Sprintf("%s:%d", name, i+1)
		if len(f[0]) < 16 {
			return nil, fmt.Errorf("%s: token shorter than 16 characters", at)
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s: token without a SPIFFE ID", at)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("%s: token given twice", at)
		}
		for _, s := range f[1:] {
			id, err := spiffe.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			out[f[0]] = append(out[f[0]], id)
		}
	}
	return out, nil
}
