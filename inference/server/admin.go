package server

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/maestro-ml/maestro/inference/pbcodec"
)

// ModelControl is how models may be loaded and unloaded while the server
// runs, as Triton's --model-control-mode.
type ModelControl string

const (
	// ModelControlNone refuses load and unload on every listener, as
	// Triton's NONE mode does (UNAVAILABLE): models load on first use and
	// stay until evicted or the server stops.
	ModelControlNone ModelControl = "none"
	// ModelControlExplicit serves load and unload, on the admin listener
	// only: whoever can reach the inference ports cannot change what they
	// serve.
	ModelControlExplicit ModelControl = "explicit"
)

// ParseModelControl reads a --model-control value.
func ParseModelControl(s string) (ModelControl, error) {
	switch m := ModelControl(s); m {
	case ModelControlNone, ModelControlExplicit:
		return m, nil
	}
	return "", fmt.Errorf("model control %q: want none or explicit", s)
}

// controlAllowed tells whether a load or unload may run on this listener:
// a refusal is UNAVAILABLE (HTTP 503) when model control is off, as Triton
// answers, and PERMISSION_DENIED (403) on a listener that is not the admin
// one.
func (s *Server) controlAllowed(admin bool) error {
	switch {
	case s.cfg.ModelControl != ModelControlExplicit:
		return status.Error(codes.Unavailable, "model load and unload are disabled: the server runs with --model-control none")
	case !admin:
		return status.Error(codes.PermissionDenied, "model load and unload are served only on the admin listener (--admin-addr)")
	}
	return nil
}

// newAdmin builds the admin listener's server: the REST API and the
// GRPCInferenceService on one port (gRPC over cleartext HTTP/2), with
// load and unload allowed.
func (s *Server) newAdmin() {
	s.adminGRPC = grpc.NewServer(grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes), grpc.ChainUnaryInterceptor(s.serverHeader, recoverUnary),
		grpc.ForceServerCodecV2(pbcodec.New()))
	(&grpcService{s: s, admin: true}).register(s.adminGRPC)
	rest := s.routes(true)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.admin = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.adminGRPC.ServeHTTP(w, r)
				return
			}
			rest.ServeHTTP(w, r)
		}),
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
	}
}
