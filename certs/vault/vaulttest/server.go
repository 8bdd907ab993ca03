// Package vaulttest is a Vault server for tests, on loopback. It implements
// the endpoints Maestro uses as Vault documents them: sys/health,
// auth/approle/login, auth/kubernetes/login, auth/token/lookup-self and
// renew-self, and a PKI mount's issue/:role, sign/:role, ca_chain and
// cert/ca, with real X.509 issuance, Vault's {"errors":[...]} error format
// and status codes, role max_ttl capping, token TTLs and expiry, and 403 for
// bad or expired tokens. Outages (down, sealed, 5xx) and latency can be
// injected, and time comes from an injectable clock, so tests drive token
// and certificate lifetimes without sleeping. With Config.TLS it serves
// HTTPS, as a production Vault does.
//
// HA roles follow Vault's HA documentation: a standby node redirects API
// requests to the active node with 307 Temporary Redirect (what Vault does
// when it cannot forward them), or answers 503 "no active Vault instance
// found" while no node is active; a performance standby serves reads
// itself and redirects writes.
//
// It is meant to be driven through github.com/hashicorp/vault/api, the same
// client production code uses.
package vaulttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes the server's contents. Everything is optional.
type Config struct {
	// Now is the server's clock (token TTLs, certificate validity); nil
	// means time.Now.
	Now func() time.Time
	// PKIMount is where the PKI engine is mounted; "pki" when empty.
	PKIMount string
	// Roles are the PKI roles by name.
	Roles map[string]Role
	// AppRoles are the AppRole auth roles by name.
	AppRoles map[string]AppRole
	// KubernetesRoles are the Kubernetes auth roles by name.
	KubernetesRoles map[string]KubernetesRole
	// ServiceAccounts maps the JWTs the Kubernetes auth method accepts to
	// the account they stand for (what a TokenReview would say).
	ServiceAccounts map[string]ServiceAccount
	// Policies maps policy names to the paths they grant, each a path or
	// a prefix ending in '*'. "root" grants everything; "default" grants
	// the token self-service endpoints, as in Vault.
	Policies map[string][]string
	// TLS serves HTTPS with a certificate for 127.0.0.1 signed by
	// CACertPEM, instead of plain HTTP.
	TLS bool
}

// Server is a running test Vault. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	http  *httptest.Server
	now   func() time.Time
	pki   *pki
	mount string

	mu       sync.Mutex
	tokens   map[string]*token
	down     bool
	uninit   bool
	sealed   bool
	standby  bool
	perf     bool
	active   string
	failCode int
	latency  time.Duration
	counts   map[string]int
	onReq    func(method, path string)
}

// New starts a server on 127.0.0.1 with a random port. It is closed with
// Close (tests: t.Cleanup(s.Close)).
func New(cfg Config) (*Server, error) {
	s := &Server{
		cfg:    cfg,
		now:    cfg.Now,
		mount:  cfg.PKIMount,
		tokens: map[string]*token{},
		counts: map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.mount == "" {
		s.mount = "pki"
	}
	p, err := newPKI(s.now)
	if err != nil {
		return nil, fmt.Errorf("vaulttest: %w", err)
	}
	s.pki = p
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("vaulttest: listen: %w", err)
	}
	s.http = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.http.Listener.Close()
	s.http.Listener = ln
	if cfg.TLS {
		s.http.StartTLS()
	} else {
		s.http.Start()
	}
	return s, nil
}

