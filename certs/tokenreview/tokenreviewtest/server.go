// Package tokenreviewtest is a fake Kubernetes API server for tests, on
// loopback over TLS. It answers TokenReviews as the API reference
// documents: POST /apis/authentication.k8s.io/v1/tokenreviews by a caller
// whose bearer token it knows and who may create tokenreviews, 201 Created
// with the review's status (authenticated, user, the audiences common to
// the review and the token, or an error); a v1 Status object with 401
// (unknown caller), 403 (no permission) or 404 otherwise.
package tokenreviewtest

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIAudience is the API server's own audience, used when a review names
// none.
const APIAudience = "https://kubernetes.default.svc.cluster.local"

// Token is what the API server knows of a token.
type Token struct {
	// User is the username: system:serviceaccount:<ns>:<name> for a
	// service account's token.
	User string
	// Audiences default to APIAudience.
	Audiences []string
}

// Config describes the server's contents.
type Config struct {
	// Caller is the bearer token the reviewing client (the control plane)
	// must present.
	Caller string
	// Tokens are the tokens under review it knows.
	Tokens map[string]Token
}

// Server is a running fake API server. Its methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	srv *httptest.Server

	mu       sync.Mutex
	denied   bool
	requests int
}

// New starts a server on 127.0.0.1 with a random port; Close stops it.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the server's base URL (https://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// CAPEM verifies the server's certificate (the pod's ca.crt).
func (s *Server) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetDenied makes the caller lack permission to create tokenreviews (no
// RBAC binding): every review answers 403.
func (s *Server) SetDenied(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied = v
}

// Requests is how many requests reached the server.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code)})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	denied := s.denied
	s.mu.Unlock()
	if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Method != http.MethodPost {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.cfg.Caller {
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		return
	}
	if denied {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, `tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:maestro:maestro-controlplane" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope`)
		return
	}
	var tr authv1.TokenReview
	if err := json.NewDecoder(r.Body).Decode(&tr); err != nil || tr.Kind != "TokenReview" || tr.APIVersion != "authentication.k8s.io/v1" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("bad TokenReview (kind %q, apiVersion %q): %v", tr.Kind, tr.APIVersion, err))
		return
	}
	want := tr.Spec.Audiences
	if len(want) == 0 {
		want = []string{APIAudience}
	}
	info, ok := s.cfg.Tokens[tr.Spec.Token]
	auds := info.Audiences
	if len(auds) == 0 {
		auds = []string{APIAudience}
	}
	var common []string
	for _, a := range auds {
		if slices.Contains(want, a) {
			common = append(common, a)
		}
	}
	switch {
	case !ok:
		tr.Status = authv1.TokenReviewStatus{Error: "[invalid bearer token, square/go-jose: error in cryptographic primitive]"}
	case len(common) == 0:
		tr.Status = authv1.TokenReviewStatus{Error: fmt.Sprintf("[invalid bearer token, token audiences %q is invalid for the target audiences %q]", auds, want)}
	default:
		tr.Status = authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{Username: info.User, UID: "uid-" + info.User}, Audiences: common}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(tr)
}
