package server

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SecretGuard decides which SDS secrets a stream may receive; the methods
// mirror the stream callbacks (certs/secretauth.Guard implements it).
// Refusals are audited and counted by the guard.
type SecretGuard interface {
	Open(ctx context.Context, streamID int64) error
	Check(ctx context.Context, streamID int64, node string, names []string) error
	Close(streamID int64)
}

// GuardSecrets makes every stream authenticate and every secret request
// pass g: secrets carry private keys, so a node gets only its own. Call it
// before Serve; without it secrets are served to any client (plaintext
// development set-ups only).
func (s *Server) GuardSecrets(g SecretGuard) { s.tracker.guard = g }

// guardOpen refuses a stream without a verified identity when guarded.
func (t *tracker) guardOpen(ctx context.Context, id int64) error {
	if t.guard == nil {
		return nil
	}
	if err := t.guard.Open(ctx, id); err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return nil
}

func (t *tracker) guardClose(id int64) {
	if t.guard != nil {
		t.guard.Close(id)
	}
}

// guardRequest checks a secret request's names. An ACK of a delta stream
// subscribes to nothing new, so only requests adding names (or the first,
// which would otherwise be a wildcard) are checked.
func (t *tracker) guardRequest(id int64, node, url string, names []string, first bool) error {
	if t.guard == nil || url != resource.SecretType || (len(names) == 0 && !first) {
		return nil
	}
	// The callbacks carry no stream context; the guard knows the stream's
	// principal from Open.
	if err := t.guard.Check(context.Background(), id, node, names); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// guardFetch refuses secrets over the unary Fetch API when guarded: it
// has no stream to authenticate once, so SDS must use a stream.
func (t *tracker) guardFetch(req *discoveryv3.DiscoveryRequest) error {
	if t.guard != nil && req.GetTypeUrl() == resource.SecretType {
		return status.Error(codes.PermissionDenied, "secrets are served on streams only")
	}
	return nil
}