// CACertPEM is the PEM certificate that verifies the server's TLS
// certificate (for api.TLSConfig.CACert), nil without Config.TLS.
func (s *Server) CACertPEM() []byte {
	c := s.http.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Addr is the server's URL, for api.Config.Address.
func (s *Server) Addr() string { return s.http.URL }

// Close stops the server.
func (s *Server) Close() { s.http.Close() }

// TokenSpec describes a token made with NewToken.
type TokenSpec struct {
	Policies []string
	// TTL zero means a token that never expires (like a root token).
	TTL time.Duration
	// MaxTTL bounds renewals; zero means no bound beyond TTL renewals.
	MaxTTL    time.Duration
	Renewable bool
}

// NewToken creates a token, as `vault token create` would.
func (s *Server) NewToken(spec TokenSpec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newTokenLocked(spec, "auth/token/create", "token", nil).id
}

// SetDown makes the server drop every connection without answering, as an
// unreachable Vault does to a client.
func (s *Server) SetDown(v bool) { s.set(func() { s.down = v }) }

// SetSealed seals or unseals the server: sealed, every API but sys/health
// answers 503 "Vault is sealed".
func (s *Server) SetSealed(v bool) { s.set(func() { s.sealed = v }) }

// SetUninitialized makes the server report an uninitialised Vault: 501
// from sys/health, 503 "Vault is sealed" elsewhere (an uninitialised Vault
// is also sealed).
func (s *Server) SetUninitialized(v bool) { s.set(func() { s.uninit = v }) }

// SetStandby makes the server a standby (or, with perf, a performance
// standby) node: sys/health reports it (429 or 473), and API requests are
// redirected to the active node SetActive names, or refused with 503
// while none is.
func (s *Server) SetStandby(standby, perf bool) { s.set(func() { s.standby, s.perf = standby, perf }) }

// SetActive sets the address (a URL, as Vault's api_addr) of the active
// node a standby redirects to; empty means no node is active (an election
// is under way).
func (s *Server) SetActive(addr string) { s.set(func() { s.active = strings.TrimRight(addr, "/") }) }

// SetFailure makes every API but sys/health answer with code (a 5xx);
// zero restores normal service.
func (s *Server) SetFailure(code int) { s.set(func() { s.failCode = code }) }

// SetLatency delays every answer by d (real time, bounded by the request's
// context).
func (s *Server) SetLatency(d time.Duration) { s.set(func() { s.latency = d }) }

// OnRequest sets a hook called with every request's method and path (after
// /v1/), before it is handled. Tests use it to wait for a request.
func (s *Server) OnRequest(f func(method, path string)) { s.set(func() { s.onReq = f }) }

// Count returns how many requests reached path (after /v1/), including
// refused ones but not those dropped while down.
func (s *Server) Count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// RootPEM is the PKI mount's root certificate.
func (s *Server) RootPEM() []byte { return s.currentPKI().rootPEM() }

// RotateRoot replaces the mount's issuer with a new root and intermediate,
// as switching the mount's default issuer does in Vault: new certificates
// and pki/ca_chain use the new chain from then on.
func (s *Server) RotateRoot() error {
	p, err := newPKI(s.now)
	if err != nil {
		return fmt.Errorf("vaulttest: rotate root: %w", err)
	}
	s.set(func() { s.pki = p })
	return nil
}

func (s *Server) currentPKI() *pki {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pki
}

func (s *Server) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// apiError is an error answered in Vault's format.
type apiError struct {
	code int
	msgs []string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.code, strings.Join(e.msgs, "; ")) }

func errorf(code int, format string, args ...any) *apiError {
	return &apiError{code: code, msgs: []string{fmt.Sprintf(format, args...)}}
}

var errPermissionDenied = errorf(http.StatusForbidden, "permission denied")

// response is Vault's standard response envelope.
type response struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int            `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          *authBlock     `json:"auth"`
	MountType     string         `json:"mount_type"`
}

// raw is a bare (non-JSON) answer, as pki/ca_chain gives.
type raw struct {
	contentType string
	body        []byte
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down, latency, hook := s.down, s.latency, s.onReq
	s.mu.Unlock()
	if down {
		// Drop the connection without a response: what the client sees
		// when Vault is unreachable mid-flight.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeError(w, errorf(http.StatusNotFound, "unsupported path"))
		return
	}
	if hook != nil {
		hook(r.Method, path)
	}
	s.mu.Lock()
	s.counts[path]++
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	out, status, err := s.route(r, path)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errorf(http.StatusInternalServerError, "%v", err)
		}
		writeError(w, ae)
		return
	}
	switch v := out.(type) {
	case redirected:
		http.Redirect(w, r, string(v), status)
	case raw:
		w.Header().Set("Content-Type", v.contentType)
		w.WriteHeader(status)
		_, _ = w.Write(v.body)
	case *response:
		v.RequestID = newID()
		writeJSON(w, status, v)
	case map[string]any:
		writeJSON(w, status, v)
	case nil:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) route(r *http.Request, path string) (any, int, error) {
	if path == "sys/health" {
		return s.health(r)
	}
	s.mu.Lock()
	sealed, fail := s.sealed || s.uninit, s.failCode
	s.mu.Unlock()
	if sealed {
		return nil, 0, errorf(http.StatusServiceUnavailable, "Vault is sealed")
	}
	if redirect, err := s.standbyAnswer(r); redirect != "" || err != nil {
		if err != nil {
			return nil, 0, err
		}
		return redirected(redirect), http.StatusTemporaryRedirect, nil
	}
	if fail != 0 {
		return nil, 0, errorf(fail, "internal error")
	}
	read := r.Method == http.MethodGet
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	var body map[string]any
	if write {
		var err error
		if body, err = decodeBody(r); err != nil {
			return nil, 0, err
		}
	}
	pkiPrefix := s.mount + "/"
	switch {
	case path == "auth/approle/login" && write:
		return s.approleLogin(body)
	case path == "auth/kubernetes/login" && write:
		return s.kubernetesLogin(body)
	case path == "auth/token/lookup-self" && read:
		return s.lookupSelf(r)
	case path == "auth/token/renew-self" && write:
		return s.renewSelf(r, body)
	case path == pkiPrefix+"ca_chain" && read:
		return raw{contentType: "application/pem-certificate-chain", body: s.currentPKI().chainPEM()}, http.StatusOK, nil
	case path == pkiPrefix+"cert/ca" && read:
		return s.currentPKI().certCA(), http.StatusOK, nil
	case strings.HasPrefix(path, pkiPrefix+"issue/") && write:
		if err := s.authorize(r, path); err != nil {
			return nil, 0, err
		}
		return s.issue(strings.TrimPrefix(path, pkiPrefix+"issue/"), body, false)
	case strings.HasPrefix(path, pkiPrefix+"sign/") && write:
		if err := s.authorize(r, path); err != nil {
			return nil, 0, err
		}
		return s.issue(strings.TrimPrefix(path, pkiPrefix+"sign/"), body, true)
	case isKnown(path, pkiPrefix):
		return nil, 0, errorf(http.StatusMethodNotAllowed, "1 error occurred:\n\t* unsupported operation\n\n")
	default:
		return nil, 0, errorf(http.StatusNotFound, "1 error occurred:\n\t* unsupported path\n\n")
	}
}

// redirected is a 307 answer's Location.
type redirected string

// standbyAnswer is how a standby node answers an API request it does not
// serve: the active node's URL for the same path, or 503 while there is
// none. An active node, and a performance standby asked to read, serve
// the request ("", nil).
func (s *Server) standbyAnswer(r *http.Request) (string, error) {
	s.mu.Lock()
	standby, perf, active := s.standby, s.perf, s.active
	s.mu.Unlock()
	if !standby || (perf && r.Method == http.MethodGet) {
		return "", nil
	}
	if active == "" {
		return "", errorf(http.StatusServiceUnavailable, "no active Vault instance found")
	}
	u := active + r.URL.Path
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u, nil
}

func isKnown(path, pkiPrefix string) bool {
	switch path {
	case "auth/approle/login", "auth/kubernetes/login", "auth/token/lookup-self", "auth/token/renew-self",
		pkiPrefix + "ca_chain", pkiPrefix + "cert/ca":
		return true
	}
	return strings.HasPrefix(path, pkiPrefix+"issue/") || strings.HasPrefix(path, pkiPrefix+"sign/")
}

// health answers sys/health with Vault's default codes (200 active, 429
// standby, 473 performance standby, 501 not initialised, 503 sealed) and
// the query parameters that override them.
func (s *Server) health(r *http.Request) (any, int, error) {
	s.mu.Lock()
	uninit, standby, perf := s.uninit, s.standby, s.perf
	sealed := s.sealed || uninit
	s.mu.Unlock()
	q := r.URL.Query()
	code := func(param string, def int) (int, error) {
		v := q.Get(param)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, errorf(http.StatusBadRequest, "unable to parse %s: %v", param, err)
		}
		return n, nil
	}
	var (
		status int
		err    error
	)
	switch {
	case uninit:
		status, err = code("uninitcode", http.StatusNotImplemented)
	case sealed:
		status, err = code("sealedcode", http.StatusServiceUnavailable)
	case standby && perf && !boolParam(q.Get("perfstandbyok")):
		status, err = code("performancestandbycode", 473)
	case standby && !perf && !boolParam(q.Get("standbyok")):
		status, err = code("standbycode", http.StatusTooManyRequests)
	default:
		status, err = code("activecode", http.StatusOK)
	}
	if err != nil {
		return nil, 0, err
	}
	now := s.now()
	return map[string]any{
		"initialized":                  !uninit,
		"sealed":                       sealed,
		"standby":                      standby,
		"performance_standby":          standby && perf,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              now.Unix(),
		"version":                      "1.17.0",
		"cluster_name":                 "vault-cluster-maestro-test",
		"cluster_id":                   "00000000-0000-0000-0000-000000000001",
		"enterprise":                   false,
		"echo_duration_ms":             0,
		"clock_skew_ms":                0,
	}, status, nil
}

func boolParam(v string) bool {
	b, _ := strconv.ParseBool(v)
	return b
}

func decodeBody(r *http.Request) (map[string]any, error) {
	body := map[string]any{}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return nil, errorf(http.StatusBadRequest, "failed to parse JSON input: %v", err)
	}
	return body, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.code, map[string][]string{"errors": e.msgs})
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// stringParam reads a string parameter; Vault accepts JSON strings only for
// these.
func stringParam(body map[string]any, name string) (string, error) {
	v, ok := body[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errorf(http.StatusBadRequest, "1 error occurred:\n\t* %s: expected a string, got %T\n\n", name, v)
	}
	return s, nil
}

// durationParam reads a TTL the way Vault does: a duration string ("90s",
// "1h") or a number of seconds.
func durationParam(body map[string]any, name string) (time.Duration, error) {
	v, ok := body[name]
	if !ok || v == nil {
		return 0, nil
	}
	bad := errorf(http.StatusBadRequest, "1 error occurred:\n\t* %s: invalid duration %v\n\n", name, v)
	switch t := v.(type) {
	case json.Number:
		n, err := t.Int64()
		if err != nil {
			return 0, bad
		}
		return time.Duration(n) * time.Second, nil
	case string:
		if t == "" {
			return 0, nil
		}
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 {
			return 0, bad
		}
		return d, nil
	}
	return 0, bad
}
